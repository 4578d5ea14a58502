"""Training batches cut from the clip cache, augmented on the device: the GPU's data path.

`ClipBatches` replaces the DataLoader when a trial reads a clip cache and augments on the
device. For each clip it draws what `TrainClips` would draw (`TrainClips.plan`: the window, the
crop box, the flip, from the same per-clip generator), then copies only the box of the window's
frames out of the memory map, straight into one pinned `(N, T, H, W, 3)` uint8 batch: no decode,
no resize, no float conversion on the host. Threads fill several batches ahead (NumPy releases
the GIL while it copies). `DeviceAugmented` then moves each batch to the device and resizes,
flips and normalises it there (`device_transforms.augment`), which equals the CPU path clip for
clip; on a GPU it does so on a side stream, one batch ahead of the training step. The epoch
order is `EpochShuffle`'s, so a resumed or DDP run sees the order it would see through the
DataLoader.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

from harness.data.cache import CacheReader
from harness.data.clips import EpochShuffle, TrainClips
from harness.data.device_transforms import augment

DEVICE_CROPS = ("multiscale_corner", "random_resized")  # one box resized: what the device does
BATCHES_AHEAD_PER_THREAD = 2


class ClipBatches:
    """Host batches of uncropped-then-boxed windows: `frames` (N, T, Hc, Wc, 3) uint8 (each clip
    its box at the top left of the canvas), `boxes` (N, 4) in canvas coordinates, `flips`,
    `label`, `index` and `failed` (always empty: a cache read does not fail)."""

    def __init__(self, train_set: TrainClips, *, batch_size: int, seed: int, threads: int,
                 pin: bool, rank: int = 0, world: int = 1,
                 epochs: int | None = None) -> None:  # fmt: skip
        if not isinstance(train_set.reader, CacheReader):
            raise TypeError("ClipBatches slices a clip cache: give TrainClips a CacheReader")
        if train_set.protocol.crop not in DEVICE_CROPS:
            raise ValueError(f"crop {train_set.protocol.crop!r} is not done on the device")
        self.train_set, self.batch_size = train_set, batch_size
        self.threads, self.pin = max(threads, 1), pin
        self.sampler = EpochShuffle(len(train_set), seed, rank, world)
        self.epochs = epochs  # the loop's epochs, when known: none is started after the last
        self._pool: ThreadPoolExecutor | None = None
        self._started: dict[int, deque[Future]] = {}  # epoch → its first batches, under way

    def __len__(self) -> int:
        items = len(self.sampler)
        return items // self.batch_size if self._drop_last else -(-items // self.batch_size)

    @property
    def _drop_last(self) -> bool:  # as `make_loader`: no last batch of one sample in training
        return len(self.sampler) > self.batch_size

    def __iter__(self) -> Iterator[dict]:
        """This epoch's batches, `threads` × `BATCHES_AHEAD_PER_THREAD` in flight; while the
        last ones are taken, the next epoch's first batches are started, so an epoch does not
        open on an empty queue (they are dropped if the loop asks for another epoch; none are
        started after epoch `epochs` − 1, the last)."""
        epoch, pool = self.sampler.epoch, self._threads()
        pending = self._started.pop(epoch, deque())
        self._cancel_started()
        chunks = self._chunks(epoch)
        ahead = self.threads * BATCHES_AHEAD_PER_THREAD
        for chunk in chunks[len(pending) :]:
            pending.append(pool.submit(self.batch, chunk))
            if len(pending) > ahead:
                yield pending.popleft().result()
        last = self.epochs is not None and epoch + 1 >= self.epochs
        following = iter([] if last else self._chunks(epoch + 1)[:ahead])
        started = self._started.setdefault(epoch + 1, deque())
        while pending:
            chunk = next(following, None)
            if chunk is not None:
                started.append(pool.submit(self.batch, chunk))
            yield pending.popleft().result()

    def _chunks(self, epoch: int) -> list[list[int]]:
        """Epoch `epoch`'s items in batches, as `make_loader` cuts them."""
        order = copy.copy(self.sampler)  # the loop's sampler keeps its own epoch
        order.set_epoch(epoch)
        items = list(order)
        chunks = [items[i : i + self.batch_size] for i in range(0, len(items), self.batch_size)]
        return chunks[: len(self)]

    def _threads(self) -> ThreadPoolExecutor:
        """The slicing threads, kept across epochs (as the DataLoader's persistent workers)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="clip-batches")
        return self._pool

    def _cancel_started(self) -> None:
        for futures in self._started.values():
            for future in futures:
                future.cancel()
        self._started.clear()

    def close(self) -> None:
        """Stop the threads now (they also stop when this object is collected)."""
        self._cancel_started()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def batch(self, items: list[int]) -> dict:
        """One batch: every clip's plan drawn, then its box copied out of the map."""
        reader, train_set = self.train_set.reader, self.train_set
        plans = []
        for item in items:
            entry_shape = reader.frame_shape(train_set.entries[item % len(train_set.entries)])
            plans.append(train_set.plan(item, entry_shape))
        canvas = (max(p[2].box[2] for p in plans), max(p[2].box[3] for p in plans))
        shape = (len(plans), train_set.protocol.frames, *canvas, 3)
        frames = torch.empty(shape, dtype=torch.uint8, pin_memory=self.pin)
        buffer = frames.numpy()
        for slot, (position, window, augmentation) in enumerate(plans):
            video = reader.cache.video(train_set.entries[position].found)
            _copy_box(buffer[slot], video, window, augmentation.box)
        entries = [train_set.entries[p[0]] for p in plans]
        return {
            "frames": frames,
            "boxes": torch.tensor([(0, 0, *p[2].box[2:]) for p in plans]),
            "flips": torch.tensor([p[2].flip for p in plans]),
            "label": torch.tensor([e.label for e in entries]),
            "index": torch.tensor([p[0] for p in plans]),
            "failed": [""] * len(plans),
        }


def _copy_box(out: np.ndarray, video: np.ndarray, window: list[int], box) -> None:
    """`video[window]`'s `box` into the top left of `out` (T, Hc, Wc, 3), one slice per run of
    consecutive frames (a loop-padded window has several)."""
    top, left, height, width = box
    start = 0
    while start < len(window):
        stop = start + 1
        while stop < len(window) and window[stop] == window[stop - 1] + 1:
            stop += 1
        first = window[start]
        region = video[first : first + stop - start, top : top + height, left : left + width]
        out[start:stop, :height, :width] = region
        start = stop


class DeviceAugmented:
    """`ClipBatches` as the training loop reads them: `clip` augmented on `device`.

    On a GPU, each batch is copied and augmented on a side stream one batch ahead: while the
    training stream runs step k, the side stream prepares batch k + 1, so the step never queues
    behind the copy and the augmentation kernels (the data wait `harness bench train --cache`
    measures). The batches and their order are the same either way."""

    def __init__(self, batches: ClipBatches, device: torch.device) -> None:
        self.batches, self.device = batches, device
        self.sampler = batches.sampler  # the loop calls `loader.sampler.set_epoch`

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[dict]:
        if self.device.type != "cuda":
            yield from map(self._augmented, self.batches)
            return
        side, ahead = torch.cuda.Stream(self.device), None
        for batch in self.batches:
            with torch.cuda.stream(side):
                prepared = self._augmented(batch)
                ready = side.record_event()
            if ahead is not None:
                yield _handed_over(*ahead)
            ahead = (prepared, ready)
        if ahead is not None:
            yield _handed_over(*ahead)

    def _augmented(self, batch: dict) -> dict:
        protocol = self.batches.train_set.protocol
        clip = augment(batch, size=protocol.size, normalisation=protocol.normalisation,
                       device=self.device)  # fmt: skip
        return {"clip": clip, "label": batch["label"], "index": batch["index"],
                "failed": batch["failed"]}  # fmt: skip


def _handed_over(batch: dict, ready: torch.cuda.Event) -> dict:
    """A batch prepared on a side stream, made safe on the current one: the current stream waits
    for the preparation to finish, and the clip's memory is not handed out again before the
    current stream's work that reads it is done."""
    current = torch.cuda.current_stream(batch["clip"].device)
    current.wait_event(ready)
    batch["clip"].record_stream(current)
    return batch
