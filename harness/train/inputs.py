"""A trial's data: from (spec, trial) to its training and test sets.

3D backbones read clips (`TrainClips`, `EvalClips`: the spec's clip protocol); 2D backbones read
TSN segments (`TSNSegments`), of RGB frames or, for a flow stream (`in_channels` other than 3), of
stacked optical flow. The data package itself knows nothing of specs; this is the one step that
reads a spec's `dataset` and `eval` sections for it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset

from harness.config import Spec, SpecError, Trial
from harness.data.batches import DEVICE_CROPS, ClipBatches, DeviceAugmented
from harness.data.cache import (
    DEFAULT_SHORT_SIDE,
    INDEX_FILE,
    CacheReader,
    build_cache,
    cache_command,
    default_folder,
    open_cache,
)
from harness.data.clips import (
    PREFETCH_BATCHES,
    ClipProtocol,
    EvalClips,
    FrameReader,
    TrainClips,
    TSNSegments,
    make_loader,
)
from harness.data.datasets import DatasetConfig, Entry, FrameIndex, open_dataset
from harness.data.prepare import synthetic_flow
from harness.data.splits import DataError
from harness.data.synthetic import materialise, synthetic_preset
from harness.data.video import VideoIndex
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
    reader = clip_reader(spec, config, train + test, index.lookup(train + test))
    unreadable = index.unreadable  # no frame decodes, or (from a cache) none was cached
    if isinstance(reader, CacheReader):
        unreadable = unreadable | reader.cache.unreadable(train + test)
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
    return TrialData(lists.classes, train_set, eval_set, test, unreadable,
                     len(train) + len(test))  # fmt: skip


def clip_reader(spec: Spec, config: DatasetConfig, entries: list[Entry],
                indexes: dict[str, VideoIndex]) -> FrameReader | CacheReader:  # fmt: skip
    """Where frames come from: the decoded-clip cache (`dataset.layout: cache`, checked against
    the videos; a synthetic dataset's is built on first use), or the files, decoded and, with
    `dataset.short_side`, resized as the cache stores them."""
    section = spec.dataset
    if section.layout == "files":
        advise_cache(spec, config, entries, indexes)
        return FrameReader(config.root, indexes, short_side=section.short_side)
    folder = cache_folder(spec, config)
    if synthetic_preset(section.root) is not None and not (folder / INDEX_FILE).is_file():
        print(f"caching the decoded synthetic dataset into {folder} (first use)")
        build_cache(config, folder, short_side=section.short_side)
    return CacheReader(open_cache(folder, config, entries, indexes, section.short_side))


def cache_folder(spec: Spec, config: DatasetConfig) -> Path:
    """Where the spec's clip cache is: `dataset.cache`, else `harness data cache`'s default."""
    section = spec.dataset
    return Path(section.cache) if section.cache else default_folder(config, section.short_side)


_ADVISED: set[Path] = set()  # roots whose cache advice this process has printed


def advise_cache(spec: Spec, config: DatasetConfig, entries: list[Entry],
                 indexes: dict[str, VideoIndex]) -> None:  # fmt: skip
    """Say once per root when the split's videos, decoded, would fit in memory as a clip cache
    and the spec decodes them at every epoch instead (not for synthetic datasets)."""
    videos = [e for e in entries if e.kind == "video"]
    if not videos or config.root in _ADVISED or synthetic_preset(spec.dataset.root) is not None:
        return
    _ADVISED.add(config.root)
    side = spec.dataset.short_side or DEFAULT_SHORT_SIDE
    folder = Path(spec.dataset.cache) if spec.dataset.cache else default_folder(config, side)
    frames = sum(indexes[e.found].frames for e in videos if e.found in indexes)
    size = frames * side * round(side * 4 / 3) * 3  # 4:3 frames, as UCF101's and HMDB-51's
    memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    if (folder / INDEX_FILE).is_file():
        print(f"note: a clip cache of {config.root} exists at {folder}; dataset.layout: cache "
              f"(dataset.short_side: {side}) reads clips from it without decoding.",
              file=sys.stderr)  # fmt: skip
    elif size < memory / 2:
        print(
            f"note: the {len(videos)} videos of {config.name} split {config.split} decoded at "
            f"short side {side} would take about {size / 1e9:.1f} GB, which fits in this "
            f"machine's memory ({memory / 1e9:.0f} GB). Training reads clips from such a cache "
            f"without decoding: build it with `{cache_command(config, side, folder)}`, then set "
            f"dataset.layout: cache and dataset.short_side: {side}"
            + (
                ". A short side is part of a run's configuration: finished runs without one "
                "would train again; `--short-side native` keeps the frames as they are."
                if spec.dataset.short_side is None
                else "."
            ),
            file=sys.stderr,
        )


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


def check_augmentation(spec: Spec) -> None:
    """`dataset.augment_on: device` asks for what only 3D trials reading the clip cache with a
    one-box crop can do: a `SpecError` naming what is missing, before anything trains."""
    section = spec.dataset
    if section.augment_on != "device":
        return
    two_d = sorted({t.backbone for t in spec.trials if t.resolve().backbone.dims == 2})
    missing = [
        text for broken, text in (
            (section.layout != "cache", f"dataset.layout: cache (it is {section.layout!r})"),
            (section.crop not in DEVICE_CROPS, f"dataset.crop one of {', '.join(DEVICE_CROPS)} "
                                               f"(it is {section.crop!r})"),
            (bool(two_d), f"3D backbones only (TSN segments of {', '.join(two_d)} stay on the "
                          "host)"),
        ) if broken
    ]  # fmt: skip
    if missing:
        raise SpecError(
            f"{spec.path}: key 'dataset.augment_on' is 'device', which needs "
            f"{'; '.join(missing)}. Fix those, or set dataset.augment_on: auto (the device when "
            "it can) or host."
        )


def augments_on_device(spec: Spec, data: TrialData, device: torch.device) -> bool:
    """Whether the trial's training clips are cropped, flipped and normalised on the device:
    `dataset.augment_on: device`, or `auto` on a GPU, when the clips come from a clip cache
    with a crop the device does (one box resized); `host` never."""
    train_set, choice = data.train_set, spec.dataset.augment_on
    possible = (
        isinstance(train_set, TrainClips) and isinstance(train_set.reader, CacheReader)
        and train_set.protocol.crop in DEVICE_CROPS
    )  # fmt: skip
    if choice == "device" and not possible:
        check_augmentation(spec)  # names what is missing (preflight has said it already)
        raise SpecError(f"{spec.path}: key 'dataset.augment_on' is 'device': not possible here")
    return possible and (choice == "device" or (choice == "auto" and device.type == "cuda"))


def train_loader(data: TrialData, *, on_device: bool, batch_size: int, workers: int, seed: int,
                 device: torch.device, rank: int = 0, world: int = 1,
                 epochs: int | None = None) -> DataLoader | DeviceAugmented:  # fmt: skip
    """The training batches: sliced from the cache and augmented on `device` (`on_device`), or
    made by `workers` DataLoader processes. Either way `loader.sampler.set_epoch` orders them;
    `epochs`, the loop's, stops the slicing threads from starting batches past the last."""
    if not on_device:
        return make_loader(data.train_set, batch_size=batch_size, workers=workers, shuffle=True,
                           seed=seed, rank=rank, world=world)  # fmt: skip
    batches = ClipBatches(data.train_set, batch_size=batch_size, seed=seed, threads=workers,
                          pin=device.type == "cuda", rank=rank, world=world,
                          epochs=epochs)  # fmt: skip
    return DeviceAugmented(batches, device)


def loader_params(workers: int, device: torch.device, *, on_device: bool = False,
                  layout: str = "files") -> dict[str, int | bool | str]:  # fmt: skip
    """How a trial's loaders are set up, as its run logs them (see `make_loader`; with the
    augmentation on the device, `workers` are the threads that slice the cache)."""
    return {
        "loader.workers": max(workers, 1) if on_device else workers,  # threads: at least one
        "loader.pin_memory": device.type == "cuda",
        "loader.persistent_workers": workers > 0 and not on_device,
        "loader.prefetch_factor": PREFETCH_BATCHES if workers > 0 and not on_device else 0,
        "loader.layout": layout,
        "loader.augment_on": "device" if on_device else "host",
        "transform.resize": "INTER_LINEAR_EXACT",  # since the cache; before: INTER_LINEAR
    }
