"""Efficient Attention Module (Jiang et al., "An Efficient Attention Module for 3D Convolutional
Neural Networks in Action Recognition"; `shared/papers/eam.md` §3).

EAM-S weighs channels (the paper's "spatial attention at the channel level", eqs. 4–7), EAM-T
weighs frames (eqs. 8–11). Both build one descriptor per channel (per frame) from 3D global
average plus 3D global max pooling, then let each position interact with its `k` neighbours through
a 1D convolution without bias and without dimensionality reduction, and gate with a sigmoid.

The paper's `T_trans` (eqs. 1–2) is the swap of the channel and frame axes that lets EAM-T reuse
EAM-S's machinery on frames: here EAM-T applies the same gate with the frame axis as the gated one
(pooling over channels, height and width, as the transposed tensor would be pooled) and scales the
original tensor per frame.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from registry.attention.base import register_attention
from registry.attention.pooling import broadcastable, check_odd_kernel, global_avg_max_pool


class LocalInteractionGate(nn.Module):
    """`w = σ(C1D_k(GAP_3D(V) + GMP_3D(V)))` along `axis` of `V`: eqs. 4–7 on the channel axis
    (1), eqs. 8–11 on the frame axis (2), where pooling over every other axis is what pooling
    `T_trans V` over its last three gives, without the transposed copy.

    Input `(N, C, T, H, W)`, output `(N, D)` weights in (0, 1), `D` the size of `axis`; `k`
    parameters in all.
    """

    def __init__(self, kernel_size: int, axis: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.axis = axis

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        pooled = tuple(d for d in range(1, v.dim()) if d != self.axis)
        descriptor = global_avg_max_pool(v, pooled)  # (N, D): eqs. 4–6 / 8–10
        return torch.sigmoid(self.conv(descriptor.unsqueeze(1)).squeeze(1))  # eq. 7 / 11


@register_attention("eam_s", dims=(3,))
class EAMSpatial(nn.Module):
    """EAM-S (eqs. 4–7): `V' = M_c(V) ⊗ V` with `M_c` from `k_c` neighbouring channels.

    With `residual=True` the output is `V + V'`, the form EAM's eq. 3 gives the whole module (the
    EAM-S row of EAM Table 2 uses it so).
    """

    display_name = "EAM-S"  # as report tables print it

    def __init__(self, channels: int, *, k_c: int = 3, residual: bool = False) -> None:
        super().__init__()
        self.gate = LocalInteractionGate(check_odd_kernel("eam_s", "k_c", k_c, channels=channels))
        self.residual = residual

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        out = v * broadcastable(self.gate(v), v)  # (N, C, T, H, W)
        return v + out if self.residual else out


@register_attention("eam_t", dims=(3,))
class EAMTemporal(nn.Module):
    """EAM-T (eqs. 8–11): `V' = M_t(V) ⊗ V` with `M_t` from `k_t` neighbouring frames.

    With `residual=True` the output is `V + V'` (EAM Table 2's EAM-T row).
    """

    display_name = "EAM-T"  # as report tables print it

    def __init__(self, channels: int, *, k_t: int = 3, residual: bool = False) -> None:
        super().__init__()
        self.gate = LocalInteractionGate(check_odd_kernel("eam_t", "k_t", k_t), axis=2)
        self.residual = residual

    def frame_weights(self, v: torch.Tensor) -> torch.Tensor:
        """`w_t` of eq. 11, `(N, T)`: the temporal attention EAM Fig. 7 plots."""
        return self.gate(v)  # T_trans: frames are the gated axis

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        weights = self.frame_weights(v)  # (N, T)
        out = v * weights[:, None, :, None, None]  # (N, C, T, H, W)
        return v + out if self.residual else out


@register_attention("eam", dims=(3,))
class EAM(nn.Module):
    """EAM (eqs. 1–3): EAM-S and EAM-T combined, plus the module's own residual `V̂ = V + V''`.

    `order` selects EAM Table 2's combinations:

    - ``st`` (default, the paper's choice): `V' = M_c(V) ⊗ V`, `V'' = M_t(V') ⊗ V'` (eqs. 1–2);
    - ``ts``: temporal first, then spatial;
    - ``parallel`` (EAM-S//T): both gates computed from `V` and the two gated maps averaged,
      `V'' = ½ (M_c(V) ⊗ V + M_t(V) ⊗ V)`. The paper only says "parallel with fusion"; the average
      keeps `V''` on the scale of the sequential forms.
    """

    display_name = "EAM"  # as report tables print it

    def __init__(
        self,
        channels: int,
        *,
        k_c: int = 3,
        k_t: int = 3,
        order: Literal["st", "ts", "parallel"] = "st",
    ) -> None:
        super().__init__()
        self.spatial = EAMSpatial(channels, k_c=k_c)
        self.temporal = EAMTemporal(channels, k_t=k_t)
        self.order = order

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        if self.order == "st":
            refined = self.temporal(self.spatial(v))
        elif self.order == "ts":
            refined = self.spatial(self.temporal(v))
        else:
            refined = 0.5 * (self.spatial(v) + self.temporal(v))
        return v + refined  # eq. 3
