"""Exclusive claims between harness processes on one machine: advisory `flock` locks, released
when the holder ends (even by SIGKILL), so a claim never outlives its process.

`trial_claim` keeps two `harness run`s of one spec in one folder from training the same trial at
once: the second skips a trial the first holds and, once it holds the claim itself, reads the
trial's status again before training, so a trial is never logged as finished twice. The GPU pool
(`harness.execute.gpus`) claims GPUs the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LOCKS = Path("checkpoints") / ".claims"  # beside the resume files, in the launching folder


def try_lock(path: Path) -> IO | None:
    """The open, exclusively locked file at `path`, or None when another process holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` for the block, waiting for it (for short decisions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def release(handle: IO) -> None:
    fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


@contextlib.contextmanager
def trial_claim(spec_name: str, trial_key: str) -> Iterator[bool]:
    """True while this process holds trial `trial_key` of spec `spec_name`; False (at once)
    when another process does."""
    handle = try_lock(LOCKS / spec_name / f"{trial_key}.lock")
    try:
        yield handle is not None
    finally:
        if handle is not None:
            release(handle)
