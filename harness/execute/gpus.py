"""GPUs handed to trials: each trial of a sweep (`harness run`, one at a time or `--jobs N`)
claims a free GPU for its whole run and returns it when it ends, so two trials never share a
GPU unless asked (`--per-gpu K` lets K trials share each one).

A claim is an exclusive advisory lock (`flock`) on one file per GPU slot, in a folder shared by
every harness process of the machine: workers of one sweep, and sweeps started side by side,
all see the same pool, and a worker that dies releases its claim with it. The files are named
by the GPU's UUID, not its index, so sweeps that see different GPUs (`CUDA_VISIBLE_DEVICES=2,3`
beside `=0,1`, or a worker shown one GPU as `cuda:0`) claim the physical GPU they would use.
Slots are tried GPU by GPU for the first trial of each GPU before any GPU takes a second, and a
worker that finds none free waits for one.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from harness.execute.locks import release, try_lock

POLL_SECONDS = 1.0


def lock_folder() -> Path:
    """Where this user's GPU claims live on this machine."""
    return Path(tempfile.gettempdir()) / f"harness-gpus-{os.getuid()}"


def gpu_names() -> list[str]:
    """This process's GPUs in index order, each named by its UUID (the index when the driver
    gives none)."""
    return [_uuid(index) for index in range(torch.cuda.device_count())]


def _uuid(index: int) -> str:
    uuid = str(getattr(torch.cuda.get_device_properties(index), "uuid", ""))
    return re.sub(r"[^A-Za-z0-9-]", "", uuid) or f"index{index}"


@contextlib.contextmanager
def claimed_gpu(
    names: Sequence[str], *, per_gpu: int = 1, folder: Path | None = None,
    poll: float = POLL_SECONDS, waiting: Callable[[], None] | None = None,
) -> Iterator[int]:  # fmt: skip
    """The index of a GPU (of those `names` names, as `gpu_names` gives them) that fewer than
    `per_gpu` trials hold, held until the block ends; waits while every slot is taken, calling
    `waiting` once when it starts to."""
    folder = folder or lock_folder()
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in range(per_gpu):
            for gpu, name in enumerate(names):
                handle = try_lock(folder / f"gpu-{name}-slot{slot}.lock")
                if handle is None:
                    continue
                try:
                    yield gpu
                finally:
                    release(handle)
                return
        if waiting is not None:
            waiting()
            waiting = None
        time.sleep(poll)
