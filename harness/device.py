"""The compute device: which one to use, its name as runs and benchmarks record it, and the one
place that waits for it. Used by training, latency and the benchmarks alike (hence here, below
them all, rather than inside `harness.train`)."""

from __future__ import annotations

import platform

import torch


def default_device() -> torch.device:
    """The first CUDA GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    """`cuda: <GPU model>` or `cpu: <processor> (<threads> threads)`, as run tags record it."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    processor = platform.processor() or platform.machine()
    return f"cpu: {processor} ({torch.get_num_threads()} threads)"


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so host timers measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
