"""Checks of command-line values that argparse's types cannot express, as one-paragraph
`ConfigError`s (exit 2) naming the flag."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from harness.folders import folder_problem, nearest_existing
from registry import ConfigError


def require_positive(args: argparse.Namespace, *names: str) -> None:
    """Every flag `--name` given must be a positive integer."""
    _require_at_least(args, 1, names)


def require_non_negative(args: argparse.Namespace, *names: str) -> None:
    """Every flag `--name` given must be an integer of 0 or more."""
    _require_at_least(args, 0, names)


def _require_at_least(args: argparse.Namespace, minimum: int, names: tuple[str, ...]) -> None:
    expected = "a positive integer" if minimum == 1 else "0 or a positive integer"
    for name in names:
        value = getattr(args, name)
        if value is not None and value < minimum:
            raise ConfigError(f"{_flag(name)} {value}: expected {expected}.")


MAX_BATCH = 1024  # clips per batch of a benchmark or a latency: beyond, a typo (a CPU's kernel
# kills a process that asks for more memory than the machine has, with no message to catch)


def require_at_most(args: argparse.Namespace, **limits: int) -> None:
    """Every flag `--name` given must be at most `limits[name]`: beyond it, a typo that would
    otherwise allocate gigabytes or run for hours (e.g. `--size 5000` for 500)."""
    for name, limit in limits.items():
        value = getattr(args, name)
        if value is not None and value > limit:
            raise ConfigError(f"{_flag(name)} {value}: expected at most {limit}.")


def require_folder(args: argparse.Namespace, name: str) -> None:
    """The flag `--name`, when given, must be a folder (new or existing) this process can write:
    not a file, not under one, not in a file system that takes no folders (/sys, /proc)."""
    value = getattr(args, name)
    if value is None:
        return
    if value.exists() and not value.is_dir():
        raise ConfigError(
            f"{_flag(name)} {value}: that is a file; give a folder (new or existing)."
        )
    require_writable(_flag(name), value, value)


def require_writable(flag: str, value: Path, folder: Path) -> None:
    """`folder` (the flag's value, or the folder of a file it names) can be made and written:
    its nearest existing folder takes a new folder (made and removed at once)."""
    there = nearest_existing(folder)
    if not there.is_dir():
        raise ConfigError(
            f"{flag} {value}: {there} is a file, so no folder can be made under it; give "
            "another path."
        )
    problem = folder_problem(there)
    if problem is not None:
        raise ConfigError(
            f"{flag} {value}: nothing can be written in {there} ({problem.strerror}); give a "
            "path you can write, e.g. one under the current folder."
        )


def require_existing(args: argparse.Namespace, name: str, inside: str, made_by: str) -> None:
    """The flag `--name`, when given, must be a folder holding `inside` (a file name, or "" for
    any folder); `made_by` is the command that makes one."""
    value = getattr(args, name)
    if value is None or (value / inside).is_file() or (not inside and value.is_dir()):
        return
    what = "no such folder" if not value.is_dir() else f"no {inside} in that folder"
    raise ConfigError(f"{_flag(name)} {value}: {what}. Expected a folder that {made_by} wrote.")


def _flag(name: str) -> str:
    """The command-line flag of an argparse destination: `short_side` → `--short-side`."""
    return "--" + name.replace("_", "-")


def device_flag(value: str | None) -> torch.device | None:
    """`--device`: a torch device this machine has (None: the default)."""
    if value is None:
        return None
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ConfigError(f"--device {value!r}: expected cpu, cuda or cuda:N.") from None
    if device.type not in ("cpu", "cuda"):  # mps, xpu, meta…: the harness runs on neither
        raise ConfigError(
            f"--device {value}: expected cpu, cuda or cuda:N (the harness trains and measures on "
            f"those only, not on {device.type})."
        )
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {value}: this machine has no CUDA GPU; use --device cpu.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"--device {value}: this machine has {torch.cuda.device_count()} GPUs.")
    return device
