"""The CUDA stack a run trains on, checked once per process at the start of a CUDA run.

The versions (torch, CUDA, cuDNN, the NVIDIA driver) become run tags, and a small 3D
convolution computed in bf16 is compared with fp32, for agreement and speed: recent torch
releases have shipped Conv3d regressions under bf16, and a run should say when its numbers come
from such a stack (a warning is printed and logged when the relative error exceeds
`BF16_TOLERANCE`).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace

import torch

from harness.device import synchronize
from harness.train.step import StepSettings, backend_flags

BF16_TOLERANCE = 2e-2  # relative (Frobenius) error; bf16 keeps 8 significant bits (≈ 4e-3)


@dataclass(frozen=True)
class Conv3dCheck:
    relative_error: float  # ‖bf16 − fp32‖ / ‖fp32‖, the largest of output, input and weight grads
    speedup: float  # fp32 time / bf16 time

    @property
    def agrees(self) -> bool:
        return self.relative_error <= BF16_TOLERANCE


def conv3d_check(
    device: torch.device, *, channels: int = 64, frames: int = 8, side: int = 28, repeats: int = 5,
    channels_last: bool | None = None,
) -> Conv3dCheck:  # fmt: skip
    """One 3×3×3 convolution (batch 4) forward and backward, as training runs it (channels-last
    on a GPU, or as `channels_last` says), in IEEE fp32 and under bf16 autocast: the largest
    relative error of its output and its two gradients, and the time ratio. Both halves run
    under the caller's cuDNN autotuning setting (a run's: on), so the ratio is bf16's alone."""
    gpu_layout = device.type == "cuda" if channels_last is None else channels_last
    layout = torch.channels_last_3d if gpu_layout else torch.contiguous_format
    generator = torch.Generator().manual_seed(0)
    x, upstream = (
        torch.randn(4, channels, frames, side, side, generator=generator)
        .to(device)
        .contiguous(memory_format=layout)
        for _ in range(2)
    )
    with torch.random.fork_rng(devices=[]):  # a trial's draws must not depend on this check
        conv = torch.nn.Conv3d(channels, channels, 3, padding=1).to(device, memory_format=layout)
    x.requires_grad_()

    @torch.enable_grad()  # whatever the caller's grad mode
    def step() -> tuple[torch.Tensor, ...]:
        out = conv(x)
        grads = torch.autograd.grad(out, (x, conv.weight), upstream.to(out.dtype))
        return (out.detach(), *grads)

    fp32 = replace(StepSettings.reference(), cudnn_benchmark=torch.backends.cudnn.benchmark)
    with backend_flags(fp32, device):  # IEEE fp32, not TF32
        exact, fp32_seconds = _timed(step, device, repeats)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        rounded, bf16_seconds = _timed(step, device, repeats)
    error = max(_relative_error(r, e) for r, e in zip(rounded, exact, strict=True))
    return Conv3dCheck(error, fp32_seconds / max(bf16_seconds, 1e-12))


def _relative_error(rounded: torch.Tensor, exact: torch.Tensor) -> float:
    """‖rounded − exact‖ / ‖exact‖ (Frobenius), in fp32."""
    return float((rounded.float() - exact).norm() / exact.norm().clamp_min(1e-12))


def _timed(call, device: torch.device, repeats: int) -> tuple[tuple[torch.Tensor, ...], float]:
    result = call()  # warm-up (and cuDNN's choice of algorithm)
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        result = call()
    synchronize(device)
    return result, (time.perf_counter() - started) / repeats


def driver_version() -> str:
    """The NVIDIA driver's version from `nvidia-smi`, or "unknown"."""
    if shutil.which("nvidia-smi") is None:
        return "unknown"
    try:
        done = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return done.stdout.splitlines()[0].strip() if done.stdout.strip() else "unknown"


@functools.cache
def stack_report(device: torch.device) -> tuple[dict[str, str], dict[str, float]]:
    """`(tags, metrics)` for a CUDA run: versions, and the bf16 Conv3d check (warned about on
    stderr when it disagrees). Computed once per process and device."""
    check = conv3d_check(device)
    tags = {
        "torch_version": torch.__version__,
        "cuda_version": str(torch.version.cuda),
        "cudnn_version": str(torch.backends.cudnn.version()),
        "nvidia_driver": driver_version(),
        "bf16_conv3d_agrees": str(check.agrees).lower(),
    }
    if not check.agrees:
        print(
            f"warning: on {torch.cuda.get_device_name(device)} (torch {torch.__version__}, "
            f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}) a bf16 Conv3d "
            f"differs from fp32 by {check.relative_error:.2e} (tolerance {BF16_TOLERANCE:.0e}): "
            "bf16 results on this stack are suspect; set train.bf16: false to train in fp32.",
            file=sys.stderr,
        )
    metrics = {"bf16_conv3d_rel_error": check.relative_error, "bf16_conv3d_speedup": check.speedup}
    return tags, metrics
