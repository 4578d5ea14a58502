"""`harness bench train`: training throughput of one model against the device's physical limit.

Two loops train the same model on the same in-memory clips, in one process, and both run
`Stepper.step`, the step `run_trial` runs (`harness.train.step`):

- `run settings`: the speed settings a run gets on this device by default (`train.*` left
  unset: on a GPU bf16 autocast, channels-last model and input, a fused optimiser, cuDNN
  autotuning; `--compile` adds `torch.compile`); on the CPU these are plain fp32, so the two
  loops should match there;
- `reference`: a plain eager fp32 loop (default memory layout, foreach optimiser, no autocast,
  no autotuning). Each loop sets its backend flags and restores them, so neither leaks into the
  other.

Each reports clips/s, the step time split into data (taking the next pinned batch from memory),
forward (the copy to the device included) and backward+update, peak memory, and model FLOP
utilisation: achieved training FLOPs (3 × the forward's, fvcore's MACs × 2) over the device's
measured dense matrix-multiply rate (bf16 on a GPU, fp32 on the CPU). The timing points
synchronise the device, which the training loop itself never does per step. On the CPU,
oneDNN's convolutions can outrun the measured fp32 matmul, so MFU there can exceed 100 %: read it
as a ratio to that measurement, not to a hardware peak.
"""

from __future__ import annotations

import resource
import time
from dataclasses import asdict, dataclass

import torch

from harness.analysis.complexity import count_flops
from harness.config.sections import TrainSection
from harness.device import device_name, synchronize
from harness.train.optim import make_optimizer
from harness.train.step import (
    Stepper,
    StepSettings,
    backend_flags,
    compiled,
    prepare_model,
    resolve_settings,
)
from registry import build_model

MATMUL_SIZE = {"cuda": 8192, "cpu": 2048}
BENCH_CLASSES = 51
BATCHES_IN_MEMORY = 4


@dataclass
class LoopResult:
    name: str
    clips_per_s: float
    data_ms: float  # per step
    forward_ms: float
    backward_ms: float  # backward and optimizer step
    peak_memory_mb: float
    mfu: float  # fraction of the measured matmul rate


def matmul_tflops(device: torch.device, repeats: int = 10) -> float:
    """The device's measured dense matmul rate (bf16 on CUDA, fp32 on the CPU), in TFLOP/s."""
    n = MATMUL_SIZE[device.type]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    synchronize(device)
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12


def bench_train(
    backbone: str,
    *,
    attention: str = "none",
    placement: str = "none",
    batch: int = 8,
    frames: int = 16,
    size: int = 112,
    steps: int = 10,
    warmup: int = 3,
    device: torch.device | None = None,
    compile_model: bool = False,
) -> dict:
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(backbone, attention=attention, placement=placement,
                        num_classes=BENCH_CLASSES)  # fmt: skip
    shape = (3, frames, size, size) if model_dims(backbone) == 3 else (3, size, size)
    flops_per_clip = 3 * 2 * count_flops(model, shape)["fvcore"].gflops * 1e9  # fwd + bwd, FMA=2
    batches = _batches(batch, shape, device)
    rate = matmul_tflops(device)
    loops = {
        "run settings": resolve_settings(TrainSection(compile=compile_model), device),
        "reference": StepSettings.reference(),
    }
    results = []
    for name, settings in loops.items():
        torch.manual_seed(0)
        fresh = build_model(backbone, attention=attention, placement=placement,
                            num_classes=BENCH_CLASSES)  # fmt: skip
        result = _loop(name, fresh, batches, settings, device, steps=steps, warmup=warmup)
        result.mfu = result.clips_per_s * flops_per_clip / (rate * 1e12)
        results.append(result)
    optimised, reference = results
    return {
        "backbone": backbone, "attention": attention, "placement": placement,
        "batch": batch, "input": [batch, *shape], "device": device_name(device),
        "matmul_tflops": rate, "train_gflops_per_clip": flops_per_clip / 1e9,
        "settings": {name: asdict(settings) for name, settings in loops.items()},
        "loops": [asdict(r) for r in results],
        "speedup": optimised.clips_per_s / reference.clips_per_s,
    }  # fmt: skip


def model_dims(backbone: str) -> int:
    from registry import BACKBONES

    return BACKBONES.get(backbone).dims


def _batches(batch: int, shape: tuple[int, ...], device: torch.device) -> list[dict]:
    """A few batches of random clips, each its own pinned tensor on a CUDA machine (indexing
    one pinned tensor would give pageable copies)."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(BATCHES_IN_MEMORY):
        clips = torch.randn(batch, *shape, generator=generator)
        labels = torch.randint(0, BENCH_CLASSES, (batch,), generator=generator)
        if device.type == "cuda":
            clips, labels = clips.pin_memory(), labels.pin_memory()
        batches.append({"clip": clips, "label": labels})
    return batches


def _loop(name: str, model, batches: list[dict], settings: StepSettings, device: torch.device,
          *, steps: int, warmup: int) -> LoopResult:  # fmt: skip
    model = prepare_model(model, settings, device).train()
    optimizer = make_optimizer(model, TrainSection(), fused=settings.fused_optimizer)
    stepper = Stepper(compiled(model, settings), optimizer, settings, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with backend_flags(settings, device):
        totals, seconds = _timed_steps(stepper, batches, steps=steps, warmup=warmup)
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    per_step = {k: 1000 * v / steps for k, v in totals.items()}
    return LoopResult(name, len(batches[0]["label"]) * steps / seconds, per_step["data"],
                      per_step["forward"], per_step["update"], peak, 0.0)  # fmt: skip


def _timed_steps(stepper: Stepper, batches: list[dict], *, steps: int, warmup: int):
    """Per-phase seconds summed over `steps` measured steps (after `warmup`), and their wall
    time; every phase boundary waits for the device."""
    device = stepper.device
    for step in range(warmup):
        stepper.step(batches[step % len(batches)])
    synchronize(device)
    totals = {"data": 0.0, "forward": 0.0, "update": 0.0}
    marks: dict[str, float] = {}

    def mark(phase: str) -> None:
        synchronize(device)
        marks[phase] = time.perf_counter()

    started = time.perf_counter()
    for step in range(steps):
        before = time.perf_counter()
        batch = batches[step % len(batches)]
        marks["data"] = time.perf_counter()
        stepper.step(batch, mark)
        totals["data"] += marks["data"] - before
        totals["forward"] += marks["forward"] - marks["data"]
        totals["update"] += marks["update"] - marks["forward"]
    return totals, time.perf_counter() - started


def format_bench_train(result: dict) -> str:
    lines = [
        f"{result['backbone']} + {result['attention']} ({result['placement']}), input "
        f"{'×'.join(map(str, result['input']))}, {result['device']}",
        f"measured matmul rate: {result['matmul_tflops']:.2f} TFLOP/s; training "
        f"{result['train_gflops_per_clip']:.1f} GFLOP per clip",
        "",
        f"{'loop':12} {'clips/s':>9} {'data ms':>9} {'fwd ms':>9} {'bwd ms':>9} {'peak MB':>9} "
        f"{'MFU':>7}",
    ]
    for loop in result["loops"]:
        lines.append(
            f"{loop['name']:12} {loop['clips_per_s']:9.1f} {loop['data_ms']:9.1f} "
            f"{loop['forward_ms']:9.1f} {loop['backward_ms']:9.1f} {loop['peak_memory_mb']:9.0f} "
            f"{100 * loop['mfu']:6.1f}%"
        )
    lines.append(f"\nspeed-up of the run settings over plain fp32: {result['speedup']:.2f}×")
    return "\n".join(lines)
