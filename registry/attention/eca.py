"""Efficient Channel Attention (Wang et al., "ECA-Net", CVPR 2020)."""

from __future__ import annotations

import torch
from torch import nn

from registry.attention.base import register_attention
from registry.attention.pooling import (
    adaptive_eca_kernel,
    broadcastable,
    check_odd_kernel,
    global_avg_pool,
)


@register_attention("eca", dims=(2, 3))
class EfficientChannelAttention(nn.Module):
    """ECA: `x · σ(C1D_k(GAP(x)))`, a 1D convolution across neighbouring channels (ECA-Net eq. 12).

    `k_size` fixes the kernel; left as `None` it is adapted to the channel count by ECA-Net's
    eq. 14 (γ=2, b=1: 5 for 256 channels, 7 for 2048). No dimensionality reduction, no bias.
    """

    display_name = "ECA"  # as report tables print it

    def __init__(self, channels: int, *, k_size: int | None = None) -> None:
        super().__init__()
        k = adaptive_eca_kernel(channels) if k_size is None else k_size
        check_odd_kernel("eca", "k_size", k, channels=channels)
        self.conv = nn.Conv1d(1, 1, k, padding=k // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        descriptor = global_avg_pool(x)  # (N, C)
        weights = torch.sigmoid(self.conv(descriptor.unsqueeze(1)).squeeze(1))  # (N, C)
        return x * broadcastable(weights, x)
