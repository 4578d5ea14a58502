"""The compute device: which one to use, its name as runs and benchmarks record it, and the one
place that waits for it. Used by training, latency and the benchmarks alike (hence here, below
them all, rather than inside `harness.train`)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from registry import ConfigError


def default_device() -> torch.device:
    """The current CUDA GPU (the first, unless a worker or rank chose another) when there is
    one, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def device_name(device: torch.device) -> str:
    """`cuda: <GPU model>` or `cpu: <processor> (<threads> threads)`, as run tags record it."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {cpu_model()} ({torch.get_num_threads()} threads)"


def cpu_model() -> str:
    """The processor's model name (`/proc/cpuinfo` on Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU), so host timers measure it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CONCURRENT_TRIALS_ENV = "HARNESS_CONCURRENT_TRIALS"  # set in `--jobs` workers


def cores_per_process() -> int:
    """This process's share of the cores it may run on: divided among the ranks of a `torchrun`
    on this machine (`LOCAL_WORLD_SIZE`) and the trials `--jobs` runs at once."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    sharing = _env_count("LOCAL_WORLD_SIZE") * _env_count(CONCURRENT_TRIALS_ENV)
    return max(1, (cores or 1) // sharing)


def _env_count(name: str) -> int:
    """A process count from the environment (1 when unset)."""
    text = os.environ.get(name, "1")
    if not text.strip().isdigit() or int(text) < 1:
        raise ConfigError(
            f"environment variable {name}={text!r}: expected a positive number of processes "
            "sharing this machine's cores (torchrun sets LOCAL_WORLD_SIZE, harness run --jobs "
            f"{CONCURRENT_TRIALS_ENV}); unset it or set a number such as 1."
        )
    return int(text)
