"""`harness bench train`: training throughput of one model against the device's physical limit.

Two loops train the same model on the same in-memory clips, in one process:

- `optimised`: on a GPU bf16 autocast, channels-last 3D memory, cuDNN
  autotuning, a fused SGD step, optionally `torch.compile`; on the CPU plain fp32 (the CPU has no
  faster path here, so the two loops should match). This loop is the benchmark's own: `run_trial`
  does not yet run these settings;
- `reference`: a plain eager fp32 loop (contiguous memory, foreach SGD, no autocast).

Each reports clips/s, the step time split into data wait, forward and backward+update, peak
memory, and model FLOP utilisation: achieved training FLOPs (3 × the forward's, fvcore's MACs × 2)
over the device's measured dense matrix-multiply rate (bf16 on a GPU, fp32 on the CPU). On the
CPU, oneDNN's convolutions can outrun the measured fp32 matmul, so MFU there can exceed 100 %:
read it as a ratio to that measurement, not to a hardware peak.
"""

from __future__ import annotations

import contextlib
import resource
import time
from dataclasses import asdict, dataclass

import torch
from torch import nn

from harness.analysis.complexity import count_flops
from harness.device import device_name, synchronize
from registry import build_model

MATMUL_SIZE = {"cuda": 8192, "cpu": 2048}


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
    model = build_model(backbone, attention=attention, placement=placement, num_classes=51)
    shape = (3, frames, size, size) if model_dims(backbone) == 3 else (3, size, size)
    flops_per_clip = 3 * 2 * count_flops(model, shape)["fvcore"].gflops * 1e9  # fwd + bwd, FMA=2
    clips = torch.randn(4 * batch, *shape).pin_memory() if device.type == "cuda" else None
    clips = clips if clips is not None else torch.randn(4 * batch, *shape)
    labels = torch.randint(0, 51, (4 * batch,))
    rate = matmul_tflops(device)
    results = []
    for name, optimised in (("optimised", True), ("reference", False)):
        torch.manual_seed(0)
        fresh = build_model(backbone, attention=attention, placement=placement, num_classes=51)
        result = _loop(name, fresh, clips, labels, batch=batch, steps=steps, warmup=warmup,
                       device=device, optimised=optimised, compile_model=compile_model)  # fmt: skip
        result.mfu = result.clips_per_s * flops_per_clip / (rate * 1e12)
        results.append(result)
    optimised, reference = results
    return {
        "backbone": backbone, "attention": attention, "placement": placement,
        "batch": batch, "input": [batch, *shape], "device": device_name(device),
        "matmul_tflops": rate, "train_gflops_per_clip": flops_per_clip / 1e9,
        "loops": [asdict(r) for r in results],
        "speedup": optimised.clips_per_s / reference.clips_per_s,
    }  # fmt: skip


def model_dims(backbone: str) -> int:
    from registry import BACKBONES

    return BACKBONES.get(backbone).dims


def _loop(name, model, clips, labels, *, batch, steps, warmup, device, optimised,
          compile_model) -> LoopResult:  # fmt: skip
    model.to(device).train()
    cuda = device.type == "cuda"
    if optimised and cuda:
        torch.backends.cudnn.benchmark = True
        if clips.dim() == 5:
            model = model.to(memory_format=torch.channels_last_3d)
    runner = torch.compile(model) if optimised and compile_model else model
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9,
                                **({"fused": True} if optimised and cuda else {}))  # fmt: skip
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if optimised and cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    totals = {"data": 0.0, "forward": 0.0, "backward": 0.0}
    measured = 0
    started = None
    for step in range(warmup + steps):
        if step == warmup:
            synchronize(device)
            started = time.perf_counter()
            totals = dict.fromkeys(totals, 0.0)
        t0 = time.perf_counter()
        index = torch.arange(step * batch, (step + 1) * batch) % len(clips)
        x = clips[index].to(device, non_blocking=True)
        y = labels[index].to(device, non_blocking=True)
        if optimised and cuda and x.dim() == 5:
            x = x.contiguous(memory_format=torch.channels_last_3d)
        synchronize(device)
        t1 = time.perf_counter()
        with autocast or contextlib.nullcontext():
            loss = nn.functional.cross_entropy(runner(x).float(), y)
        synchronize(device)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        synchronize(device)
        t3 = time.perf_counter()
        totals["data"] += t1 - t0
        totals["forward"] += t2 - t1
        totals["backward"] += t3 - t2
        measured = step - warmup + 1
    seconds = time.perf_counter() - started
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if cuda
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    per_step = {k: 1000 * v / max(measured, 1) for k, v in totals.items()}
    return LoopResult(name, batch * measured / seconds, per_step["data"], per_step["forward"],
                      per_step["backward"], peak, 0.0)  # fmt: skip


def format_bench_train(result: dict) -> str:
    lines = [
        f"{result['backbone']} + {result['attention']} ({result['placement']}), input "
        f"{'×'.join(map(str, result['input']))}, {result['device']}",
        f"measured matmul rate: {result['matmul_tflops']:.2f} TFLOP/s; training "
        f"{result['train_gflops_per_clip']:.1f} GFLOP per clip",
        "",
        f"{'loop':10} {'clips/s':>9} {'data ms':>9} {'fwd ms':>9} {'bwd ms':>9} {'peak MB':>9} "
        f"{'MFU':>7}",
    ]
    for loop in result["loops"]:
        lines.append(
            f"{loop['name']:10} {loop['clips_per_s']:9.1f} {loop['data_ms']:9.1f} "
            f"{loop['forward_ms']:9.1f} {loop['backward_ms']:9.1f} {loop['peak_memory_mb']:9.0f} "
            f"{100 * loop['mfu']:6.1f}%"
        )
    lines.append(f"\nspeed-up of the optimised loop over plain fp32: {result['speedup']:.2f}×")
    return "\n".join(lines)
