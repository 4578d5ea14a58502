"""Data-path fidelity to the reference code: flipped flow moves the other way (TSN), and the test
clips are exactly 3D-ResNets-PyTorch's (EAM's evaluation protocol)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from harness.data.clips import ClipProtocol, EvalClips, FrameReader, TSNSegments
from harness.data.datasets import Entry, FrameIndex
from harness.data.prepare import FLOW_BOUND
from harness.data.transforms import NORMALISATIONS, SpatialTransform, sliding_clips, to_tensor

MOTION = 3.0  # px/frame, to the right
FLOW_FRAMES, FLOW_LENGTH, SIZE = 11, 5, 32  # flow images per video (frames − 1), stack, crop
HEIGHT, WIDTH = 48, 64


# --- flow: a horizontal flip reverses horizontal motion ------------------------------------------


def _encode(px: float) -> int:
    """A flow value as `harness data flow` stores it: 0–255 around 128, clipped at ±FLOW_BOUND."""
    return round((px + FLOW_BOUND) * 255 / (2 * FLOW_BOUND))


def _decode(tensor) -> tuple[float, float]:
    """Mean x and y flow in px/frame of a `flow`-normalised tensor whose channel axis is 0,
    x and y interleaved (TSN)."""
    scale, (mean,), (std,) = NORMALISATIONS["flow"]
    values = (tensor.double().numpy() * std + mean) / scale  # back to the stored 0–255
    px = values * (2 * FLOW_BOUND) / 255 - FLOW_BOUND
    return float(px[0::2].mean()), float(px[1::2].mean())


class _Coin:
    """A generator whose flip coin is fixed (`random()`: 0.0 flips, 0.99 does not); every other
    draw (the crop) comes from `rng`."""

    def __init__(self, rng: np.random.Generator, flip: bool) -> None:
        self.rng, self.flip = rng, flip

    def random(self) -> float:
        return 0.0 if self.flip else 0.99

    def __getattr__(self, name: str):
        return getattr(self.rng, name)


@pytest.fixture(scope="module")
def flow_video(tmp_path_factory) -> tuple[Path, Path, Entry]:
    """One video in the layouts the flow stream reads: RGB frames `<root>/Walk/v_walk/
    image_%05d.jpg` (their count sets the segments) and TSN flow `<flow>/Walk/v_walk/
    flow_{x,y}_%05d.jpg`, every pixel moving MOTION px/frame to the right."""
    base = tmp_path_factory.mktemp("flow_video")
    root, flow = base / "frames", base / "flow"
    rgb_folder, flow_folder = root / "Walk" / "v_walk", flow / "Walk" / "v_walk"
    rgb_folder.mkdir(parents=True)
    flow_folder.mkdir(parents=True)
    for i in range(1, FLOW_FRAMES + 2):
        Image.new("RGB", (WIDTH, HEIGHT), (90, 120, 150)).save(rgb_folder / f"image_{i:05d}.jpg")
    for i in range(1, FLOW_FRAMES + 1):
        x = np.full((HEIGHT, WIDTH), _encode(MOTION), np.uint8)
        y = np.full((HEIGHT, WIDTH), _encode(0.0), np.uint8)
        Image.fromarray(x, "L").save(flow_folder / f"flow_x_{i:05d}.jpg", quality=95)
        Image.fromarray(y, "L").save(flow_folder / f"flow_y_{i:05d}.jpg", quality=95)
    return root, flow, Entry("Walk/v_walk", 0, "Walk/v_walk", "frames")


def _flow_segments(flow_video, *, train: bool) -> TSNSegments:
    root, flow, entry = flow_video
    reader = FrameReader(root, FrameIndex(root).lookup([entry]))
    return TSNSegments(
        reader, [entry], modality="flow", train=train, size=SIZE, flow_root=flow,
        flow_length=FLOW_LENGTH,
    )  # fmt: skip


@pytest.mark.parametrize("flip, expected", [(True, -MOTION), (False, MOTION)])
def test_flow_stack_flip_reverses_x_motion(flow_video, flip, expected):
    """The flow stream's own training transform on a stack as `read_flow_stack` returns it."""
    dataset = _flow_segments(flow_video, train=True)
    x = np.full((2, HEIGHT, WIDTH, FLOW_LENGTH), _encode(MOTION), np.uint8)
    y = np.full((2, HEIGHT, WIDTH, FLOW_LENGTH), _encode(0.0), np.uint8)
    stack = np.stack([x, y], axis=-1).reshape(2, HEIGHT, WIDTH, 2 * FLOW_LENGTH)  # x, y, x, y …
    out = dataset.transform(stack, _Coin(np.random.default_rng(0), flip))
    mean_x, mean_y = _decode(to_tensor(out, "flow"))  # (C, S, H, W)
    assert mean_x == pytest.approx(expected, abs=0.2), (
        f"flip={flip}: the stack moves {MOTION:+} px/frame, the transform's output {mean_x:+.2f} "
        f"(expected {expected:+})"
    )
    assert mean_y == pytest.approx(0.0, abs=0.2)


@pytest.mark.parametrize("flip, expected", [(True, -MOTION), (False, MOTION)])
def test_tsn_flow_segments_flip_reverses_x_motion(flow_video, flip, expected):
    """Through `TSNSegments` (flow), from the JPEG files to the normalised tensor."""
    dataset = _flow_segments(flow_video, train=True)
    transform = dataset.transform
    dataset.transform = lambda images, rng: transform(images, _Coin(rng, flip))
    clip = dataset[0]["clip"]  # (segments, 2·length, H, W)
    assert clip.shape == (3, 2 * FLOW_LENGTH, SIZE, SIZE)
    mean_x, mean_y = _decode(clip.transpose(0, 1))
    assert mean_x == pytest.approx(expected, abs=0.2), (
        f"flip={flip}: the video moves {MOTION:+} px/frame, TSNSegments' flow {mean_x:+.2f} "
        f"(expected {expected:+})"
    )
    assert mean_y == pytest.approx(0.0, abs=0.2)


def test_tsn_flow_segments_are_never_flipped_in_evaluation(flow_video):
    mean_x, mean_y = _decode(_flow_segments(flow_video, train=False)[0]["clip"].transpose(0, 1))
    assert (mean_x, mean_y) == (pytest.approx(MOTION, abs=0.2), pytest.approx(0.0, abs=0.2))


def test_rgb_flip_only_mirrors():
    clip = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    transform = SpatialTransform(SIZE, train=True, crop="random")  # the full frame, no resize
    flipped = transform(clip, _Coin(np.random.default_rng(0), True))
    np.testing.assert_array_equal(flipped, clip[:, :, ::-1])
    np.testing.assert_array_equal(transform(clip, _Coin(np.random.default_rng(0), False)), clip)


def test_a_flow_stack_in_an_rgb_transform_is_an_error():
    """The flip must know that it holds flow: a stack of 2·L channels given to a transform made
    for RGB would be flipped as pictures, its motion left pointing the wrong way."""
    stack = np.full((1, SIZE, SIZE, 2 * FLOW_LENGTH), 128, np.uint8)
    with pytest.raises(ValueError, match="flow"):
        SpatialTransform(SIZE, train=True)(stack, np.random.default_rng(0))


# --- evaluation clips: 3D-ResNets-PyTorch's test clips -------------------------------------------


def _reference_test_clips(n_frames: int, sample_duration: int = 16) -> list[list[int]]:
    """3D-ResNets-PyTorch `datasets/ucf101.py` / `hmdb51.py` `make_dataset` with
    `n_samples_for_each_video = 0` (`get_test_set`), so `step = sample_duration`, then
    `LoopPadding(sample_duration)`; its 1-based frame indices made 0-based."""
    step = sample_duration
    clips = []
    for j in range(1, n_frames, step):
        frame_indices = list(range(j, min(n_frames + 1, j + sample_duration)))
        out = frame_indices  # LoopPadding.__call__, as written there
        for index in out:
            if len(out) >= sample_duration:
                break
            out.append(index)
        clips.append([i - 1 for i in out])
    return clips


@pytest.mark.parametrize("frames", [1, 15, 16, 17, 32, 33, 40, 48, 49])
def test_sliding_clips_are_the_reference_test_clips(frames):
    assert sliding_clips(frames, 16) == _reference_test_clips(frames)


def test_a_33_frame_video_gives_two_clips_not_a_looped_last_frame():
    clips = sliding_clips(33, 16)
    assert len(clips) == 2, f"{len(clips)} clips, the last {clips[-1]}"
    assert clips == [list(range(16)), list(range(16, 32))]


def test_eval_clips_follow_the_reference_and_name_a_video_it_gives_no_clip(tmp_path):
    root = tmp_path / "frames"
    entries = []
    for name, count in (("v_long", 33), ("v_single", 1)):
        folder = root / "Walk" / name
        folder.mkdir(parents=True)
        for i in range(1, count + 1):
            Image.new("RGB", (16, 16), (8 * i, 0, 0)).save(folder / f"image_{i:05d}.jpg")
        entries.append(Entry(f"Walk/{name}", 0, f"Walk/{name}", "frames"))
    reader = FrameReader(root, FrameIndex(root).lookup(entries))
    evaluation = EvalClips(reader, entries, ClipProtocol(frames=16, size=16))
    assert [(video, window) for video, window in evaluation.items if video == 0] == [
        (0, list(range(16))),
        (0, list(range(16, 32))),
    ]
    flags = [(evaluation[i]["video"], evaluation[i]["ok"]) for i in range(len(evaluation))]
    assert flags == [(0, 1), (0, 1), (1, 0)]  # the one-frame video: listed, unscored
