"""3D max pooling that stays deterministic on a GPU: the 3D ResNets' stem (Hara et al.), C3D's pools
(Tran et al.) and the non-local block's subsampling (Wang et al.) use it.

CUDA's `max_pool3d` backward adds each window's gradient with atomics: under
`torch.use_deterministic_algorithms` torch 2.11 warns that it has no deterministic kernel (on an
H100, `train.deterministic` steps warned there, and their weights could differ run to run). When
deterministic algorithms are on and the tensor is on CUDA, `max_pool3d` pools each frame's (H, W)
with a 2D max pooling, then T with another. A box's maximum is the maximum over its frames of each
frame's window maximum, and both ways scan (t, h, w) in order and keep the first maximum, so the
values and the element that takes the gradient are the same, ties included. 2D max pooling's CUDA
backward gathers per input element, which is deterministic. Everywhere else it is `F.max_pool3d`, so
the models, their FLOP counts and their weights are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _triple

Size = int | tuple[int, int, int]


def max_pool3d(x: torch.Tensor, kernel_size: Size, stride: Size | None = None,
               padding: Size = 0, ceil_mode: bool = False) -> torch.Tensor:  # fmt: skip
    """`F.max_pool3d(x, ...)`, separable where a deterministic CUDA backward is asked for."""
    if x.is_cuda and torch.are_deterministic_algorithms_enabled():
        return separable_max_pool3d(x, kernel_size, stride, padding, ceil_mode)
    return F.max_pool3d(x, kernel_size, stride, padding, ceil_mode=ceil_mode)


def separable_max_pool3d(x: torch.Tensor, kernel_size: Size, stride: Size | None = None,
                         padding: Size = 0, ceil_mode: bool = False) -> torch.Tensor:  # fmt: skip
    """`(N, C, T, H, W)` max-pooled as `F.max_pool3d` pools it: over each frame's (H, W), then
    over T (the frames' maxima laid out as `(N, C, T, H'·W')`)."""
    kernel, step, pad = _triple(kernel_size), _triple(stride or kernel_size), _triple(padding)
    n, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(n * t, c, h, w)
    frames = F.max_pool2d(frames, kernel[1:], step[1:], pad[1:], ceil_mode=ceil_mode)
    height, width = frames.shape[-2:]
    frames = frames.reshape(n, t, c, height * width).transpose(1, 2)
    pooled = F.max_pool2d(frames, (kernel[0], 1), (step[0], 1), (pad[0], 0), ceil_mode=ceil_mode)
    return pooled.reshape(n, c, pooled.shape[2], height, width)


class MaxPool3d(nn.MaxPool3d):
    """`nn.MaxPool3d` (no dilation, no indices) through `max_pool3d`."""

    def __init__(self, kernel_size: Size, stride: Size | None = None, padding: Size = 0,
                 ceil_mode: bool = False) -> None:  # fmt: skip
        super().__init__(kernel_size, stride, padding, ceil_mode=ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool3d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode)
