"""The resume format: one file per unfinished trial, `checkpoints/<spec>/<trial>/last.pt`,
holding the last finished epoch, the model, optimiser and schedule states and the torch RNGs (the
CPU's, and the current GPU's on a CUDA machine).
Written atomically (a temporary file renamed over the previous one), read with
`torch.load(weights_only=True)`, so a file that would run code is refused."""

from __future__ import annotations

from pathlib import Path

import torch

CHECKPOINTS = Path("checkpoints")


def checkpoint_path(spec_name: str, trial_key: str) -> Path:
    """Where trial `trial_key` of spec `spec_name` keeps its resume point."""
    return CHECKPOINTS / spec_name / trial_key / "last.pt"


def save_checkpoint(path: Path, model, optimizer, schedule, epoch: int) -> None:
    """The state after `epoch`, replacing the previous one only once fully written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    state = {
        "epoch": epoch,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "schedule": schedule.state_dict(),
        "torch_rng": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda_rng"] = torch.cuda.get_rng_state()
    torch.save(state, temporary)
    temporary.replace(path)  # a kill mid-write leaves the previous checkpoint intact


def load_checkpoint(path: Path, model, optimizer, schedule) -> int | None:
    """Restore the states saved at `path` into the given objects; the epoch it ended, or None
    when there is no checkpoint."""
    if not path.is_file():
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    torch.set_rng_state(state["torch_rng"])
    if "cuda_rng" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda_rng"])
    return state["epoch"]
