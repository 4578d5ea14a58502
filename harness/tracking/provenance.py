"""Where a run came from: the harness's git commit and the versions of the packages it ran on,
logged as run tags so that a report can say which code and stack produced each number."""

from __future__ import annotations

import os
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


ALSO_PUBLISHED_AS = {"mlflow": "mlflow-skinny"}  # the same module, without the web server


def version(package: str) -> str:
    for name in filter(None, (package, ALSO_PUBLISHED_AS.get(package))):
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def git_commit() -> str:
    """The commit of the harness's own checkout, wherever it is run from. A copy of the code
    outside git (a working tree sent to another machine) names it in HARNESS_GIT_COMMIT;
    otherwise "unknown"."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
            cwd=Path(__file__).parent,
        )  # fmt: skip
        commit = done.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return commit or os.environ.get("HARNESS_GIT_COMMIT") or "unknown"
