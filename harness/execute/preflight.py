"""What must be true before a sweep trains anything, and what a dry run reports as missing:
pretrained checkpoints, the dataset's root, split files and entries, flow images, and a class
count that matches the data. Each problem is one message naming the path or key and the
command that helps."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from harness.config import Spec, SpecError, Trial
from harness.config.sections import TrainSection
from harness.data.cache import INDEX_FILE, cache_command, open_cache
from harness.data.datasets import open_dataset, require_present
from harness.data.formats import FORMATS
from harness.data.splits import DataError
from harness.data.synthetic import PRESETS, generated, synthetic_preset
from harness.train.inputs import cache_folder, check_augmentation, dataset_config
from harness.train.optim import set_trainable
from registry import ConfigError, fitted_state, read_state_dict

FLAG_KEYS = {  # what the `harness data` commands call the settings a spec's dataset holds
    "--split-dir": "dataset.split_dir",
    "--annotations": "dataset.annotations",
    "--split-file": "dataset.split_file",
}


def readiness(spec: Spec) -> list[str]:
    """What this machine lacks to run `spec`: data, flow images, pretrained checkpoints; each
    with where it must be and the `harness data` command that prepares or checks it."""
    missing = []
    if synthetic_preset(spec.dataset.root) is None:
        missing += _missing_data(spec)
    for path, users in _pretrained_users(spec).items():
        problem = _unreadable(path, absent="not found")
        if problem:
            shown = sorted(set(users))
            missing.append(
                f"pretrained weights: {path!r} {problem}, needed by {len(users)} trial(s) "
                f"({', '.join(shown[:3])}{', ...' if len(shown) > 3 else ''}). "
                "Download the checkpoint named in the spec's comments (Hara et al.'s Kinetics "
                "checkpoints for the 3D ResNets) and put it there; the harness never downloads."
            )
    return missing


def _missing_data(spec: Spec) -> list[str]:
    section, missing = spec.dataset, []
    given = (section.split_dir, section.annotations, section.split_file)
    paths = [section.root] + [p for p in given if p]
    absent = [p for p in paths if not Path(p).exists()]
    if absent:
        command = f"harness data check {section.name} --root {section.root}"
        command += f" --split-dir {section.split_dir}" if section.split_dir else ""
        command += f" --split-file {section.split_file}" if section.split_file else ""
        missing.append(
            f"dataset {section.name}: {', '.join(repr(p) for p in absent)} not found. Put the "
            f"{FORMATS.get(section.name).description} there (or change dataset.root / "
            f"dataset.split_dir), then check every split entry decodes with `{command}`. "
            f"Optionally decode once to JPEG frames for faster loading: `harness data prepare "
            f"{section.name} --root {section.root} --out <frames folder>`."
        )
    if section.layout == "cache" and not absent:
        missing += _missing_cache(spec)
    needs_flow = any(t.stream == "flow" for t in spec.trials)
    if needs_flow and not (section.flow_root and Path(section.flow_root).exists()):
        missing.append(
            f"optical flow: dataset.flow_root {section.flow_root!r} not found; flow-stream "
            f"trials need TSN-style flow images: `harness data flow {section.name} --root "
            f"{section.root} --out {section.flow_root or '<flow folder>'}` (TV-L1)."
        )
    return missing


def _missing_cache(spec: Spec) -> list[str]:
    """`dataset.layout: cache` without a cache for a split: the command that builds it."""
    missing = []
    for split in dict.fromkeys(t.split for t in spec.trials):
        config = dataset_config(spec, split)
        folder = cache_folder(spec, config)
        if not (folder / INDEX_FILE).is_file():
            command = cache_command(config, spec.dataset.short_side, folder)
            missing.append(f"clip cache: {str(folder)!r} holds none (dataset.layout: cache); "
                           f"build it with `{command}`.")  # fmt: skip
    return missing


def _unreadable(path: str, absent: str = "does not exist") -> str | None:
    """Why no checkpoint file is at `path` (`absent`, or "is a folder"), or None."""
    if Path(path).is_file():
        return None
    return "is a folder, not a checkpoint file" if Path(path).is_dir() else absent


def _pretrained_users(spec: Spec) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for trial in spec.trials:
        path = spec.train_for(trial).pretrained
        if path:
            users.setdefault(path, []).append(f"{trial.backbone} f{trial.frames}")
    return users


def preflight(spec: Spec, *, generate: bool = True) -> None:
    """Structural problems found before anything trains: a missing pretrained checkpoint, a
    missing root, split files or split entries, a missing or stale clip cache, a class count
    that does not match the data. A synthetic preset not generated yet is generated, unless
    `generate` is False (a dry run): then only its class count is checked."""
    for pretrained in dict.fromkeys(spec.train_for(t).pretrained for t in spec.trials):
        problem = _unreadable(pretrained) if pretrained else None
        if problem:
            raise SpecError(
                f"{spec.path}: key 'train.pretrained': checkpoint {pretrained!r} {problem}. "
                "Give the path of a downloaded file (e.g. resnet-50-kinetics.pth); the harness "
                "never downloads weights."
            )
    check_models(spec)
    check_augmentation(spec)
    preset = synthetic_preset(spec.dataset.root)
    if not generate and preset in PRESETS and not generated(preset):
        _check_classes(spec, f"the synthetic {preset} preset", PRESETS[preset].classes)
        print(f"note: the synthetic {preset} dataset is generated on the first run, not by a "
              "dry run.", file=sys.stderr)  # fmt: skip
        return
    for split in dict.fromkeys(t.split for t in spec.trials):
        config = dataset_config(spec, split)
        try:
            lists, train, test = open_dataset(config)
            require_present(config, train + test)
        except DataError as error:
            raise _in_spec_terms(spec, error) from None
        if spec.dataset.layout == "cache" and synthetic_preset(spec.dataset.root) is None:
            _check_cache(spec, config, train + test)
        _check_classes(spec, f"dataset {spec.dataset.name} split {split}", len(lists.classes))


def _check_classes(spec: Spec, data: str, classes: int) -> None:
    wrong = sorted({t.num_classes for t in spec.trials} - {classes})
    if wrong:
        raise SpecError(f"{spec.path}: key 'model.num_classes': {wrong[0]} does not match "
                        f"{data}, which has {classes} classes.")  # fmt: skip


def _in_spec_terms(spec: Spec, error: DataError) -> SpecError:
    """A data error as a spec's user reads it: the spec file named, and the flags of the
    `harness data` commands it mentions told as the spec's keys."""
    text = str(error)
    for flag, key in FLAG_KEYS.items():
        text = text.replace(flag, key)
    return SpecError(f"{spec.path}: dataset {spec.dataset.name}: {text}")


def check_models(spec: Spec) -> None:
    """Each `train.pretrained` file is a tensor checkpoint that fits every model that loads it,
    and each `train.trainable` selects a parameter of its models. Checked on models built on
    the meta device (shapes, no memory), so a wrong file or a misspelt layer is one error
    before anything trains, not the failure of every trial."""
    sources: dict[str, dict[str, torch.Tensor]] = {}  # each file read once
    checked = set()
    for trial in spec.trials:
        train = spec.train_for(trial)
        model = (trial.backbone, trial.attention, trial.placement, trial.num_classes,
                 trial.options, train.pretrained, str(train.trainable))  # fmt: skip
        if model in checked or (not train.pretrained and train.trainable == "all"):
            continue
        checked.add(model)
        try:
            _check_model(trial, train, sources)
        except ConfigError as error:
            key = "train.pretrained" if train.pretrained else "train.trainable"
            raise SpecError(f"{spec.path}: key '{key}', trial {trial.key}: {error}") from None


def _check_model(trial: Trial, train: TrainSection, sources: dict) -> None:
    resolved = trial.resolve()
    with torch.device("meta"):
        model = resolved.build()
    if train.pretrained:
        if train.pretrained not in sources:
            sources[train.pretrained] = read_state_dict(train.pretrained)
        fitted_state(model, sources[train.pretrained], train.pretrained,
                     classifier=resolved.backbone.classifier,
                     first_conv=resolved.backbone.first_conv)  # fmt: skip
    set_trainable(model, train.trainable)


def _check_cache(spec: Spec, config, entries) -> None:
    """`dataset.layout: cache`: the cache exists at the spec's short side and no video changed
    since it was cached (sizes and times only; frame counts are checked when a trial opens
    it, against the frame index)."""
    open_cache(cache_folder(spec, config), config, entries, {}, spec.dataset.short_side)
