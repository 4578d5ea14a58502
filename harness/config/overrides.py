"""`--set train.<key>=value` holds for every trial of a spec.

A spec's `per_trial` entries change the train settings of the trials they match (AARM's flow
streams train 250 epochs, Hara's from-scratch C3D its preset's 200). A value given on the command
line is the user's last word, so it replaces theirs too: `--set train.epochs=2` trains every trial
two epochs. An entry's `preset` would bring the key back, so such an entry gets the value itself.
`train.preset` is the exception: an entry's own preset is its trial's recipe and stays.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from harness.config.presets import PRESETS


def reach_every_trial(raw: Any, overrides: Sequence[str]) -> Any:
    """`raw` (the spec's YAML with `overrides` applied) with each `--set train.<key>` key taken
    out of the `per_trial` entries that set it (or given to those whose preset sets it); each
    value replaced is said on stderr. Malformed sections are left for validation to name."""
    train = raw.get("train") if isinstance(raw, dict) else None
    entries = raw.get("per_trial") if isinstance(raw, dict) else None
    if not isinstance(train, dict) or not isinstance(entries, list):
        return raw
    for key in dict.fromkeys(_train_keys(overrides)):
        if key in train:
            for index, entry in enumerate(entries):
                _replace(entry, index, key, train[key])
    return raw


def _train_keys(overrides: Sequence[str]) -> list[str]:
    """The `<key>` of every `train.<key>=value` override (not `train.preset`)."""
    names = [override.partition("=")[0].split(".") for override in overrides]
    return [parts[1] for parts in names if len(parts) == 2 and parts[0] == "train"
            and parts[1] != "preset"]  # fmt: skip


def _replace(entry: Any, index: int, key: str, value: Any) -> None:
    changes = entry.get("train") if isinstance(entry, dict) else None
    if not isinstance(changes, dict):
        return
    name = changes.get("preset")
    preset = PRESETS.get(name, {}) if isinstance(name, str) else {}
    if key not in changes and key not in preset:
        return
    replaced = changes.pop(key, preset.get(key))
    if key in preset:
        changes[key] = value  # else the preset brings its own value back
    if replaced != value:
        print(
            f"note: --set train.{key}={value} holds for every trial: it replaces "
            f"per_trial[{index}]'s {key} = {replaced!r} (match: {entry.get('match', {})}).",
            file=sys.stderr,
        )
