"""Temporal sampling and spatial transforms for the two papers' protocols.

Crops: Hara's multi-scale corner crop (`multiscale_corner`, EAM), a random resized crop
(`random_resized`), or a plain random window of the short-side-resized clip (`random`, as C3D and
TSN train; the right choice for tiny frames, where zooming shifts the train distribution away
from the centre-cropped test clips).

EAM (3D, after Hara et al.): a random 16-frame window (short videos loop-padded), Hara's
multi-scale corner crop resized to 112, horizontal flip p=0.5, ActivityNet mean subtracted from
0–255 pixels; at test time non-overlapping 16-frame clips over the whole video, centre crop.
AARM (2D two-stream, TSN): 3 segments, one RGB frame or a 10-frame flow stack per segment, 224
crops; a flipped flow stack has its x components inverted, as TSN does (`flip_horizontal`).
Normalisation follows the checkpoint family being fine-tuned.

Clips are `(T, H, W, C)` uint8 arrays until `to_tensor`, which returns `(C, T, H, W)` float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

NORMALISATIONS = {
    # name: (scale to apply first, mean, std) — mean/std per channel on the scaled values
    "activitynet": (1.0, (114.7748, 107.7354, 99.4750), (1.0, 1.0, 1.0)),  # Hara 2018, EAM
    "kinetics": (1 / 255, (0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737)),  # Hara 2020
    "imagenet": (1 / 255, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # torchvision 2D
    "flow": (1 / 255, (0.5,), (0.226,)),  # TSN flow: 0–255 around 128
}
HARA_SCALES = tuple(1 / 2 ** (i / 4) for i in range(5))  # 1, 0.84, 0.71, 0.59, 0.5
CORNERS = ("c", "tl", "tr", "bl", "br")
MODALITIES = ("rgb", "flow")
# flow stacks are x, y, x, y … (TSN's interleaving, as `frames.read_flow_stack` stacks them)
FLOW_X_CHANNELS = slice(0, None, 2)


def loop_pad(indices: list[int], length: int) -> list[int]:
    """Repeat `indices` cyclically until `length` (Hara's LoopPadding for short videos)."""
    return [indices[i % len(indices)] for i in range(length)]


def random_window(frames: int, length: int, rng: np.random.Generator) -> list[int]:
    """A random window of `length` consecutive frames, loop-padded when the video is shorter."""
    start = int(rng.integers(0, max(frames - length, 0) + 1))
    return loop_pad(list(range(start, min(start + length, frames))), length)


def sliding_clips(frames: int, length: int) -> list[list[int]]:
    """Non-overlapping `length`-frame test clips (EAM's protocol), exactly 3D-ResNets-PyTorch's.

    Hara et al.'s `make_dataset` (`datasets/ucf101.py`, `hmdb51.py`) with
    `n_samples_for_each_video = 0` (`get_test_set`), so `step = sample_duration`, over 1-based
    frames: `for j in range(1, n_frames, step)` →
    `range(j, min(n_frames + 1, j + sample_duration))`, then `LoopPadding(sample_duration)`.
    In 0-based indices a clip starts at every multiple of `length` below `frames − 1`: a last
    clip that would hold the video's final frame alone (`frames` = k·`length` + 1) is not made,
    that frame is left out; a shorter last clip is loop-padded. A video of 0 or 1 frames gives
    no clip (the reference makes no test sample of it; `EvalClips` reports it unscored).
    """
    return [
        loop_pad(list(range(start, min(start + length, frames))), length)
        for start in range(0, frames - 1, length)
    ]


def even_clips(frames: int, length: int, count: int) -> list[list[int]]:
    """`count` clips with evenly spaced starts."""
    last = max(frames - length, 0)
    starts = np.linspace(0, last, count).round().astype(int)
    return [loop_pad(list(range(s, min(s + length, frames))), length) for s in starts]


def tsn_segments(
    frames: int, segments: int, length: int, rng: np.random.Generator | None
) -> list[int]:
    """TSN: the first frame of a `length`-frame snippet in each of `segments` equal parts;
    random within the part in training (`rng`), its centre in testing."""
    usable = max(frames - length + 1, 1)
    edges = np.linspace(0, usable, segments + 1)
    starts = []
    for low, high in zip(edges[:-1], edges[1:], strict=True):
        span = max(int(high) - int(low), 1)
        offset = int(rng.integers(0, span)) if rng is not None else span // 2
        starts.append(min(int(low) + offset, usable - 1))
    return starts


@dataclass(frozen=True)
class Augmentation:
    """One training clip's spatial augmentation: the crop box `(top, left, height, width)` in
    the frames it is drawn for, and whether the crop is mirrored."""

    box: tuple[int, int, int, int]
    flip: bool


@dataclass(frozen=True)
class SpatialTransform:
    """Crop, resize, flip: `train` uses Hara's multi-scale corner crop (or a random resized
    crop) and flips; evaluation resizes the short side to `size` and takes the centre.

    `modality` says what the clip holds: `rgb` (3 channels) or `flow`, TSN's uint8 x/y stacks
    (2·L channels, x at `FLOW_X_CHANNELS`), whose flip also inverts the x-flow
    (`flip_horizontal`). A clip that does not fit the modality is an error, so a flow stack
    cannot be flipped as a picture by a transform built for RGB.
    """

    size: int
    train: bool
    crop: str = "multiscale_corner"  # or "random_resized", or "random" (no zoom)
    flip: bool = True
    modality: str = "rgb"  # or "flow"

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality {self.modality!r}: expected one of {MODALITIES}")

    def __call__(self, clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        _check_channels(clip, self.modality)
        if not self.train:
            clip = _resize_short_side(clip, self.size)
            return _centre_crop(clip, self.size)
        if self.crop == "random":  # the window is drawn on the short-side-resized clip
            clip = _resize_short_side(clip, self.size)
        return self.apply(clip, self.sample(*clip.shape[1:3], rng))

    def sample(self, height: int, width: int, rng: np.random.Generator) -> Augmentation:
        """The training crop box and flip for frames of `height` × `width`, drawn from `rng` in
        the order `__call__` draws them (box, then flip), so a clip is the same whether it is
        augmented here or on the device (`harness.data.device_transforms`). For `crop:
        random` the frames are the short-side-resized ones."""
        if self.crop == "random":  # a size×size window of the short-side-resized clip
            top = int(rng.integers(0, height - self.size + 1))
            box = (top, int(rng.integers(0, width - self.size + 1)), self.size, self.size)
        elif self.crop == "random_resized":
            box = _random_resized_box(height, width, rng)
        else:
            box = _corner_box(height, width, rng)
        return Augmentation(box, bool(self.flip and rng.random() < 0.5))

    def apply(self, clip: np.ndarray, augmentation: Augmentation) -> np.ndarray:
        """Crop `augmentation.box`, resize to `size`², flip when it says so."""
        top, left, height, width = augmentation.box
        clip = _resize(clip[:, top : top + height, left : left + width], self.size, self.size)
        if augmentation.flip:
            clip = flip_horizontal(clip, flow=self.modality == "flow")
        return clip


def flip_horizontal(clip: np.ndarray, *, flow: bool) -> np.ndarray:
    """Mirror `(T, H, W, C)` uint8 frames left to right; for a flow stack (`flow`) also invert
    its x components, `255 − v` on the stored 0–255 values (zero motion at 128), because a
    mirrored video moves the other way. TSN (Wang et al. 2016), `transforms.py`
    `GroupRandomHorizontalFlip(is_flow=True)`: `for i in range(0, len(ret), 2): ret[i] =
    ImageOps.invert(ret[i])`, i.e. the x images of the x, y, x, y … stack. y is unchanged.
    """
    mirrored = clip[:, :, ::-1]
    if not flow:
        return mirrored
    if mirrored.dtype != np.uint8:  # 255 − v is a negation only on the stored uint8 values
        raise TypeError(f"flip flow stacks as uint8 images, before `to_tensor`: {clip.dtype}")
    mirrored = mirrored.copy()
    mirrored[..., FLOW_X_CHANNELS] = 255 - mirrored[..., FLOW_X_CHANNELS]
    return mirrored


def _check_channels(clip: np.ndarray, modality: str) -> None:
    channels = clip.shape[-1]
    if modality == "rgb" and channels != 3:
        raise ValueError(
            f"a {channels}-channel clip given to an RGB transform: flow stacks need "
            "SpatialTransform(..., modality='flow'), whose flip inverts the x-flow"
        )
    if modality == "flow" and channels % 2:
        raise ValueError(f"a flow stack has x, y pairs of channels, not {channels}")


def _corner_box(h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    side = int(min(h, w) * HARA_SCALES[int(rng.integers(len(HARA_SCALES)))])
    corner = CORNERS[int(rng.integers(len(CORNERS)))]
    top = {"c": (h - side) // 2, "tl": 0, "tr": 0, "bl": h - side, "br": h - side}[corner]
    left = {"c": (w - side) // 2, "tl": 0, "tr": w - side, "bl": 0, "br": w - side}[corner]
    return top, left, side, side


def _random_resized_box(h: int, w: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    for _ in range(10):
        area = h * w * rng.uniform(0.08, 1.0)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        width, height = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < width <= w and 0 < height <= h:
            return (
                int(rng.integers(0, h - height + 1)),
                int(rng.integers(0, w - width + 1)),
                height,
                width,
            )
    side = min(h, w)
    return (h - side) // 2, (w - side) // 2, side, side


def _resize_short_side(clip: np.ndarray, size: int) -> np.ndarray:
    return _resize(clip, *short_side_shape(*clip.shape[1:3], size))


def short_side_shape(height: int, width: int, side: int) -> tuple[int, int]:
    """Frames of `height` × `width` with their short side scaled to `side` (as `harness data
    prepare` and the clip cache store them)."""
    scale = side / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def store_resize(clip: np.ndarray, side: int) -> np.ndarray:
    """`(T, H, W, C)` frames with the short side scaled to `side` by area averaging: the one
    resize of decoded frames before they are stored (`harness data prepare`, the clip cache)
    or read at that size from the videos (`FrameReader(short_side=…)`), so that every path
    that asks for the same short side gets the same pixels."""
    height, width = short_side_shape(*clip.shape[1:3], side)
    if clip.shape[1:3] == (height, width):
        return clip
    return _each_frame(clip, height, width, cv2.INTER_AREA)


def _centre_crop(clip: np.ndarray, size: int) -> np.ndarray:
    h, w = clip.shape[1:3]
    top, left = (h - size) // 2, (w - size) // 2
    return clip[:, top : top + size, left : left + size]


def _resize(clip: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear, OpenCV's bit-exact variant (`INTER_LINEAR_EXACT`: 8-bit weights, one rounded
    sum): the same pixels on every machine, and what the device resize
    (`harness.data.device_transforms.crop_resize`) computes in integers."""
    if clip.shape[1:3] == (height, width):
        return clip
    # in groups of at most 4 channels: for a box exactly twice the output, OpenCV takes its
    # area path, which rounds ties to even above 4 channels (half up, as here, up to 4)
    groups = [np.ascontiguousarray(clip[..., c : c + 4]) for c in range(0, clip.shape[-1], 4)]
    resized = [_each_frame(g, height, width, cv2.INTER_LINEAR_EXACT) for g in groups]
    return resized[0] if len(resized) == 1 else np.concatenate(resized, axis=-1)


def _each_frame(clip: np.ndarray, height: int, width: int, interpolation: int) -> np.ndarray:
    """`cv2.resize` of every frame of `(T, H, W, C)`, keeping a 1-channel axis."""
    resized = [cv2.resize(f, (width, height), interpolation=interpolation) for f in clip]
    return np.stack(resized).reshape(len(clip), height, width, -1)


def to_tensor(clip: np.ndarray, normalisation: str) -> torch.Tensor:
    """`(T, H, W, C)` uint8 → `(C, T, H, W)` float32, normalised."""
    scale, mean, std = NORMALISATIONS[normalisation]
    tensor = torch.from_numpy(np.ascontiguousarray(clip)).permute(3, 0, 1, 2).float()
    channels = tensor.shape[0]
    mean_t = torch.tensor(mean * (channels // len(mean))).view(-1, 1, 1, 1)
    std_t = torch.tensor(std * (channels // len(std))).view(-1, 1, 1, 1)
    return (tensor * scale - mean_t) / std_t
