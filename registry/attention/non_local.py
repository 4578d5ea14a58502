"""Non-local block (Wang, Girshick, Gupta and He, "Non-local Neural Networks", CVPR 2018).

Cited by both EAM and AARM as the costly alternative to their light modules; no table of either
paper uses it, so the default follows the authors' official code (facebookresearch/
video-nonlocal-net, `lib/models/nonlocal_helper.py`, `spacetime_nonlocal`, with the defaults of
`lib/core/config.py`), which differs from the paper's Fig. 2 in two details:

- Subsampling (the paper's §3.3: `y_i = 1/C(x̂) Σ_j f(x_i, x̂_j) g(x̂_j)`, x̂ a subsampled x). The
  official code max-pools the input x (1×2×2, stride 1×2×2, no padding, Caffe2's floor output
  size) and applies φ and g to the pooled x (``pool: input``, the default). The paper's Fig. 2
  and the PyTorch port (AlexHex7/Non-local_pytorch) pool φ(x) and g(x) instead
  (``pool: embeddings``); max pooling does not commute with the convolutions, so the two differ,
  and pooling first runs φ and g on a quarter of the positions.
- Scale: the official code multiplies θᵀφ by d^-½ (d = inner channels) before the softmax
  (`NONLOCAL.USE_SCALE = True`; ``scale: true``); the paper's eq. 3 and the port do not
  (``scale: false``).

Pooling rounds down, as Caffe2 and the port do (``ceil_mode: false``); ``ceil_mode: true`` keeps
a last window of one row or column on odd sizes. On an axis of size 1 a 2-wide window has no
room (floor would leave no position): that axis is not pooled, which is also what ceil gives.
This module's earlier form, still reachable, is ``pool: embeddings, scale: false,
ceil_mode: true``; the port is ``pool: embeddings, scale: false``.

Unchanged from the official code: θ, φ, g and W are 1×1×1 convolutions with biases, W is followed
by BatchNorm whose scale starts at zero (the block starts as the identity), and the block adds
its input (eq. 6). The official code initialises θ, φ, g and W from N(0, 0.01²); here they keep
PyTorch's default initialisation.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from registry.attention.base import reduced_channels, register_attention
from registry.errors import ConfigError
from registry.max_pool3d import max_pool3d


@register_attention("nonlocal", dims=(3,))
class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block: `z = W·softmax(θ(x)ᵀφ(x̂)·d^-½)·g(x̂) + x` (Wang et al.
    eqs. 1–3, 6, as the official code computes it), on `(N, C, T, H, W)`.

    θ, φ, g and W are 1×1×1 convolutions with C/`reduction` inner channels. With `subsample`,
    x̂ is x max-pooled 1×2×2 (``pool: input``), or φ(x) and g(x) are pooled (``pool: embeddings``);
    `scale` divides θᵀφ by √d; `ceil_mode` rounds pooled sizes up. W is followed by BatchNorm
    initialised to zero, so a new block starts as the identity.
    """

    display_name = "Non-local"  # as report tables print it

    def __init__(
        self,
        channels: int,
        *,
        reduction: int = 2,
        subsample: bool = True,
        pool: Literal["input", "embeddings"] = "input",
        scale: bool = True,
        ceil_mode: bool = False,
    ) -> None:
        super().__init__()
        inner = reduced_channels("nonlocal", channels, reduction, units="inner channels")
        if pool not in ("input", "embeddings"):
            raise ConfigError(
                f"nonlocal: option pool={pool!r} is not accepted: expected one of input|embeddings."
            )
        self.subsample, self.pool, self.ceil_mode = subsample, pool, ceil_mode
        self.scale = inner**-0.5 if scale else 1.0
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.out = nn.Conv3d(inner, channels, 1)
        self.bn = nn.BatchNorm3d(channels)
        nn.init.zeros_(self.bn.weight)

    def _subsampled(self, x: torch.Tensor) -> torch.Tensor:
        """`x` max-pooled 1×2×2 (stride 1×2×2), leaving an axis of size 1 as it is."""
        if not self.subsample:
            return x
        window = (1, min(2, x.shape[3]), min(2, x.shape[4]))
        return max_pool3d(x, window, stride=window, ceil_mode=self.ceil_mode)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, h, w = x.shape
        theta = self.theta(x).flatten(2).transpose(1, 2)  # (N, THW, C')
        if self.pool == "input":  # official code: φ and g on the pooled input
            pooled = self._subsampled(x)  # (N, C, T, H', W')
            phi, g = self.phi(pooled), self.g(pooled)  # (N, C', T, H', W')
        else:  # paper's Fig. 2: pool φ(x) and g(x)
            phi, g = self._subsampled(self.phi(x)), self._subsampled(self.g(x))
        logits = torch.matmul(theta, phi.flatten(2)) * self.scale  # (N, THW, TH'W')
        affinity = torch.softmax(logits, dim=-1)
        y = torch.matmul(affinity, g.flatten(2).transpose(1, 2))  # (N, THW, C')
        y = y.transpose(1, 2).reshape(n, -1, t, h, w)  # (N, C', T, H, W)
        return x + self.bn(self.out(y))
