"""A trial's data: from (spec, trial) to its training and test sets.

3D backbones read clips (`TrainClips`, `EvalClips`: the spec's clip protocol); 2D backbones read
TSN segments (`TSNSegments`), of RGB frames or, for a flow stream (`in_channels` other than 3), of
stacked optical flow. The data package itself knows nothing of specs; this is the one step that
reads a spec's `dataset` and `eval` sections for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from harness.config import Spec, SpecError, Trial
from harness.data.clips import (
    PREFETCH_BATCHES,
    ClipProtocol,
    EvalClips,
    FrameReader,
    TrainClips,
    TSNSegments,
)
from harness.data.datasets import DatasetConfig, Entry, FrameIndex, open_dataset
from harness.data.prepare import synthetic_flow
from harness.data.splits import DataError
from harness.data.synthetic import materialise, synthetic_preset
from harness.device import cores_per_process

MAX_GPU_LOADER_WORKERS = 16
CPU_LOADER_WORKERS = 2  # on a CPU the training threads need the cores too


@dataclass
class TrialData:
    """What one trial trains and is evaluated on."""

    classes: list[str]
    train_set: Dataset
    eval_set: Dataset
    test_entries: list[Entry]  # the eval set's videos, in index order
    unreadable: dict[str, str] = field(default_factory=dict)  # video → why no frame decodes
    videos: int = 0  # train + test videos listed


def dataset_config(spec: Spec, split: int) -> DatasetConfig:
    """The spec's dataset for one split; a `synthetic:<preset>` root is generated on first use."""
    section = spec.dataset
    root, split_dir = Path(section.root), section.split_dir
    preset = synthetic_preset(section.root)
    if preset is not None:
        try:
            root, split_dir = materialise(preset)
        except DataError as error:
            raise SpecError(f"{spec.path}: key 'dataset.root': {error}") from None
    return DatasetConfig(
        name=section.name, root=root, split=split,
        split_dir=Path(split_dir) if split_dir else None,
        annotations=Path(section.annotations) if section.annotations else None,
        split_file=Path(section.split_file) if section.split_file else None,
    )  # fmt: skip


def trial_data(spec: Spec, trial: Trial) -> TrialData:
    """Training and test sets: clips for 3D backbones, TSN segments for 2D ones."""
    config = dataset_config(spec, trial.split)
    section = spec.dataset
    lists, train, test = open_dataset(config)
    if section.subset:
        train, test = per_class(train, section.subset), per_class(test, section.subset)
    index = FrameIndex(config.root)
    reader = FrameReader(config.root, index.lookup(train + test))
    if trial.resolve().backbone.dims == 2:
        train_set, eval_set = _segments(spec, trial, config, reader, train, test)
    else:
        normalisation = spec.train_for(trial).normalisation or section.normalisation
        protocol = ClipProtocol(
            frames=trial.frames, size=trial.size, normalisation=normalisation,
            crop=section.crop, eval_clips=spec.eval.clips, even_count=spec.eval.count,
        )  # fmt: skip
        train_set = TrainClips(reader, train, protocol, seed=trial.seed)
        eval_set = EvalClips(reader, test, protocol)
    return TrialData(lists.classes, train_set, eval_set, test, index.unreadable,
                     len(train) + len(test))  # fmt: skip


def _segments(spec, trial, config, reader, train, test) -> tuple[Dataset, Dataset]:
    """TSN segments of RGB frames, or of `in_channels / 2` stacked x/y flow frames."""
    flow_length = trial_flow_length(trial)
    common = {
        "modality": "flow" if flow_length else "rgb", "size": trial.size,
        "flow_root": flow_root(spec, config) if flow_length else None,
        "flow_length": flow_length or 1,
    }  # fmt: skip
    segments = spec.dataset.segments
    train_set = TSNSegments(reader, train, train=True, segments=segments, seed=trial.seed, **common)
    return train_set, TSNSegments(reader, test, train=False, segments=spec.eval.count, **common)


def per_class(entries: list[Entry], count: int) -> list[Entry]:
    """The first `count` entries of each class, in list order."""
    taken: dict[int, int] = {}
    kept = []
    for entry in entries:
        if taken.get(entry.label, 0) < count:
            taken[entry.label] = taken.get(entry.label, 0) + 1
            kept.append(entry)
    return kept


def trial_flow_length(trial: Trial) -> int:
    """Frames of flow stacked into a 2D model's input: 0 for RGB (3 channels), else channels/2."""
    channels = dict(trial.options).get("in_channels", 3)
    return 0 if channels == 3 else channels // 2


def flow_root(spec: Spec, config: DatasetConfig) -> Path:
    """Where a flow stream reads its flow images: the spec's `dataset.flow_root`, or the cache
    of a synthetic dataset (computed on first use)."""
    if synthetic_preset(spec.dataset.root) is not None:
        return synthetic_flow(config)
    if spec.dataset.flow_root is None:
        raise SpecError(
            f"{spec.path}: key 'dataset.flow_root' is missing: flow-stream trials (in_channels "
            "!= 3) read TSN-style flow images. Compute them with `harness data flow` and give "
            "their folder."
        )
    return Path(spec.dataset.flow_root)


def loader_workers(requested: int | None, device: torch.device) -> int:
    """`dataset.workers`, or when unset: for a GPU, this process's share of the cores less one
    for the training loop (at most 16), since decoding, not the GPU, is the bottleneck there;
    on the CPU at most 2."""
    if requested is not None:
        return requested
    cores = cores_per_process()
    if device.type == "cuda":
        return max(1, min(cores - 1, MAX_GPU_LOADER_WORKERS))
    return min(CPU_LOADER_WORKERS, cores)


def loader_params(workers: int, device: torch.device) -> dict[str, int | bool]:
    """How a trial's loaders are set up, as its run logs them (see `make_loader`)."""
    return {
        "loader.workers": workers,
        "loader.pin_memory": device.type == "cuda",
        "loader.persistent_workers": workers > 0,
        "loader.prefetch_factor": PREFETCH_BATCHES if workers > 0 else 0,
    }
