"""The decoded-clip cache and the device augmentation: the same pixels as decoding the videos and
augmenting on the host, bit for bit (the device ops are run on the CPU here), the protocol's
sampled crops, staleness, the CLI and a run that reads the cache."""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from harness.cli import main
from harness.config import SpecError, load_spec
from harness.data.batches import ClipBatches, DeviceAugmented
from harness.data.cache import CacheReader, ClipCache, build_cache, default_folder, open_cache
from harness.data.clips import (
    ClipProtocol,
    EpochShuffle,
    EvalClips,
    FrameReader,
    TrainClips,
    make_loader,
)
from harness.data.datasets import DatasetConfig, FrameIndex, open_dataset
from harness.data.device_transforms import augment, crop_resize, flip, normalise
from harness.data.splits import DataError
from harness.data.synthetic import (
    PRESETS,
    class_names,
    clip_name,
    encode_avi,
    render_clip,
    write_split_lists,
)
from harness.data.transforms import (
    CORNERS,
    HARA_SCALES,
    NORMALISATIONS,
    SpatialTransform,
    _resize,
    flip_horizontal,
    to_tensor,
)
from harness.train import inputs
from harness.train.inputs import TrialData, augments_on_device, clip_reader, dataset_config
from tests.conftest import FIXTURES_REASON, SHARED, requires_gpu
from tests.data_helpers import write_video

VIDEOS = SHARED / "fixtures" / "videos"
needs_fixtures = pytest.mark.skipif(not VIDEOS.is_dir(), reason=FIXTURES_REASON)
Z_999 = 3.2905  # two-sided 99.9 % normal quantile
SIDES = (64, None)  # the tiny videos' 64x48 frames scaled up to 85x64, and as decoded
TRAIN_CLIPS, TEST_CLIPS = ((8, 1), (8, 2)), ((1, 1),)  # (group, clip): split 1 trains on 8


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """Part of the synthetic tiny dataset, as `harness data synth` writes it: the official split
    lists, but only 2 training and 1 test video per class (15 of 250); and `split.txt`, the
    same 15 videos as a `folder` dataset."""
    out = tmp_path_factory.mktemp("tiny")
    preset = PRESETS["tiny"]
    classes = class_names(preset.classes)
    lines = []
    for label, name in enumerate(classes):
        for subset, clips in (("train", TRAIN_CLIPS), ("test", TEST_CLIPS)):
            for group, clip in clips:
                relative = f"{name}/{clip_name(name, group, clip)}"
                rng = np.random.default_rng([0, label, group, clip])  # as write_synthetic
                (out / "UCF-101" / name).mkdir(parents=True, exist_ok=True)
                encode_avi(out / "UCF-101" / relative, render_clip(name, preset, rng))
                lines.append(f"{relative} {subset}")
    write_split_lists(out / "ucfTrainTestlist", classes, preset.clips_per_group)
    (out / "split.txt").write_text("\n".join(lines) + "\n")
    return out


@pytest.fixture(scope="module")
def caches(tiny, tmp_path_factory) -> dict:
    """The 15 videos cached at each of SIDES (read only: tests that change a cache build their
    own)."""
    folders = {}
    with pytest.MonkeyPatch.context() as patch:  # conftest's private HARNESS_CACHE is per test
        patch.setenv("HARNESS_CACHE", str(tmp_path_factory.getbasetemp() / "harness-cache"))
        for side in SIDES:
            folder = tmp_path_factory.mktemp(f"cache-{side}")
            counts = build_cache(_config(tiny), folder, short_side=side, workers=2)
            assert (counts["decoded"], counts["failed"]) == (15, 0), counts
            folders[side] = folder
    return folders


def _config(tiny: Path) -> DatasetConfig:
    return DatasetConfig("folder", tiny / "UCF-101", split_file=tiny / "split.txt")


def _subset(tiny: Path):
    config = _config(tiny)
    _, train, test = open_dataset(config)
    assert (len(train), len(test)) == (10, 5)
    return config, train, test, FrameIndex(config.root).lookup(train + test)


def _small_dataset(tiny: Path, folder: Path, count: int):
    """A `folder` dataset of copies of `count` tiny videos (the last one a test video), so a
    test may change them."""
    _, train, _ = open_dataset(_config(tiny))
    root, lines = folder / "videos", []
    for i, entry in enumerate(train[:count]):
        (root / entry.found).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny / "UCF-101" / entry.found, root / entry.found)
        lines.append(f"{entry.found} {'test' if i == count - 1 else 'train'}")
    split = folder / "split.txt"
    split.write_text("\n".join(lines) + "\n")
    config = DatasetConfig("folder", root, split_file=split)
    _, train, test = open_dataset(config)
    return config, train + test


def _within_band(count: int, trials: int, p: float) -> bool:
    """`count` successes of `trials` inside the binomial's 99.9 % band around p."""
    return abs(count - trials * p) <= Z_999 * math.sqrt(trials * p * (1 - p))


# --- device ops ≡ CPU transforms ------------------------------------------------------------------


def test_crop_resize_is_opencv_linear_exact():
    rng = np.random.default_rng(0)
    cases = [  # (size, frame height, width, channels, special boxes)
        (16, 40, 50, 3, [(0, 0, 40, 50), (3, 5, 32, 32), (10, 7, 1, 1), (0, 3, 1, 40),
                         (4, 4, 9, 13), (2, 2, 16, 16), (39, 49, 1, 1)]),
        # (3, 5, 32, 32) is an exact 2x downscale: there OpenCV takes INTER_AREA's fast path,
        # which rounds ties to even above 4 channels, so `_resize` works in groups of 4
        (16, 40, 50, 20, [(3, 1, 32, 48), (10, 7, 1, 1), (4, 4, 9, 13), (0, 0, 40, 50),
                          (3, 5, 32, 32)]),
        (112, 128, 171, 3, [(0, 0, 128, 128), (19, 40, 90, 90), (0, 0, 64, 64)]),
    ]  # fmt: skip
    differs_from_linear = False
    for size, height, width, channels, special in cases:
        boxes = list(special)
        for _ in range(6):  # random boxes, up- and downscaled, not square
            h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
            boxes.append(
                (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
            )
        frames = rng.integers(0, 256, (len(boxes), 2, height, width, channels), dtype=np.uint8)
        got = crop_resize(torch.from_numpy(frames), boxes, size)
        assert got.shape == (len(boxes), 2, size, size, channels) and got.dtype == torch.uint8
        for n, (top, left, h, w) in enumerate(boxes):
            crop = frames[n][:, top : top + h, left : left + w]
            expected = _resize(crop, size, size)
            assert np.array_equal(got[n].numpy(), expected), (
                f"box {(top, left, h, w)} of {height}x{width}x{channels} resized to {size}: "
                f"{int((got[n].numpy() != expected).sum())} pixels differ from INTER_LINEAR_EXACT"
            )
            if channels == 3 and (h, w) != (size, size):
                linear = np.stack(
                    [cv2.resize(f, (size, size), interpolation=cv2.INTER_LINEAR) for f in crop]
                )
                differs_from_linear |= not np.array_equal(linear, expected)
    assert differs_from_linear, "plain INTER_LINEAR gave the same pixels: the test cannot tell them"


def test_flip_and_normalise_equal_the_clip_transforms():
    rng = np.random.default_rng(1)
    flips = torch.tensor([True, False, True, False])
    for channels, flow in ((3, False), (20, True)):
        frames = rng.integers(0, 256, (4, 2, 6, 7, channels), dtype=np.uint8)
        got = flip(torch.from_numpy(frames), flips, flow=flow).numpy()
        for n, flipped in enumerate(flips.tolist()):
            expected = flip_horizontal(frames[n], flow=flow) if flipped else frames[n]
            assert np.array_equal(got[n], expected), f"clip {n} (flip {flipped}, flow {flow})"
        mirrored = frames[0][:, :, ::-1]
        if flow:  # x channels (even) inverted, y channels (odd) only mirrored
            assert np.array_equal(got[0][..., 0::2], 255 - mirrored[..., 0::2])
            assert np.array_equal(got[0][..., 1::2], mirrored[..., 1::2])
        else:
            assert np.array_equal(got[0], mirrored)
    for name in NORMALISATIONS:
        channels = 20 if name == "flow" else 3
        frames = rng.integers(0, 256, (3, 2, 5, 6, channels), dtype=np.uint8)
        got = normalise(torch.from_numpy(frames), name)
        assert got.shape == (3, channels, 2, 5, 6) and got.dtype == torch.float32
        for n in range(3):
            assert torch.equal(got[n], to_tensor(frames[n], name)), f"{name}: clip {n} differs"


# --- the protocol's sampled crop boxes and flips --------------------------------------------------


def test_multiscale_corner_boxes_and_flips_follow_hara():
    height, width, draws = 128, 171, 4000
    transform = SpatialTransform(112, train=True)
    rng = np.random.default_rng(0)
    augmentations = [transform.sample(height, width, rng) for _ in range(draws)]
    side_scale = {int(height * s): i for i, s in enumerate(HARA_SCALES)}
    assert len(side_scale) == 5
    scales, corners, flips = [0] * 5, dict.fromkeys(CORNERS, 0), 0
    for augmentation in augmentations:
        top, left, h, w = augmentation.box
        assert h == w and h in side_scale, f"box {augmentation.box}: not a Hara scale of 128"
        positions = {
            "c": ((height - h) // 2, (width - w) // 2), "tl": (0, 0), "tr": (0, width - w),
            "bl": (height - h, 0), "br": (height - h, width - w),
        }  # fmt: skip
        at = [corner for corner, position in positions.items() if position == (top, left)]
        assert at, f"box {augmentation.box} is at no corner nor the centre"
        scales[side_scale[h]] += 1
        if h < height:  # a full-height box is at tl = bl and tr = br: its corner is ambiguous
            corners[at[0]] += 1
        flips += augmentation.flip
    assert all(_within_band(c, draws, 1 / 5) for c in scales), f"scale counts {scales}"
    cornered = sum(corners.values())
    assert all(_within_band(c, cornered, 1 / 5) for c in corners.values()), f"corners {corners}"
    assert _within_band(flips, draws, 1 / 2), f"{flips} flips of {draws}"


def test_random_resized_boxes_cover_the_area_and_ratio_ranges():
    height, width, draws = 128, 171, 4000
    transform = SpatialTransform(112, train=True, crop="random_resized")
    rng = np.random.default_rng(0)
    side = min(height, width)
    fallback = ((height - side) // 2, (width - side) // 2, side, side)
    fractions, ratios, fallbacks = [], [], 0
    for _ in range(draws):
        box = transform.sample(height, width, rng).box
        top, left, h, w = box
        assert 0 <= top <= height - h and 0 <= left <= width - w and h > 0 and w > 0, box
        if box == fallback:
            fallbacks += 1
            continue
        # the sides are rounded from an area fraction in [0.08, 1] and a ratio in [3/4, 4/3]
        assert (h + 0.5) * (w + 0.5) >= 0.08 * height * width, box
        assert (h - 0.5) * (w - 0.5) <= height * width, box
        assert (w + 0.5) / (h - 0.5) >= 3 / 4 and (w - 0.5) / (h + 0.5) <= 4 / 3, box
        fractions.append(h * w / (height * width))
        ratios.append(w / h)
    assert fallbacks < draws / 100, f"{fallbacks} centre fallbacks of {draws}"
    assert min(fractions) < 0.1 and max(fractions) > 0.9, (min(fractions), max(fractions))
    assert min(ratios) < 0.8 and max(ratios) > 1.25, (min(ratios), max(ratios))
    # frames where no box fits: the documented fallback, the centred square of the short side
    assert transform.sample(1, 1000, rng).box == (0, 499, 1, 1)


@pytest.mark.parametrize("crop", ["multiscale_corner", "random_resized"])
def test_transform_is_its_sample_then_apply(crop):
    transform = SpatialTransform(32, train=True, crop=crop)
    clip = np.random.default_rng(2).integers(0, 256, (2, 48, 64, 3), dtype=np.uint8)
    flipped = 0
    for seed in range(30):
        augmentation = transform.sample(48, 64, np.random.default_rng(seed))
        expected = transform.apply(clip, augmentation)
        assert np.array_equal(transform(clip, np.random.default_rng(seed)), expected), seed
        flipped += augmentation.flip
    assert 0 < flipped < 30, "both flipped and unflipped clips compared"


# --- cache ≡ decoded videos -----------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES)
def test_cache_gives_the_clips_the_videos_give(tiny, caches, side):
    config, train, test, indexes = _subset(tiny)
    cache = open_cache(caches[side], config, train + test, indexes, side)
    cached, decoded = CacheReader(cache), FrameReader(config.root, indexes, short_side=side)
    shape = (64, 85) if side == 64 else (48, 64)
    for entry in train + test:
        count = indexes[entry.found].frames
        frames = decoded.read(entry, list(range(count)))
        assert (cached.frame_count(entry), cached.frame_shape(entry)) == (count, shape)
        assert frames.shape == (count, *shape, 3)
        assert np.array_equal(cache.video(entry.found), frames), f"{entry.found} at {side}"
    protocol = ClipProtocol(frames=16, size=32, normalisation="kinetics")
    from_cache = TrainClips(cached, train, protocol, seed=5)
    from_files = TrainClips(decoded, train, protocol, seed=5)
    for item in range(2 * len(train)):  # epochs 0 and 1
        got, expected = from_cache[item], from_files[item]
        assert (got["label"], got["index"], got["failed"]) == (
            expected["label"], expected["index"], "",
        )  # fmt: skip
        assert torch.equal(got["clip"], expected["clip"]), f"training item {item} at {side}"
    evaluated, reference = EvalClips(cached, test, protocol), EvalClips(decoded, test, protocol)
    assert len(evaluated) == len(reference) == 2 * len(test)  # 24 frames: two sliding clips
    for item in range(len(reference)):
        got, expected = evaluated[item], reference[item]
        assert got["ok"] == expected["ok"] == 1 and got["video"] == expected["video"]
        assert torch.equal(got["clip"], expected["clip"]), f"test item {item} at {side}"


FIXTURE_VIDEOS = {  # name: (decodable frames, height, width at short side 64)
    "corrupted_h264.mp4": (49, 64, 114),  # 1280x720, one frame of 50 fails to decode
    "rotated_90.mov": (3, 114, 64),  # coded 568x320, displayed upright (portrait)
    "short_32frames.mp4": (32, 64, 85),  # 340x256
    "variable_fps.mp4": (300, 64, 64),  # 128x128
}


@needs_fixtures
def test_cache_holds_the_decoded_fixture_videos(tmp_path):
    root, lines = tmp_path / "videos", []
    for i, name in enumerate(sorted(FIXTURE_VIDEOS)):
        relative = f"{'ab'[i % 2]}/{name}"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(VIDEOS / name, root / relative)
        lines.append(f"{relative} {'train' if i < 2 else 'test'}")
    (tmp_path / "split.txt").write_text("\n".join(lines) + "\n")
    config = DatasetConfig("folder", root, split_file=tmp_path / "split.txt")
    counts = build_cache(config, tmp_path / "cache", short_side=64, workers=2)
    assert (counts["videos"], counts["decoded"], counts["failed"]) == (4, 4, 0), counts
    _, train, test = open_dataset(config)
    indexes = FrameIndex(root).lookup(train + test)
    cache = open_cache(tmp_path / "cache", config, train + test, indexes, 64)
    reader = FrameReader(root, indexes, short_side=64)
    for entry in train + test:
        frames, height, width = FIXTURE_VIDEOS[Path(entry.found).name]
        assert indexes[entry.found].frames == frames, entry.found
        assert cache.videos[entry.found].frames == frames and not cache.videos[entry.found].error
        decoded = reader.read(entry, list(range(frames)))
        assert decoded.shape == (frames, height, width, 3), (entry.found, decoded.shape)
        assert np.array_equal(cache.video(entry.found), decoded), f"{entry.found} differs"
    assert counts["frames"] == sum(f for f, _, _ in FIXTURE_VIDEOS.values())


def test_a_video_that_does_not_decode_is_recorded_not_cached(tiny, tmp_path):
    config, entries = _small_dataset(tiny, tmp_path, 2)
    broken = entries[0]
    (config.root / broken.found).write_bytes(b"not a video at all" * 10)
    counts = build_cache(config, tmp_path / "cache", short_side=32, workers=1)
    assert (counts["decoded"], counts["failed"], counts["failed_videos"]) == (
        1, 1, [broken.relative],
    )  # fmt: skip
    record = ClipCache(tmp_path / "cache").videos[broken.found]
    assert record.frames == 0 and record.error, record


# --- staleness, other sides, other versions -------------------------------------------------------


def test_a_changed_video_makes_the_cache_stale_until_rebuilt(tiny, tmp_path):
    config, entries = _small_dataset(tiny, tmp_path, 3)
    out = tmp_path / "cache"
    counts = build_cache(config, out, short_side=32, workers=1)
    assert (counts["decoded"], counts["reused"], counts["failed"]) == (3, 0, 0), counts
    open_cache(out, config, entries, FrameIndex(config.root).lookup(entries), 32)  # current
    kept, changed = entries[0], entries[1]
    before = ClipCache(out).video(kept.found).copy()
    write_video(config.root / changed.found, frames=20, size=(64, 48), seed=5)  # other content
    with pytest.raises(DataError) as error:
        open_cache(out, config, entries, FrameIndex(config.root).lookup(entries), 32)
    message = str(error.value)
    assert changed.relative in message and "harness data cache" in message, message
    assert "changed" in message and kept.relative not in message, message
    counts = build_cache(config, out, short_side=32, workers=1)
    assert (counts["decoded"], counts["reused"], counts["failed"]) == (1, 2, 0), counts
    indexes = FrameIndex(config.root).lookup(entries)
    cache = open_cache(out, config, entries, indexes, 32)
    fresh = FrameReader(config.root, indexes, short_side=32).read(changed, list(range(20)))
    assert np.array_equal(cache.video(changed.found), fresh), "the changed video, decoded again"
    assert np.array_equal(cache.video(kept.found), before), "an unchanged video, copied"
    # a new modification time alone makes a video stale too
    stamp = (config.root / kept.found).stat().st_mtime_ns + 10**9
    os.utime(config.root / kept.found, ns=(stamp, stamp))
    with pytest.raises(DataError, match="harness data cache") as error:
        open_cache(out, config, entries, FrameIndex(config.root).lookup(entries), 32)
    assert kept.relative in str(error.value) and changed.relative not in str(error.value)
    counts = build_cache(config, out, short_side=32, workers=1)
    assert (counts["decoded"], counts["reused"]) == (1, 2), counts
    indexes = FrameIndex(config.root).lookup(entries)
    open_cache(out, config, entries, indexes, 32)
    # a frame count other than the index's (the cache written by another decoder, say)
    indexes[kept.found] = replace(indexes[kept.found], frames=indexes[kept.found].frames - 1)
    with pytest.raises(DataError, match="24 frames cached, 23 decode now") as error:
        open_cache(out, config, entries, indexes, 32)
    assert kept.relative in str(error.value)


def test_a_cache_of_another_side_version_or_none_is_refused(tiny, tmp_path):
    config, entries = _small_dataset(tiny, tmp_path, 2)
    out = tmp_path / "cache"
    indexes = FrameIndex(config.root).lookup(entries)
    with pytest.raises(DataError, match="holds no clip cache") as error:
        open_cache(out, config, entries, indexes, 32)
    assert "harness data cache folder" in str(error.value) and "--short-side 32" in str(error.value)
    # inside the root, the command it would suggest refuses to write: a folder outside is named
    with pytest.raises(DataError, match="lies inside dataset.root") as error:
        open_cache(Path(config.root) / "cache", config, entries, indexes, 32)
    assert f"{Path(config.root).resolve().name}-cache" in str(error.value)
    build_cache(config, out, short_side=32, workers=1)
    for asked, named in ((48, "short side 48"), (None, "native size")):
        with pytest.raises(DataError) as error:
            open_cache(out, config, entries, indexes, asked)
        message = str(error.value)
        assert "short side 32" in message and named in message, message
    index = out / "index.json"
    header = json.loads(index.read_text())
    (out / "frames.u8").write_bytes(b"an older version's frames")
    (out / "frames-dead.u8.partial").write_bytes(b"a killed build's")
    index.write_text(json.dumps(header | {"version": 99}))
    with pytest.raises(DataError, match="version 99 clip cache"):
        open_cache(out, config, entries, indexes, 32)
    counts = build_cache(config, out, short_side=32, workers=1)  # rebuilt, not reused
    assert (counts["decoded"], counts["reused"]) == (2, 0), counts
    left = sorted(p.name for p in out.iterdir() if p.name not in ("index.json", ".lock"))
    assert left == [ClipCache(out).frames_file], "older frames and partial files are removed"
    open_cache(out, config, entries, indexes, 32)
    index.write_text("{not json")
    with pytest.raises(DataError, match="not a readable clip cache index"):
        open_cache(out, config, entries, indexes, 32)


# --- batches sliced from the cache, augmented "on the device" (the CPU) ---------------------------


def _cached_train_set(tiny, caches, crop: str, count: int | None = None, seed: int = 3):
    config, train, test, indexes = _subset(tiny)
    cache = open_cache(caches[64], config, train + test, indexes, 64)
    protocol = ClipProtocol(frames=8, size=32, normalisation="kinetics", crop=crop)
    return TrainClips(CacheReader(cache), train[:count], protocol, seed=seed)


def _assert_same_batches(loader, device, what: str) -> None:
    assert len(device) == len(loader), what
    pairs = list(zip(loader, device, strict=True))
    assert pairs, what
    for number, (expected, got) in enumerate(pairs):
        assert torch.equal(got["index"], expected["index"]), f"{what}, batch {number}"
        assert torch.equal(got["label"], expected["label"]), f"{what}, batch {number}"
        assert torch.equal(got["clip"], expected["clip"]), f"{what}, batch {number}: clips"


@pytest.mark.parametrize("crop", ["multiscale_corner", "random_resized"])
def test_device_batches_equal_the_loader_batches(tiny, caches, crop):
    train_set = _cached_train_set(tiny, caches, crop)
    assert len(train_set) == 10
    loader = make_loader(train_set, batch_size=4, workers=0, shuffle=True, seed=3)
    batches = ClipBatches(train_set, batch_size=4, seed=3, threads=2, pin=False)
    device = DeviceAugmented(batches, torch.device("cpu"))
    assert len(device) == 2  # as the loader: the last, short batch dropped in training
    for epoch in (0, 1):
        loader.sampler.set_epoch(epoch)
        device.sampler.set_epoch(epoch)
        _assert_same_batches(loader, device, f"{crop}, epoch {epoch}")


def test_device_batches_start_no_epoch_past_the_last(tiny, caches):
    """While an epoch's last batches are taken the next epoch's first are started, except after
    the loop's last epoch: that slicing (and pinned memory) would only compete with evaluation."""
    train_set = _cached_train_set(tiny, caches, "multiscale_corner")
    for epochs, planned in ((None, [0, 1]), (2, [0, 1, 1])):  # the epochs whose batches are cut
        batches = ClipBatches(train_set, batch_size=4, seed=3, threads=1, pin=False, epochs=epochs)
        cut, chunks = [], batches._chunks
        batches._chunks = lambda epoch, cut=cut, chunks=chunks: cut.append(epoch) or chunks(epoch)
        for epoch in range(1 if epochs is None else epochs):
            batches.sampler.set_epoch(epoch)
            assert len(list(batches)) == 2
        batches.close()
        assert cut == planned, f"epochs={epochs}"


def test_device_batches_split_the_epoch_between_ranks(tiny, caches):
    train_set = _cached_train_set(tiny, caches, "multiscale_corner", count=9, seed=1)
    for epoch in (0, 1):
        seen = []
        for rank in (0, 1):
            batches = ClipBatches(train_set, batch_size=5, seed=1, threads=1, pin=False,
                                  rank=rank, world=2)  # fmt: skip
            device = DeviceAugmented(batches, torch.device("cpu"))
            loader = make_loader(train_set, batch_size=5, workers=0, shuffle=True, seed=1,
                                 rank=rank, world=2)  # fmt: skip
            for sampler in (device.sampler, loader.sampler):
                sampler.set_epoch(epoch)
            _assert_same_batches(loader, device, f"rank {rank}, epoch {epoch}")
            indices = [i for batch in batches for i in batch["index"].tolist()]
            order = EpochShuffle(9, 1, rank, 2)
            order.set_epoch(epoch)
            assert indices == [i - 9 * epoch for i in order], f"rank {rank}, epoch {epoch}"
            seen.append(indices)
        assert len(seen[0]) == len(seen[1]) == 5 and set(seen[0]) | set(seen[1]) == set(range(9))


def test_device_batches_need_a_cache_and_a_device_crop(tiny, caches):
    config, train, test, indexes = _subset(tiny)
    protocol = ClipProtocol(frames=8, size=32, normalisation="kinetics")
    files = TrainClips(FrameReader(config.root, indexes, short_side=64), train, protocol)
    with pytest.raises(TypeError, match="CacheReader"):
        ClipBatches(files, batch_size=4, seed=0, threads=1, pin=False)
    random = _cached_train_set(tiny, caches, "random")
    with pytest.raises(ValueError, match="'random'"):
        ClipBatches(random, batch_size=4, seed=0, threads=1, pin=False)


# --- the command line and a run -------------------------------------------------------------------


def test_cli_builds_the_cache_then_reuses_it(tiny, tmp_path, capsys):
    def cache(side: str) -> int:
        return main([
            "data", "cache", "synthetic", "--root", str(tiny / "UCF-101"),
            "--split-dir", str(tiny / "ucfTrainTestlist"), "--short-side", side,
            "--out", str(tmp_path / "cache"), "--workers", "2",
        ])  # fmt: skip

    assert cache("64") == 0
    out = capsys.readouterr().out  # the 15 videos present of the 250 the lists name
    assert "15 videos decoded and 0 reused" in out and "360 frames at short side 64" in out, out
    assert "dataset.layout: cache, dataset.short_side: 64" in out, out
    assert ClipCache(tmp_path / "cache").short_side == 64
    assert cache("64") == 0
    out = capsys.readouterr().out
    assert "0 videos decoded and 15 reused" in out, out
    with pytest.raises(SystemExit) as exit_:
        cache("0")
    assert exit_.value.code == 2
    assert "'native'" in capsys.readouterr().err


SPEC = """
name: NAME
model: {num_classes: 5, frames: 8, size: 32}
grid: {backbone: [resnet3d_10], attention: [none], placement: [stage_output]}
dataset:
  {name: folder, root: ROOT, split_file: SPLIT, normalisation: kinetics, workers: 0, DATA}
train: {epochs: 1, batch_size: 4, optimizer: adamw, lr: 0.001, seeds: [0]}
eval: {clips: even, count: 1, batch_size: 16}
"""


def _spec(folder: Path, tiny: Path, name: str, data: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    text = SPEC.replace("NAME", name).replace("DATA", data).replace("ROOT", str(tiny / "UCF-101"))
    (folder / "spec.yaml").write_text(text.replace("SPLIT", str(tiny / "split.txt")))
    return folder / "spec.yaml"


def _runs(folder: Path, name: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{folder / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(name)
    return client, client.search_runs([experiment.experiment_id]) if experiment else []


@pytest.mark.slow
def test_a_run_from_the_cache_on_the_device_trains_as_from_the_files(
    tiny, caches, tmp_path, monkeypatch
):
    device = f"short_side: 64, layout: cache, cache: {caches[64]}, augment_on: device"
    cached = _spec(tmp_path / "cached", tiny, "cached", device)
    files = _spec(
        tmp_path / "files", tiny, "files", "short_side: 64, layout: files, augment_on: host"
    )
    results = {}
    for spec in (cached, files):
        monkeypatch.chdir(spec.parent)
        assert main(["run", str(spec), "--no-progress"]) == 0, spec
        client, runs = _runs(spec.parent, spec.parent.name)
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"
        run = runs[0]
        history = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
        params = (run.data.params["loader.layout"], run.data.params["loader.augment_on"])
        results[spec.parent.name] = (history, run.data.tags["config_hash"], params)
    assert results["cached"][2] == ("cache", "device"), results
    assert results["files"][2] == ("files", "host"), results
    assert results["cached"][0] and results["cached"][:2] == results["files"][:2], results


SPEC_MISTAKES = {  # dataset keys of a spec that cannot run: what the exit-2 message says
    "no cache": ("short_side: 48, layout: cache",
                 ["holds no clip cache", "harness data cache folder", "--short-side 48"]),
    "device augmentation without a cache": ("augment_on: device, crop: random", [
        "dataset.augment_on", "dataset.layout: cache (it is 'files')",
        "dataset.crop one of multiscale_corner, random_resized (it is 'random')"]),
}  # fmt: skip


@pytest.mark.parametrize("mistake", SPEC_MISTAKES)
def test_a_spec_the_cache_cannot_serve_stops_before_training(
    mistake, tiny, tmp_path, monkeypatch, capsys
):
    data, said = SPEC_MISTAKES[mistake]
    spec = _spec(tmp_path / "run", tiny, "mistake", data)
    monkeypatch.chdir(spec.parent)
    assert main(["run", str(spec), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert all(text in err for text in said), err
    assert not _runs(spec.parent, "mistake")[1], "a trial ran"
    assert not (spec.parent / "checkpoints").exists()
    if mistake == "no cache":  # a dry run lists it among what this machine lacks
        assert main(["run", str(spec), "--dry-run"]) == 2
        out = capsys.readouterr().out
        assert "clip cache:" in out and "harness data cache folder" in out, out


@requires_gpu()
@pytest.mark.gpu
@pytest.mark.parametrize("normalisation", ["activitynet", "kinetics"])
def test_device_augmentation_on_the_gpu_gives_the_cpus_values(normalisation):
    """Integers for the resize and flip, one IEEE operation at a time for the normalisation: the
    GPU's batch equals the CPU's exactly, and pinned host batches travel to it."""
    rng = np.random.default_rng(1)
    frames = torch.from_numpy(rng.integers(0, 256, (6, 16, 128, 171, 3), dtype=np.uint8))
    boxes = [(0, 0, 128, 128), (0, 43, 128, 128), (19, 40, 90, 90), (64, 107, 64, 64),
             (5, 9, 107, 150), (0, 0, 60, 171)]  # fmt: skip
    batch = {"frames": frames.pin_memory(), "boxes": torch.tensor(boxes),
             "flips": torch.tensor([True, False, True, False, False, True])}  # fmt: skip
    kwargs = {"size": 112, "normalisation": normalisation}
    on_gpu = augment(batch, device=torch.device("cuda"), **kwargs)
    on_cpu = augment(batch, device=torch.device("cpu"), **kwargs)
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), on_cpu)


def test_files_layout_advises_a_cache_and_a_synthetic_cache_builds_itself(
    tiny, tmp_path, monkeypatch, capsys
):
    spec = load_spec(_spec(tmp_path, tiny, "advice", "short_side: 32"))
    config = dataset_config(spec, 1)
    _, train, test = open_dataset(config)
    indexes = FrameIndex(config.root).lookup(train + test)
    monkeypatch.setattr(inputs, "_ADVISED", set())
    reader = clip_reader(spec, config, train + test, indexes)
    assert isinstance(reader, FrameReader) and reader.short_side == 32
    err = capsys.readouterr().err
    assert "would take about" in err and "fits in this machine's memory" in err, err
    assert "harness data cache folder" in err and "--short-side 32" in err, err
    clip_reader(spec, config, train + test, indexes)
    assert not capsys.readouterr().err, "advised once per root and process"
    build_cache(config, default_folder(config, 32), short_side=32, workers=1)
    monkeypatch.setattr(inputs, "_ADVISED", set())
    clip_reader(spec, config, train + test, indexes)
    assert f"exists at {default_folder(config, 32)}" in capsys.readouterr().err
    # augmentation on the device needs clips read from a cache
    data = TrialData(["c"] * 5, TrainClips(reader, train, ClipProtocol()), None, test)
    with pytest.raises(SpecError, match="dataset.augment_on"):
        augments_on_device(replace(spec, dataset=replace(spec.dataset, augment_on="device")),
                           data, torch.device("cpu"))  # fmt: skip
    assert not augments_on_device(spec, data, torch.device("cpu"))
    # a synthetic dataset's cache is built on first use, as the dataset itself is
    synthetic = replace(spec, dataset=replace(spec.dataset, name="synthetic", split_file=None,
                                              root="synthetic:tiny", layout="cache"))  # fmt: skip
    config = dataset_config(synthetic, 1)
    _, train, test = open_dataset(config)
    indexes = FrameIndex(config.root).lookup(train + test)
    reader = clip_reader(synthetic, config, train + test, indexes)
    assert isinstance(reader, CacheReader) and reader.cache.short_side == 32
    assert "caching the decoded synthetic dataset" in capsys.readouterr().out
    assert len(reader.cache.videos) == 250


def test_a_rebuild_leaves_open_caches_reading_their_own_frames(tiny, tmp_path, capsys):
    config, entries = _small_dataset(tiny, tmp_path, 3)
    out = tmp_path / "cache"
    build_cache(config, out, short_side=32, workers=1)
    first = ClipCache(out)
    assert [p.name for p in out.glob("frames-*.u8")] == [first.frames_file]
    build_cache(config, out, short_side=32, workers=1)  # nothing changed: nothing rewritten
    assert ClipCache(out).frames_file == first.frames_file
    kept, changed = entries[0], entries[1]
    before = first.video(changed.found).copy()
    write_video(config.root / changed.found, frames=20, size=(64, 48), seed=5)
    counts = build_cache(config, out, short_side=32, workers=1)
    assert (counts["decoded"], counts["reused"], counts["kept"]) == (1, 2, 0), counts
    second = ClipCache(out)
    assert [p.name for p in out.glob("frames-*.u8")] == [second.frames_file] != [first.frames_file]
    assert not list(out.glob("*.partial")), "no partial file is left behind"
    # the cache opened before the rebuild still reads the frames its index describes
    assert np.array_equal(first.video(changed.found), before)
    assert np.array_equal(first.video(kept.found), second.video(kept.found))
    assert second.video(changed.found).shape[0] == 20 != before.shape[0]
    # a split that lists fewer videos keeps the others (another split's), copying nothing
    split = config.split_file
    split.write_text("\n".join(split.read_text().splitlines()[1:]) + "\n")
    counts = build_cache(config, out, short_side=32, workers=1)
    assert (counts["videos"], counts["reused"], counts["kept"]) == (2, 2, 1), counts
    assert ClipCache(out).frames_file == second.frames_file
    capsys.readouterr()
    assert (
        main(
            [
                "data",
                "cache",
                "folder",
                "--root",
                str(config.root),
                "--split-file",
                str(split),
                "--short-side",
                "32",
                "--out",
                str(out),
                "--workers",
                "0",
            ]
        )
        == 2
    )
    assert "--workers 0" in capsys.readouterr().err


def test_a_failed_video_is_reported_unreadable_and_decoded_again(tiny, tmp_path):
    config, entries = _small_dataset(tiny, tmp_path, 2)
    out = tmp_path / "cache"
    build_cache(config, out, short_side=32, workers=1)
    index = out / "index.json"
    header = json.loads(index.read_text())
    victim = entries[0]
    header["videos"][victim.found] |= {"frames": 0, "error": "OSError: Too many open files"}
    index.write_text(json.dumps(header))  # as a build hit by a passing error leaves it
    cache = open_cache(out, config, entries, FrameIndex(config.root).lookup(entries), 32)
    assert cache.unreadable(entries) == {
        victim.relative: "no frames cached (OSError: Too many open files)"
    }
    assert CacheReader(cache).frame_count(victim) == 0  # left out of training, unscored
    counts = build_cache(config, out, short_side=32, workers=1)
    assert (counts["decoded"], counts["reused"], counts["failed"]) == (1, 1, 0), counts
    assert not ClipCache(out).unreadable(entries)
    # a frames file cut short is named, not read past its end
    frames = out / ClipCache(out).frames_file
    with frames.open("r+b") as handle:
        handle.truncate(frames.stat().st_size // 2)
    with pytest.raises(DataError, match="is damaged: frames-.* bytes, the index needs"):
        ClipCache(out)


@pytest.mark.parametrize(
    "names",
    [
        ["index.json", ".lock", "frames-0a1b.u8", "frames-0a1b.u8.partial"],
        ["frames.u8", "frames.u8.123.partial", "index.json.123.partial"],  # an older version's
        [".nfs0000000001a2b3c400000001", "lost+found"],  # NFS's removed-while-open, a mount's
    ],
)
def test_a_folder_holding_only_what_a_cache_leaves_is_built_over(names, tmp_path):
    from harness.data.cache import _require_cache_folder

    for name in names:
        (tmp_path / name).write_text("x")
    _require_cache_folder(tmp_path)  # no DataError
    (tmp_path / "notes.txt").write_text("the user's")
    with pytest.raises(DataError, match="1 file\\(s\\) of its own \\('notes.txt'\\)"):
        _require_cache_folder(tmp_path)
