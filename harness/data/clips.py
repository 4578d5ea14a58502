"""Torch datasets over resolved split entries: training clips, evaluation clips, TSN segments.

A broken clip file does not end a run: a training clip that fails to decode is replaced by
another sample and reported (`failed` in the batch, so the count and the list reach the run's
results), and an evaluation clip that fails is marked unscored (`ok = 0`), so the evaluation names
exactly the videos it could not score instead of dropping them silently. TSN segments (2D
backbones) have no such guard yet: a frame or flow image that cannot be read fails the trial.
"""

from __future__ import annotations

import multiprocessing
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from harness.data.datasets import Entry
from harness.data.frames import read_flow_stack, read_rgb_frames, rgb_frame_files
from harness.data.splits import DataError
from harness.data.transforms import (
    Augmentation,
    SpatialTransform,
    even_clips,
    random_window,
    sliding_clips,
    store_resize,
    to_tensor,
    tsn_segments,
)
from harness.data.video import VideoIndex, read_frames

PREFETCH_BATCHES = 4  # batches each loader worker prepares ahead
READ_ERRORS = (RuntimeError, OSError, ValueError, IndexError)  # av errors are OSError/ValueError


@dataclass(frozen=True)
class ClipProtocol:
    """How clips are cut and transformed (defaults: the EAM paper's protocol)."""

    frames: int = 16
    size: int = 112
    normalisation: str = "activitynet"
    crop: str = "multiscale_corner"
    eval_clips: str = "sliding"  # or "even"
    even_count: int = 10


class FrameReader:
    """Reads decode-order frames of an entry, from a video file or a JPEG frame folder; with a
    `short_side`, resized as the clip cache stores them (`store_resize`), so this path and
    the cache's give the same pixels."""

    def __init__(
        self, root: Path, indexes: dict[str, VideoIndex], short_side: int | None = None
    ) -> None:
        self.root = root
        self.indexes = indexes
        self.short_side = short_side
        self._frame_files: dict[str, list[Path]] = {}  # listed once per folder and process

    def frame_count(self, entry: Entry) -> int:
        index = self.indexes.get(entry.found or "")
        return index.frames if index else 0

    def read(self, entry: Entry, indices: list[int]) -> np.ndarray:
        path = self.root / entry.found
        if entry.kind == "frames":
            if entry.found not in self._frame_files:
                self._frame_files[entry.found] = rgb_frame_files(path)
            frames = read_rgb_frames(self._frame_files[entry.found], indices)
        else:
            frames = read_frames(path, indices, self.indexes.get(entry.found))
        return frames if self.short_side is None else store_resize(frames, self.short_side)


class TrainClips(Dataset):
    """Random clips for training; failed samples are replaced and reported."""

    def __init__(
        self, reader: FrameReader, entries: list[Entry], protocol: ClipProtocol, seed: int = 0
    ) -> None:
        self.reader = reader
        self.entries = [e for e in entries if reader.frame_count(e) > 0]
        self.skipped = [e.relative for e in entries if reader.frame_count(e) == 0]
        self.protocol = protocol
        self.transform = SpatialTransform(protocol.size, train=True, crop=protocol.crop)
        self.seed = seed

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, item: int) -> dict:
        """`item` = epoch · len + index (see `EpochShuffle`): a clip depends on (seed, epoch,
        index) only, the same whichever worker draws it, and after a resume."""
        epoch, index = divmod(item, len(self.entries))
        failed = ""
        for attempt in range(len(self.entries)):
            position = (index + attempt * 7919) % len(self.entries)
            rng = np.random.default_rng([self.seed, epoch, position, attempt])
            entry = self.entries[position]
            try:
                clip = self._clip(entry, rng)
                return {"clip": clip, "label": entry.label, "index": position, "failed": failed}
            except READ_ERRORS:
                failed = failed or entry.relative
        raise DataError(
            f"no training video could be decoded: tried all {len(self.entries)}, the first "
            f"being {failed!r}. Check them with `harness data check`."
        )

    def _clip(self, entry: Entry, rng: np.random.Generator) -> torch.Tensor:
        window = random_window(self.reader.frame_count(entry), self.protocol.frames, rng)
        frames = self.reader.read(entry, window)
        return to_tensor(self.transform(frames, rng), self.protocol.normalisation)

    def plan(self, item: int, frame_shape: tuple[int, int]) -> tuple[int, list[int], Augmentation]:
        """What `self[item]` draws for a video whose frames are `frame_shape` (known without
        decoding, from a clip cache): its position, frame window and crop box and flip, from the
        same generator in the same order. A cache read does not fail, so no replacement."""
        epoch, position = divmod(item, len(self.entries))
        rng = np.random.default_rng([self.seed, epoch, position, 0])
        count = self.reader.frame_count(self.entries[position])
        window = random_window(count, self.protocol.frames, rng)
        return position, window, self.transform.sample(*frame_shape, rng)


class EvalClips(Dataset):
    """Every clip of every test video (`sliding` or `even` clips, centre crop).

    A video that gives no `sliding` clip (0 or 1 frames: 3D-ResNets-PyTorch makes no test sample
    of it, see `sliding_clips`) still gets one item, marked unscored, so that it is named
    rather than dropped silently; like the reference, it counts in no accuracy.
    """

    def __init__(self, reader: FrameReader, entries: list[Entry], protocol: ClipProtocol) -> None:
        self.reader = reader
        self.entries = entries
        self.protocol = protocol
        self.transform = SpatialTransform(protocol.size, train=False)
        self.items: list[tuple[int, list[int]]] = []
        for video, entry in enumerate(entries):
            count = reader.frame_count(entry)
            if protocol.eval_clips == "even":
                clips = even_clips(max(count, 1), protocol.frames, protocol.even_count)
            else:
                clips = sliding_clips(count, protocol.frames) or [[]]  # [] reads as unscored
            self.items += [(video, clip) for clip in clips]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        video, window = self.items[index]
        entry = self.entries[video]
        rng = np.random.default_rng(0)
        try:
            if self.reader.frame_count(entry) == 0 or not window:
                raise OSError("no decodable frames, or too few for a test clip")
            frames = self.transform(self.reader.read(entry, window), rng)
            clip, ok = to_tensor(frames, self.protocol.normalisation), 1
        except READ_ERRORS:
            shape = (3, self.protocol.frames, self.protocol.size, self.protocol.size)
            clip, ok = torch.zeros(shape), 0
        return {"clip": clip, "label": entry.label, "video": video, "ok": ok}


class TSNSegments(Dataset):
    """TSN input for 2D models: `segments` RGB frames or 10-frame flow stacks per video.

    Returns `(segments, C, H, W)`: C = 3 for RGB, 2·`flow_length` for flow (x, y interleaved).
    Flow is read from TSN-style `flow_x_%05d.jpg` / `flow_y_%05d.jpg` in `flow_root`; in training
    a flipped flow stack has its x-flow inverted, as TSN's `GroupRandomHorizontalFlip(is_flow=True)`
    (the transform is built with `modality`, see `flip_horizontal`).
    """

    def __init__(
        self,
        reader: FrameReader,
        entries: list[Entry],
        *,
        modality: str,
        train: bool,
        size: int = 224,
        segments: int = 3,
        flow_root: Path | None = None,
        flow_length: int = 10,
        seed: int = 0,
    ) -> None:
        if train:  # as TrainClips: a video with no readable frame cannot give a segment
            entries = [e for e in entries if reader.frame_count(e) > 0]
        self.reader, self.entries, self.modality, self.train = reader, entries, modality, train
        self.segments, self.flow_root, self.flow_length, self.seed = (
            segments,
            flow_root,
            flow_length,
            seed,
        )
        self.transform = SpatialTransform(
            size, train=train, crop="multiscale_corner", modality=modality
        )
        self.normalisation = "flow" if modality == "flow" else "imagenet"

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, item: int) -> dict:
        epoch, index = divmod(item, len(self.entries))  # EpochShuffle passes epoch·n + index
        entry = self.entries[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        length = self.flow_length if self.modality == "flow" else 1
        frames = self.reader.frame_count(entry) - (self.modality == "flow")  # n frames, n−1 flows
        starts = tsn_segments(frames, self.segments, length, rng if self.train else None)
        if self.modality == "flow":
            folder = self.flow_root / Path(entry.found).with_suffix("")
            stacks = [read_flow_stack(folder, s, length).transpose(1, 2, 0) for s in starts]
            images = np.stack(stacks)  # (segments, H, W, 2·length)
        else:
            images = self.reader.read(entry, starts)  # (segments, H, W, 3)
        images = self.transform(images, rng)  # one crop for all segments
        tensor = to_tensor(images, self.normalisation).permute(1, 0, 2, 3)  # (S, C, H, W)
        return {"clip": tensor, "label": entry.label, "video": index, "ok": 1,
                "segments": self.segments}  # fmt: skip


class EpochShuffle(Sampler[int]):
    """A permutation drawn from (seed, epoch) alone, yielding `epoch · n + index`.

    Persistent workers hold their own copy of the dataset, so the epoch travels inside the index;
    and because nothing depends on earlier epochs, a resumed run sees the same order. Under DDP
    each of `world` ranks takes every world-th index of the same permutation (padded by wrapping
    so every rank gets as many).
    """

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.size, self.seed, self.epoch = size, seed, 0
        self.rank, self.world = rank, world

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.world)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.size, generator=generator).tolist()
        order += order[: len(self) * self.world - self.size]  # pad to a multiple of world
        offset = self.epoch * self.size
        return iter(offset + index for index in order[self.rank :: self.world])


def make_loader(
    dataset: Dataset,
    *,
    batch_size: int,
    workers: int,
    shuffle: bool,
    seed: int = 0,
    rank: int = 0,
    world: int = 1,
) -> DataLoader:
    """A loader that scales with workers: persistent workers, pinned memory on GPU, prefetch,
    and single-threaded decoding and resizing inside each worker. With `shuffle`, call
    `loader.sampler.set_epoch(epoch)` before each epoch."""
    sampler = EpochShuffle(len(dataset), seed, rank, world) if shuffle else None
    if workers > 0:
        _before_forking()
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        # a last training batch of one sample breaks BatchNorm: drop the remainder in training
        drop_last=sampler is not None and len(sampler) > batch_size,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=torch.cuda.is_available(),
        prefetch_factor=PREFETCH_BATCHES if workers > 0 else None,
        worker_init_fn=_single_threaded_worker,
        # explicit: inside a `--jobs` worker (joblib's loky) the default context is loky's,
        # whose processes DataLoader cannot start
        multiprocessing_context=_worker_context() if workers > 0 else None,
    )


def _worker_context():
    """Fork on Linux (DataLoader's usual start method there), spawn elsewhere."""
    return multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")


def _before_forking() -> None:
    """OpenCV's thread pool does not survive a fork: a worker forked from a process whose pool
    ran (a resize large enough to be split across threads) deadlocks at its own first such
    resize (seen as `harness bench data --size 400` hanging). One thread here first."""
    import cv2

    cv2.setNumThreads(1)


def _single_threaded_worker(worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
