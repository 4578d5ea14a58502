"""Whether a folder can be made at a path: what commands check before they write anything (an
`--out` flag, a store the dry run must not create). Below every package that writes, so the
command line and the tracking layer share one probe."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def nearest_existing(path: Path) -> Path:
    """`path`, or the nearest of its ancestors that exists (the root at worst)."""
    return next(p for p in (path, *path.absolute().parents) if p.exists())


def folder_problem(folder: Path) -> OSError | None:
    """None when a new folder can be made in the existing `folder` (one is made and removed at
    once); else the system's error (a read-only place, /proc, /sys)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".harness-probe-", dir=folder))
    except OSError as error:
        return error
    return None


def lies_within(path: Path, root: Path) -> bool:
    """Whether `path` is `root` or lies below it (links resolved): what a data command writes
    there would mix with the dataset's own files."""
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents
