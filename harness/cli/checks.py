"""Checks of command-line values that argparse's types cannot express, as one-paragraph
`ConfigError`s (exit 2) naming the flag."""

from __future__ import annotations

import argparse

import torch

from registry import ConfigError


def require_positive(args: argparse.Namespace, *names: str) -> None:
    """Every flag `--name` given must be a positive integer."""
    for name in names:
        value = getattr(args, name)
        if value is not None and value < 1:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(f"{flag} {value}: expected a positive integer.")


def device_flag(value: str | None) -> torch.device | None:
    """`--device`: a torch device this machine has (None: the default)."""
    if value is None:
        return None
    try:
        device = torch.device(value)
    except RuntimeError:
        raise ConfigError(f"--device {value!r}: expected cpu, cuda or cuda:N.") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {value}: this machine has no CUDA GPU; use --device cpu.")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"--device {value}: this machine has {torch.cuda.device_count()} GPUs.")
    return device
