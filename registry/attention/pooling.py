"""Global pooling shared by the attention modules.

Average pooling is written with `adaptive_avg_pool*d` on purpose: the `paper` FLOP convention
(`harness.complexity`) counts average-pooling ops at one FLOP per input element, as the EAM
paper's Table 4 implies, and leaves max pooling, sigmoid and element-wise gating free (EAM's
descriptor, mean plus max as one autograd function, `GlobalAvgMaxPool`, counts as the average
pooling it holds). Max pooling is an `amax` reduction, which that convention leaves free too:
the same values as `adaptive_max_pool*d`, and a backward pass CUDA computes deterministically
(adaptive max pooling's accumulates with atomics, so `train.deterministic` could not hold for
EAM, CBAM or AARM).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from registry.errors import ConfigError

_AVG = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}


def global_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """Mean over every axis after the second: `(N, C, ...)` → `(N, C)`."""
    return _AVG[x.dim()](x, 1).flatten(1)


def global_max_pool(x: torch.Tensor) -> torch.Tensor:
    """Maximum over every axis after the second: `(N, C, ...)` → `(N, C)`."""
    return x.amax(dim=tuple(range(2, x.dim())))


class GlobalAvgMaxPool(torch.autograd.Function):
    """`mean(x) + max(x)` over `dims`, EAM's descriptor `GAP_3D + GMP_3D` (EAM eqs. 4–6, 8–10),
    as one function whose backward is two passes over `x` instead of autograd's six: `g/n`
    everywhere plus `g/count` where `x` is its maximum (ties share, as `amax`'s backward does).

    The `paper` FLOP convention counts it as the average pooling it contains, one FLOP per input
    element (`harness.analysis.complexity`), as it counts `adaptive_avg_pool3d`.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
        peak = x.amax(dims, keepdim=True)
        ctx.save_for_backward(x, peak)
        ctx.dims = dims
        return (x.mean(dims, keepdim=True) + peak).flatten(1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        x, peak = ctx.saved_tensors
        at_peak = x == peak
        grad = grad.view(peak.shape)
        ties = at_peak.sum(ctx.dims, keepdim=True, dtype=torch.int32)  # int64 costs a copy
        share = grad / (x.numel() // peak.numel())
        return torch.where(at_peak, share + grad / ties, share), None


def global_avg_max_pool(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """`(N, D)`: mean plus maximum of `x` over `dims`, every axis but the batch and the one
    kept (`GlobalAvgMaxPool`)."""
    return GlobalAvgMaxPool.apply(x, dims)


def broadcastable(weights: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """`(N, C)` weights viewed as `(N, C, 1, …)` to scale a tensor shaped like `like`."""
    return weights.view(*weights.shape, *([1] * (like.dim() - 2)))


def check_odd_kernel(module: str, option: str, value: int, *, channels: int | None = None) -> int:
    """`value`, a kernel size that must be a positive odd integer; for a kernel across
    `channels`, at most 2·channels − 1 (beyond, its extra taps only ever see zero padding)."""
    if value < 1 or value % 2 == 0:
        raise ConfigError(
            f"{module}: option {option}={value} is not allowed; the kernel size must be a positive "
            "odd integer (1, 3, 5, 7, 9, …) so that the convolution keeps every position centred."
        )
    if channels is not None and value > 2 * channels - 1:
        raise ConfigError(
            f"{module}: option {option}={value} is too long for {channels} channels: a kernel "
            f"sliding across them can use {2 * channels - 1} taps at most (the others only ever "
            f"see zero padding); use an odd size up to {2 * channels - 1}."
        )
    return value


def adaptive_eca_kernel(channels: int, gamma: int = 2, b: int = 1) -> int:
    """ECA-Net's eq. 14: k = |log2(C)/γ + b/γ| rounded to the nearest odd integer above."""
    k = int(abs(math.log2(channels) / gamma + b / gamma))
    return k if k % 2 else k + 1
