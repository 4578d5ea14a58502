"""GPUs handed to parallel trials (`harness run --jobs N`): each trial claims a free GPU for its
whole run and returns it when it ends, so two trials never share a GPU unless asked
(`--per-gpu K` lets K trials share each one).

A claim is an exclusive advisory lock (`flock`) on one file per GPU slot, in a folder shared by
every harness process of the machine: workers of one sweep, and sweeps started side by side,
all see the same pool, and a worker that dies releases its claim with it. Slots are tried
GPU by GPU for the first trial of each GPU before any GPU takes a second, and a worker that
finds none free waits for one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from harness.execute.locks import release, try_lock

POLL_SECONDS = 1.0


def lock_folder() -> Path:
    """Where this user's GPU claims live on this machine."""
    return Path(tempfile.gettempdir()) / f"harness-gpus-{os.getuid()}"


@contextlib.contextmanager
def claimed_gpu(
    count: int, *, per_gpu: int = 1, folder: Path | None = None, poll: float = POLL_SECONDS
) -> Iterator[int]:
    """The index of a GPU (of `count`) that fewer than `per_gpu` trials hold, held until the
    block ends; waits while every slot is taken."""
    folder = folder or lock_folder()
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        for slot in range(per_gpu):
            for gpu in range(count):
                handle = try_lock(folder / f"gpu{gpu}-slot{slot}.lock")
                if handle is None:
                    continue
                try:
                    yield gpu
                finally:
                    release(handle)
                return
        time.sleep(poll)
