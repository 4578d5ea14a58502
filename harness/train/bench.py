"""`harness bench train`: training throughput of one model against the device's physical limit.

Two loops train the same model on the same in-memory clips, in one process, and both run
`Stepper.step`, the step `run_trial` runs (`harness.train.step`):

- `run settings`: the speed settings a run gets on this device by default (`train.*` left
  unset: on a GPU bf16 autocast, channels-last model and input, a fused optimiser, cuDNN
  autotuning; `--compile` adds `torch.compile`); on the CPU these are plain fp32, so the two
  loops should match there;
- `reference`: a plain eager fp32 loop (default memory layout, foreach optimiser, no autocast,
  no autotuning, IEEE fp32: no TF32, which cuDNN otherwise uses for fp32 convolutions on a GPU).
  Each loop sets its backend flags and restores them, so neither leaks into the other.

With `--cache`, a third loop (`cache-fed`) runs the run settings on batches from the real loader
of a clip cache (`ClipBatches` slicing it in threads, `DeviceAugmented` cropping, flipping and
normalising on the device), and reports the share of its step time spent waiting for data. Its
warm-up also uses up the batches the loader prepared ahead, and it measures at least twice that
many steps, so the wait is the steady state's, not the head start's.

Each reports clips/s, the step time split into data (taking the next pinned batch from memory,
or from the loader, its device work included),
forward (the copy to the device included) and backward+update, peak memory, and model FLOP
utilisation: achieved training FLOPs (3 × the forward's, fvcore's MACs × 2) over the device's
measured dense matrix-multiply rate (bf16 on a GPU, fp32 on the CPU). The phases are timed with
CUDA events on a GPU, so the loop never waits for the device per step, as training never does;
clips/s is the measured window's clips over its wall time. On the CPU,
oneDNN's convolutions can outrun the measured fp32 matmul, so MFU there can exceed 100 %: read it
as a ratio to that measurement, not to a hardware peak.
"""

from __future__ import annotations

import functools
import itertools
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from harness.analysis.complexity import count_flops
from harness.config.sections import TrainSection
from harness.data.batches import BATCHES_AHEAD_PER_THREAD, ClipBatches, DeviceAugmented
from harness.data.cache import CacheReader, ClipCache
from harness.data.clips import ClipProtocol, TrainClips
from harness.data.datasets import Entry
from harness.device import device_name, synchronize
from harness.train.optim import fitted_kernel, make_optimizer
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
MATMUL_SECONDS = 0.5  # how long the matmul rate is measured
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


def matmul_tflops(device: torch.device, seconds: float = MATMUL_SECONDS) -> float:
    """The device's measured dense matmul rate (bf16 on CUDA, fp32 on the CPU), in TFLOP/s:
    the best of batches of products over about `seconds` (an H100 does ten 8192³ products in
    15 ms, too short for its clocks to settle, which would understate the rate and overstate
    the MFU)."""
    n = MATMUL_SIZE[device.type]
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up
    synchronize(device)
    best, deadline, repeats = 0.0, time.perf_counter() + seconds, 10 if device.type == "cuda" else 1
    while time.perf_counter() < deadline or best == 0.0:
        started = time.perf_counter()
        for _ in range(repeats):
            a @ b
        synchronize(device)
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - started) / 1e12)
    return best


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
    cache: Path | None = None,
    threads: int = 1,
) -> dict:
    """Both loops' results (see the module docstring); with a clip `cache`, a third: the run
    settings fed by the real loader from it (`threads` slicing, augmentation on the device),
    and `data_wait`, the share of its step time spent waiting for the next batch."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_model(backbone, attention=attention, placement=placement,
                        num_classes=BENCH_CLASSES)  # fmt: skip
    shape = (3, frames, size, size) if model_dims(backbone) == 3 else (3, size, size)
    flops_per_clip = 3 * 2 * count_flops(model, shape)["fvcore"].gflops * 1e9  # fwd + bwd, FMA=2
    batches = _batches(batch, shape, device)
    rate = matmul_tflops(device)
    loops = {
        "run settings": _run_settings(model, compile_model, device),
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
    optimised, reference = results[:2]
    fed = {}
    if cache is not None:  # the run settings' loop again, fed by the real loader
        torch.manual_seed(0)
        fresh = build_model(backbone, attention=attention, placement=placement,
                            num_classes=BENCH_CLASSES)  # fmt: skip
        loader = cache_loader(cache, batch=batch, frames=frames, size=size, threads=threads,
                              device=device)  # fmt: skip
        result, fed = _fed_loop(fresh, loader, loops["run settings"], device, steps=steps,
                                warmup=warmup, threads=threads)  # fmt: skip
        loader.batches.close()
        result.mfu = result.clips_per_s * flops_per_clip / (rate * 1e12)
        results.append(result)
        fed["cache"] = str(cache)
    return fed | {
        "backbone": backbone, "attention": attention, "placement": placement,
        "batch": batch, "input": [batch, *shape], "device": device_name(device),
        "matmul_tflops": rate, "train_gflops_per_clip": flops_per_clip / 1e9,
        "settings": {name: asdict(settings) for name, settings in loops.items()},
        "loops": [asdict(r) for r in results],
        "speedup": optimised.clips_per_s / reference.clips_per_s,
    }  # fmt: skip


def _run_settings(model, compile_model: bool, device: torch.device) -> StepSettings:
    """A run's settings for `device`, as `run_trial` resolves them for this model."""
    train = TrainSection(compile=compile_model)
    return fitted_kernel(resolve_settings(train, device), model, train)


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


def cache_loader(folder: Path, *, batch: int, frames: int, size: int, threads: int,
                 device: torch.device) -> DeviceAugmented:  # fmt: skip
    """Every video of a clip cache as training clips (EAM's protocol; the class is the video's
    folder), sliced by `threads` and augmented on `device`: what a trial reading the cache runs."""
    cache = ClipCache(folder)
    classes = sorted({found.split("/")[0] for found in cache.videos})
    entries = [Entry(found, classes.index(found.split("/")[0]) % BENCH_CLASSES, found, "video")
               for found, record in cache.videos.items() if record.frames]  # fmt: skip
    clips = TrainClips(CacheReader(cache), entries, ClipProtocol(frames=frames, size=size))
    batches = ClipBatches(clips, batch_size=batch, seed=0, threads=threads,
                          pin=device.type == "cuda")  # fmt: skip
    return DeviceAugmented(batches, device)


def _fed_loop(model, loader: DeviceAugmented, settings: StepSettings, device: torch.device, *,
              steps: int, warmup: int, threads: int) -> tuple[LoopResult, dict]:  # fmt: skip
    """The loop on the loader's batches: its warm-up also uses up the batches the loader holds
    ready, and it measures at least twice that many steps, so the wait is the steady state's."""
    ahead = threads * BATCHES_AHEAD_PER_THREAD + 1
    fed_steps = max(steps, 2 * ahead)
    result = _loop("cache-fed", model, loader, settings, device, steps=fed_steps,
                   warmup=warmup + ahead)  # fmt: skip
    step_ms = result.data_ms + result.forward_ms + result.backward_ms
    return result, {"threads": threads, "fed_steps": fed_steps,
                    "data_wait": result.data_ms / step_ms}  # fmt: skip


def _supplier(batches: list[dict] | DeviceAugmented) -> Callable[[], dict]:
    """The next batch: from the in-memory list in turn, or from the loader, epoch after epoch."""
    if isinstance(batches, list):
        return functools.partial(next, itertools.cycle(batches))
    state = {"iterator": iter(batches)}

    def take() -> dict:
        try:
            return next(state["iterator"])
        except StopIteration:  # the next epoch, as training asks for it
            batches.sampler.set_epoch(batches.sampler.epoch + 1)
            state["iterator"] = iter(batches)
            return next(state["iterator"])

    return take


def _loop(name: str, model, batches: list[dict] | DeviceAugmented, settings: StepSettings,
          device: torch.device, *, steps: int, warmup: int) -> LoopResult:  # fmt: skip
    model = prepare_model(model, settings, device).train()
    optimizer = make_optimizer(model, TrainSection(), fused=settings.fused_optimizer)
    stepper = Stepper(compiled(model, settings), optimizer, settings, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with backend_flags(settings, device):
        totals, seconds, clips = _timed_steps(stepper, _supplier(batches), steps=steps,
                                              warmup=warmup)  # fmt: skip
    peak = (
        torch.cuda.max_memory_allocated(device) / 2**20
        if device.type == "cuda"
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    per_step = {k: 1000 * v / steps for k, v in totals.items()}
    return LoopResult(name, clips / seconds, per_step["data"], per_step["forward"],
                      per_step["update"], peak, 0.0)  # fmt: skip


def _timed_steps(stepper: Stepper, next_batch: Callable[[], dict], *, steps: int, warmup: int):
    """Per-phase seconds summed over `steps` measured steps (after `warmup`), their wall time
    and the clips trained. The phases are read off the device's own timeline (CUDA events; on
    the CPU, whose ops finish before the next starts, the host's clock), so the host queues work
    as training does and waits for the device only at the two ends of the measured window. A
    step's `data` phase is the time the device spent waiting for its batch, and preparing it on
    the training stream."""
    device = stepper.device
    for _ in range(warmup):
        stepper.step(next_batch())
    synchronize(device)
    stamped: list[dict[str, float | torch.cuda.Event]] = []
    started, clips = time.perf_counter(), 0
    for _ in range(steps):
        marks = {"start": _stamp(device)}
        batch = next_batch()
        marks["data"] = _stamp(device)
        stepper.step(batch, lambda phase, marks=marks: marks.update({phase: _stamp(device)}))
        clips += len(batch["label"])
        stamped.append(marks)
    synchronize(device)
    seconds = time.perf_counter() - started
    phases = (("start", "data"), ("data", "forward"), ("forward", "update"))
    totals = {phase: sum(_seconds(marks[before], marks[phase]) for marks in stamped)
              for before, phase in phases}  # fmt: skip
    return totals, seconds, clips


def _stamp(device: torch.device) -> float | torch.cuda.Event:
    """Now on `device`'s timeline: a recorded CUDA event (the host does not wait for it), or
    the host's clock."""
    if device.type != "cuda":
        return time.perf_counter()
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def _seconds(start: float | torch.cuda.Event, end: float | torch.cuda.Event) -> float:
    if isinstance(start, float):
        return end - start
    return start.elapsed_time(end) / 1000  # milliseconds between two completed events


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
    speedup = result["speedup"]
    lines.append(f"\nspeed-up of the run settings over plain fp32 (no TF32): {speedup:.2f}×")
    if "data_wait" in result:
        lines.append(
            f"cache-fed (slicing threads: {result['threads']}, augmentation on the device): "
            f"the device waited for data {100 * result['data_wait']:.1f}% of the step time "
            "(target < 5% on a GPU)"
        )
    return "\n".join(lines)
