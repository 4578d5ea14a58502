"""Where a run came from: the harness's git commit and the versions of the packages it ran on,
logged as run tags so that a report can say which code and stack produced each number."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

VERSIONED = ("torch", "fvcore", "mlflow", "av", "numpy", "attention-harness")


def provenance_tags() -> dict[str, str]:
    """`git_commit`, `python` and `version.<package>` for every package in VERSIONED."""
    return {
        "git_commit": git_commit(),
        "python": platform.python_version(),
        **{f"version.{name}": version(name) for name in VERSIONED},
    }


def version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def git_commit() -> str:
    """The commit of the harness's own checkout, wherever it is run from; "unknown" outside git."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        )  # fmt: skip
        return done.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
