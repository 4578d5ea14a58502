"""Measured speed of a model on the current device: what FLOP counts cannot show.

Attention modules with near-zero FLOPs still cost wall time (pooling, gating and reshapes are
memory-bound), so every profile can add measured latency beside the counts.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
from torch import nn

from harness.device import default_device, synchronize


@dataclass(frozen=True)
class Latency:
    """Median forward time per clip at batch 1, and throughput at a larger batch."""

    device: str
    ms_per_clip: float
    batch: int
    clips_per_s: float


def measure_latency(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    device: torch.device | None = None,
    batch: int = 8,
    warmup: int = 2,
    repeats: int = 5,
) -> Latency:
    """Time eval-mode forward passes after `warmup` untimed ones; medians of `repeats`."""
    device = device or default_device()
    single = clip_latency_ms(model, input_shape, device=device, warmup=warmup, repeats=repeats)
    batched = _median_seconds(model, torch.randn(batch, *input_shape, device=device), 1, repeats)
    return Latency(str(device), single, batch, batch / batched)


def clip_latency_ms(
    model: nn.Module,
    input_shape: tuple[int, ...],
    *,
    device: torch.device | None = None,
    warmup: int = 2,
    repeats: int = 5,
) -> float:
    """Median eval-mode forward time of one clip (batch 1) in milliseconds: a run's
    `latency_ms`, without the batched throughput that only `harness profile` reports."""
    device = device or default_device()
    model = model.to(device).eval()
    clip = torch.randn(1, *input_shape, device=device)
    return _median_seconds(model, clip, warmup, repeats) * 1e3


def _median_seconds(model: nn.Module, clip: torch.Tensor, warmup: int, repeats: int) -> float:
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            synchronize(clip.device)
            start = time.perf_counter()
            model(clip)
            synchronize(clip.device)
            if i >= warmup:
                times.append(time.perf_counter() - start)
    return statistics.median(times)
