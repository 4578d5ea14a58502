"""GPUs handed to trials: each trial of a sweep (`harness run`, one at a time or `--jobs N`)
claims a free GPU for its whole run and returns it when it ends, so two trials never share a
GPU unless asked (`--per-gpu K` lets K trials share each one).

A claim is an exclusive advisory lock (`flock`) on one file per GPU slot, in a folder shared by
every harness process of the machine: workers of one sweep, and sweeps started side by side,
all see the same pool, and a worker that dies releases its claim with it. The files are named
by the GPU's UUID, not its index, so sweeps that see different GPUs (`CUDA_VISIBLE_DEVICES=2,3`
beside `=0,1`, or a worker shown one GPU as `cuda:0`) claim the physical GPU they would use.
Each holder's slot file says how many trials it allows on its GPU (its sweep's `--per-gpu`), so a
trial joins a GPU only where every holder allows one more: sweeps side by side with different
`--per-gpu` respect each other's limits. Slots are tried GPU by GPU for the first trial of each
GPU before any GPU takes a second, and a worker that finds none free waits for one.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

import torch

from harness.execute.locks import exclusive, release, try_lock

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
    """The index of a GPU (of those `names` names, as `gpu_names` gives them) that this trial
    may join, held until the block ends: one that fewer than `per_gpu` trials hold, each of
    which allows as many beside it (a trial of a one-per-GPU sweep shares with none, whatever a
    sweep beside it allows). Waits while there is none, calling `waiting` once when it starts."""
    folder = folder or lock_folder()
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        claim = _try_claim(names, per_gpu, folder)
        if claim is not None:
            gpu, handle = claim
            try:
                yield gpu
            finally:
                release(handle)
            return
        if waiting is not None:
            waiting()
            waiting = None
        time.sleep(poll)


def _try_claim(names: Sequence[str], per_gpu: int, folder: Path) -> tuple[int, IO] | None:
    """A slot on the first GPU that `per_gpu` lets this trial join, fewest holders first."""
    for holders in range(per_gpu):
        for gpu, name in enumerate(names):
            with exclusive(folder / f"gpu-{name}.gate"):  # one decision at a time per GPU
                limits, free = _slots(folder, name)
                if len(limits) == holders and holders < min(limits, default=per_gpu):
                    handle = try_lock(folder / f"gpu-{name}-slot{free}.lock")
                    if handle is not None:
                        handle.truncate(0)  # what this holder allows, for those who come later
                        handle.write(str(per_gpu))
                        handle.flush()
                        return gpu, handle
    return None


def _slots(folder: Path, name: str) -> tuple[list[int], int]:
    """The trial limits of `name`'s held slots, and the lowest slot number free."""
    limits, held = [], set()
    for path in folder.glob(f"gpu-{name}-slot*.lock"):
        handle = try_lock(path)
        if handle is not None:
            release(handle)
            continue
        held.add(int(path.stem.rpartition("slot")[2]))
        text = path.read_text().strip()
        limits.append(int(text) if text.isdigit() else 1)  # an older harness's: exclusive
    return limits, next(slot for slot in range(len(held) + 1) if slot not in held)
