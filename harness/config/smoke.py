"""`--smoke`: any spec shrunk to a minutes-long CPU run on synthetic data, same grid.

The shrunk spec keeps every grid row (backbone, attention, placement, options, clip length) and
changes only what costs time or needs files: the data becomes the synthetic `tiny` preset (a few
videos per class), one short epoch, small crops (in `include` rows too; a backbone with a fixed
input, C3D, keeps its own), one test clip, random initialisation instead of pretrained weights,
one split and one seed. Its runs go to the experiment `<name>_smoke`, so they never mix with real
results; `harness report SPEC --smoke` reads them back.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

from registry import BACKBONES

SMOKE_PRESET = "tiny"
SMOKE_CLASSES = 5  # classes of the tiny preset
SMOKE_VIDEOS_PER_CLASS = 2
SMOKE_SIZE = 32  # crop side; backbones with a fixed input (C3D) keep theirs
SHRUNK_TRAIN = {
    "epochs": 1, "batch_size": 4, "pretrained": None, "save_checkpoint": False,
    "warmup_epochs": 0,
}  # fmt: skip


SMOKE_SUFFIX = "_smoke"  # a smoke spec's name: its runs go to an experiment of their own


def is_smoke(spec_name: str) -> bool:
    """Whether a spec (by its name) is a `--smoke` rewrite."""
    return spec_name.endswith(SMOKE_SUFFIX)


def smoke_raw(raw: Any) -> Any:
    """The spec's YAML mapping, shrunk (a copy; anything not a mapping is returned as is)."""
    if not isinstance(raw, dict):
        return raw
    raw = copy.deepcopy(raw)
    raw["name"] = f"{raw.get('name', 'spec')}{SMOKE_SUFFIX}"
    model = raw.setdefault("model", {})
    if isinstance(model, dict):
        model["num_classes"] = SMOKE_CLASSES
        model["size"] = _size(raw)
    grid = raw.get("grid")
    if isinstance(grid, dict):
        for axis in ("num_classes", "size"):
            grid.pop(axis, None)
    for row in raw.get("include") if isinstance(raw.get("include"), list) else []:
        if isinstance(row, dict) and not _fixed_side(row.get("backbone")):
            row.pop("size", None)  # the smoke crop, as for the grid's rows
    dataset = raw.get("dataset") if isinstance(raw.get("dataset"), dict) else {}
    raw["dataset"] = {
        "name": "synthetic", "root": f"synthetic:{SMOKE_PRESET}", "splits": [1], "workers": 0,
        "normalisation": dataset.get("normalisation", "activitynet"), "crop": "random",
        "segments": 2, "subset": SMOKE_VIDEOS_PER_CLASS,
    }  # fmt: skip
    if isinstance(raw.get("train", {}), dict | None):  # anything else: validation reports it
        train = dict(raw.get("train") or {})
        seeds = train.get("seeds") or [0]
        first = {"seeds": seeds[:1]} if isinstance(seeds, list) else {}  # else: reported
        raw["train"] = train | SHRUNK_TRAIN | first
    for entry in raw.get("per_trial") or []:  # per-trial settings keep only what is not shrunk
        if isinstance(entry, dict) and isinstance(entry.get("train"), dict):
            kept = {k: v for k, v in entry["train"].items() if k not in SHRUNK_TRAIN}
            # a preset would bring its epochs and batch back: given beside it, they win
            entry["train"] = kept | (SHRUNK_TRAIN if "preset" in kept else {})
    if isinstance(raw.get("eval", {}), dict | None):
        raw["eval"] = {**(raw.get("eval") or {}), "clips": "even", "count": 1, "batch_size": 8}
    raw.pop("tracking", None)
    return raw


def warn_dropped_weights(raw: dict) -> None:
    """Say which pretrained checkpoints a smoke run replaces by random initialisation."""
    entries = [raw.get("train") or {}] + [e.get("train") or {} for e in raw.get("per_trial") or []]
    for path in dict.fromkeys(e["pretrained"] for e in entries if e.get("pretrained")):
        print(
            f"warning: --smoke: train.pretrained {path!r} is replaced by random initialisation "
            "(smoke runs check the spec, not the weights).",
            file=sys.stderr,
        )


def _size(raw: dict) -> int:
    """The smoke crop: `SMOKE_SIZE`, or the largest side a grid backbone's fixed input needs."""
    backbones = (raw.get("grid") or {}).get("backbone", [])
    backbones = backbones if isinstance(backbones, list) else [backbones]
    return max([_fixed_side(b) or SMOKE_SIZE for b in backbones] or [SMOKE_SIZE])


def _fixed_side(backbone: Any) -> int | None:
    """The crop side of a backbone's `fixed_input` (C3D: 112), or None. A name that is not a
    registered backbone has none here: validating the shrunk spec reports it, with the file."""
    if not isinstance(backbone, str) or backbone not in BACKBONES:
        return None
    fixed = BACKBONES.get(backbone).fixed_input
    return fixed[-1] if fixed else None
