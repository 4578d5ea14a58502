"""Squeeze-and-Excitation (Hu, Shen and Sun, "Squeeze-and-Excitation Networks", CVPR 2018)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from registry.attention.base import reduced_channels, register_attention
from registry.attention.pooling import broadcastable, global_avg_pool


@register_attention("se", dims=(2, 3))
class SqueezeExcitation(nn.Module):
    """SE channel attention: `x · σ(W2 δ(W1 GAP(x)))` (SE-Net eqs. 2–4).

    The two fully connected layers have no bias: that is what the parameter counts of EAM Table 4
    (+0.69 M on 3D ResNet-50) and AARM Table 6 (+2.51 M on 2D ResNet-50) imply. Works on
    `(N, C, T, H, W)` and `(N, C, H, W)`; shape preserved.
    """

    display_name = "SE"  # as report tables print it

    def __init__(self, channels: int, *, reduction: int = 16) -> None:
        super().__init__()
        hidden = reduced_channels("se", channels, reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        squeezed = global_avg_pool(x)  # (N, C), eq. 2
        weights = torch.sigmoid(self.fc2(F.relu(self.fc1(squeezed))))  # (N, C), eq. 3
        return x * broadcastable(weights, x)  # eq. 4
