"""Non-local block (Wang, Girshick, Gupta and He, "Non-local Neural Networks", CVPR 2018).

Cited by both EAM and AARM as the costly alternative to their light modules.
"""

from __future__ import annotations

import torch
from torch import nn

from registry.attention.base import reduced_channels, register_attention


@register_attention("nonlocal", dims=(3,))
class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block: `z = W·softmax(θ(x)ᵀφ(x))·g(x) + x` (Wang et al. eqs.
    1–3, 6), on `(N, C, T, H, W)`.

    θ, φ, g and W are 1×1×1 convolutions with C/`reduction` inner channels; with `subsample`, φ
    and g are max-pooled 1×2×2 as in the paper. W is followed by BatchNorm initialised to zero, so
    a new block starts as the identity.
    """

    display_name = "Non-local"  # as report tables print it

    def __init__(self, channels: int, *, reduction: int = 2, subsample: bool = True) -> None:
        super().__init__()
        inner = reduced_channels("nonlocal", channels, reduction, units="inner channels")
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.pool = nn.MaxPool3d((1, 2, 2), ceil_mode=True) if subsample else nn.Identity()
        self.out = nn.Conv3d(inner, channels, 1)
        self.bn = nn.BatchNorm3d(channels)
        nn.init.zeros_(self.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (N, THW, C')
        phi = self.pool(self.phi(x)).flatten(2)  # (N, C', THW')
        g = self.pool(self.g(x)).flatten(2).transpose(1, 2)  # (N, THW', C')
        affinity = torch.softmax(torch.matmul(theta, phi), dim=-1)  # (N, THW, THW')
        y = torch.matmul(affinity, g).transpose(1, 2).reshape(n, -1, t, h, w)  # (N, C', T, H, W)
        return x + self.bn(self.out(y))
