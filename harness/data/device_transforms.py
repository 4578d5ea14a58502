"""Training augmentation on a whole batch, on the device the batch is on (the GPU when training
on one), computing exactly what the per-clip CPU transforms compute.

The crop box and flip of each clip are drawn on the host, by `SpatialTransform.sample` with the
clip's own generator, so the protocol (Hara's scales and corners, or the random resized crop, and
p = 0.5 flips) is the CPU path's; only the pixel work moves. Each op equals its CPU counterpart
bit for bit (`tests/test_clip_cache.py` runs both on the CPU):

- `crop_resize` ≡ crop + `transforms._resize`: OpenCV's `INTER_LINEAR_EXACT`, whose 8-bit
  weights and single rounded sum are reproduced here in int32 arithmetic (integers, so the GPU
  gives the same pixels as the CPU, not merely close ones);
- `flip` ≡ `flip_horizontal`, flow stacks' x channels inverted (`255 − v`) as TSN does;
- `normalise` ≡ `to_tensor`: the same float32 operations in the same order.

Clips travel as `(N, T, H, W, C)` uint8 until `normalise`, which returns `(N, C, T, H, W)` float32.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch

from harness.data.transforms import FLOW_X_CHANNELS, NORMALISATIONS

WEIGHT_ONE = 256  # INTER_LINEAR_EXACT's fixed point: weights in 1/256
ROUNDING = 1 << 15  # half of 256², added before the final shift


def linear_exact_table(source: int, target: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Along one axis of `source` pixels resized to `target`: each output pixel's two source
    indices and the 8-bit weight of the second, as OpenCV's `resize_bitExact` computes them.

    The source coordinate of output pixel p is (2p + 1)·source / (2·target) − 1/2, kept as the
    exact fraction numerator / denominator; its fractional part, ×256, is rounded half to even.
    Coordinates left of the first pixel or right of the last clamp to that pixel (weight 0).
    """
    position = np.arange(target, dtype=np.int64)
    numerator = (2 * position + 1) * source - target
    denominator = 2 * target
    first = np.floor_divide(numerator, denominator)
    scaled = np.mod(numerator, denominator) * WEIGHT_ONE
    quotient, remainder = np.divmod(scaled, denominator)
    half = 2 * remainder == denominator
    weight = quotient + ((2 * remainder > denominator) | (half & (quotient % 2 == 1)))
    second = first + 1
    before, after = first < 0, first >= source - 1
    first[before], second[before], weight[before] = 0, 0, 0
    first[after], second[after], weight[after] = source - 1, source - 1, 0
    return first, second, weight


def _tables(boxes: Sequence[Sequence[int]], size: int, axis: int, device: torch.device):
    """Per clip, absolute source indices and weights along `axis` (0: rows, 1: columns) of
    its box resized to `size`: three `(N, size)` tensors."""
    columns = []
    for box in boxes:
        start, extent = box[axis], box[2 + axis]
        first, second, weight = linear_exact_table(int(extent), size)
        columns.append((first + start, second + start, weight))
    return [_to_device(torch.from_numpy(np.stack(part)), device)
            for part in zip(*columns, strict=True)]  # fmt: skip


def _to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A host tensor on `device` without waiting for the device's queued work: a copy from
    pageable memory can wait for the stream, one from pinned memory does not."""
    if device.type == "cuda" and tensor.device.type == "cpu" and not tensor.is_pinned():
        tensor = tensor.pin_memory()
    return tensor.to(device, non_blocking=True)


@functools.cache
def _statistics(normalisation: str, channels: int, device: torch.device):
    """The normalisation's mean and std per channel, `(1, C, 1, 1, 1)` on `device`, made once
    (a tensor made on the GPU per batch would make the host wait for the step before it)."""
    _, mean, std = NORMALISATIONS[normalisation]
    repeat = channels // len(mean)
    made = [torch.tensor(values * repeat).view(1, -1, 1, 1, 1) for values in (mean, std)]
    return [_to_device(tensor, device) for tensor in made]


def crop_resize(frames: torch.Tensor, boxes: Sequence[Sequence[int]], size: int) -> torch.Tensor:
    """Each clip's `(top, left, height, width)` box resized to `size`², bilinear as
    `INTER_LINEAR_EXACT`: `(N, T, H, W, C)` uint8 → `(N, T, size, size, C)` uint8.

    Rows are combined first and columns second, in integers: the sum is the one OpenCV rounds
    (p = (Σ_y w_y Σ_x w_x s + 2¹⁵) >> 16, all weights in 1/256), whatever the order.
    """
    count = frames.shape[0]
    top, bottom, row_weight = _tables(boxes, size, 0, frames.device)
    left, right, column_weight = _tables(boxes, size, 1, frames.device)
    clips = torch.arange(count, device=frames.device)[:, None]  # (N, 1)
    by_row = frames.permute(0, 2, 3, 1, 4)  # (N, H, W, T, C), a view
    upper, lower = by_row[clips, top].int(), by_row[clips, bottom].int()  # (N, S, W, T, C)
    row_weight = row_weight.int().view(count, size, 1, 1, 1)
    rows = upper * (WEIGHT_ONE - row_weight) + lower * row_weight  # (N, S, W, T, C)
    out_rows = torch.arange(size, device=frames.device)[None, :, None]  # (1, S, 1)
    first = rows[clips[:, :, None], out_rows, left[:, None]]  # (N, S, S, T, C)
    second = rows[clips[:, :, None], out_rows, right[:, None]]
    column_weight = column_weight.int().view(count, 1, size, 1, 1)
    summed = first * (WEIGHT_ONE - column_weight) + second * column_weight + ROUNDING
    return (summed >> 16).to(torch.uint8).permute(0, 3, 1, 2, 4)  # (N, T, S, S, C)


def flip(frames: torch.Tensor, flips: torch.Tensor, *, flow: bool) -> torch.Tensor:
    """Mirror the clips where `flips` (N,) is true; for flow stacks also invert their x
    channels (`transforms.flip_horizontal`)."""
    mirrored = frames.flip(3)
    if flow:
        mirrored = mirrored.clone()
        mirrored[..., FLOW_X_CHANNELS] = 255 - mirrored[..., FLOW_X_CHANNELS]
    chosen = _to_device(flips, frames.device).view(-1, 1, 1, 1, 1)
    return torch.where(chosen, mirrored, frames)


def normalise(frames: torch.Tensor, normalisation: str) -> torch.Tensor:
    """`(N, T, H, W, C)` uint8 → `(N, C, T, H, W)` float32, as `to_tensor` does per clip."""
    scale = NORMALISATIONS[normalisation][0]
    tensor = frames.permute(0, 4, 1, 2, 3).float()
    mean, std = _statistics(normalisation, tensor.shape[1], frames.device)
    return (tensor * scale - mean) / std


def augment(batch: dict, *, size: int, normalisation: str, device: torch.device,
            flow: bool = False) -> torch.Tensor:  # fmt: skip
    """A host batch of uncropped windows (`ClipBatches`: `frames`, `boxes`, `flips`) as the
    network's input on `device`: crop and resize, flip, normalise."""
    frames = batch["frames"].to(device, non_blocking=True)
    resized = crop_resize(frames, batch["boxes"].tolist(), size)
    return normalise(flip(resized, batch["flips"], flow=flow), normalisation)
