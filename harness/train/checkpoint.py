"""The resume format: one file per unfinished trial, `checkpoints/<spec>/<trial>/last.pt`,
holding the last finished epoch, the model, optimiser and schedule states, the torch RNGs (the
CPU's, and the current GPU's on a CUDA machine), and what it belongs to: the store and
experiment of its run (`owner`) and the trial's configuration hash.

Written atomically (a temporary file renamed over the previous one, removed if writing fails),
read with `torch.load(weights_only=True)`, so a file that would run code is refused. A file that
cannot be used (refused, damaged, of another architecture, another store's run or another
configuration) is set aside as `checkpoints/<spec>/<trial>.last.pt.unusable-<time>` with a warning
naming it, and the trial starts again from its first epoch.
"""

from __future__ import annotations

import pickle
import sys
import time
from pathlib import Path

import torch

CHECKPOINTS = Path("checkpoints")
UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError)
KERNEL_KEYS = ("fused", "foreach")  # how an optimiser steps: the run's device decides, not a file


def checkpoint_path(spec_name: str, trial_key: str) -> Path:
    """Where trial `trial_key` of spec `spec_name` keeps its resume point (both are validated
    names: no separators, no `..`; checked again here so no path leaves `checkpoints/`)."""
    path = CHECKPOINTS / spec_name / trial_key / "last.pt"
    if ".." in path.parts or not path.resolve().is_relative_to(CHECKPOINTS.resolve()):
        raise ValueError(f"checkpoint path {path} leaves {CHECKPOINTS}/")
    return path


def save_checkpoint(path: Path, model, optimizer, schedule, epoch: int, *, owner: str,
                    config_hash: str) -> None:  # fmt: skip
    """The state after `epoch`, replacing the previous one only once fully written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "owner": owner,
        "config_hash": config_hash,
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    try:
        torch.save(state, temporary)
        temporary.replace(path)  # a kill mid-write leaves the previous checkpoint intact
    except BaseException:
        temporary.unlink(missing_ok=True)  # a full disk must not keep a half-written file
        raise


def load_checkpoint(path: Path, model, optimizer, schedule, *, owner: str,
                    config_hash: str) -> int | None:  # fmt: skip
    """Restore the states saved at `path` into the given objects and return the epoch they
    ended; None when there is no usable checkpoint (an unusable one is set aside)."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except UNREADABLE as error:
        return set_aside(path, f"it cannot be read as a resume file ({type(error).__name__})")
    problem = _mismatch(state, model, owner, config_hash)
    if problem:
        return set_aside(path, problem)
    model.load_state_dict(state["model"])
    # this run's kernel, not the file's (a resume on a GPU of a CPU run keeps `fused`), given to
    # the saved groups before loading: torch moves AdamW's `step` to the parameter's device only
    # for a group it reads as fused, and CUDA's fused kernel needs it there
    saved_groups = state["optimizer"]["param_groups"]
    for saved, group in zip(saved_groups, optimizer.param_groups, strict=True):
        saved.update({k: group[k] for k in KERNEL_KEYS if k in group})
    optimizer.load_state_dict(state["optimizer"])
    match_parameter_layouts(optimizer)
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    return state["epoch"]


def match_parameter_layouts(optimizer) -> None:
    """Give each optimiser state tensor shaped like its parameter the parameter's memory layout.
    A run saved on the CPU (contiguous) and resumed on a GPU (channels-last parameters) would
    otherwise stop at its first step: CUDA's fused optimisers need one layout for both."""
    for group in optimizer.param_groups:
        for parameter in group["params"]:
            state = optimizer.state.get(parameter, {})
            for name, value in state.items():
                if (torch.is_tensor(value) and value.shape == parameter.shape
                        and value.stride() != parameter.stride()):  # fmt: skip
                    state[name] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def save_weights(path: Path, model) -> int:
    """The trained weights alone (`{"model": state_dict}`: no optimiser or schedule state, each
    tensor in its own dtype, contiguous and on the CPU), as `train.save_checkpoint` logs them;
    returns the file's size in bytes."""
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": weights}, path)
    return path.stat().st_size


def _mismatch(state, model, owner: str, config_hash: str) -> str | None:
    """Why `state` cannot resume this trial's run, or None."""
    needed = {"epoch", "model", "optimizer", "schedule", "torch_rng", "owner", "config_hash"}
    if not isinstance(state, dict) or not needed <= set(state):
        return "it is not a resume file of this harness (keys missing)"
    if state["owner"] != owner:
        return f"it belongs to a run in another store ({state['owner']})"
    if state["config_hash"] != config_hash:
        return "it was written with another configuration of this trial"
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = {k: tuple(v.shape) for k, v in state["model"].items() if hasattr(v, "shape")}
    if expected != found:
        return "its weights do not fit this trial's model (another architecture)"
    return None


def set_aside(path: Path, reason: str) -> None:
    """Move an unusable resume file out of the way, saying so; the trial starts from scratch."""
    stamp = time.strftime("%Y%m%d-%H%M%S")  # beside the trial's folder, which finishing deletes
    target = path.parent.parent / f"{path.parent.name}.{path.name}.unusable-{stamp}"
    path.replace(target)
    print(f"warning: resume file {path} not used: {reason}. It was moved to {target}; the "
          "trial starts again from its first epoch.", file=sys.stderr)  # fmt: skip
    return None
