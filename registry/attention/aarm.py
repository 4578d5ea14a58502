"""Action Attention Recalibration Module (Li et al., "AARM", `shared/papers/aarm.md` §3).

AARM has three parts: CAM (channel attention, eq. 3) and STAM (spatial-temporal attention with a
highlight/dropout mechanism, eq. 4) in every convolutional block, fused in parallel (eqs. 1, 5) or
sequentially (AARM Table 1), and VCM (eq. 6), which recalibrates the activations of the fully
connected classifier.

Readings where the paper is open, each kept as an option:

- Fusion convolution (eq. 5, "concatenation then 1×1 convolution"): a full 2C→C convolution would
  add 40 M parameters to ResNet-50, against the +0.03 M that AARM Table 6 implies beyond SE. The
  default ``fusion_conv: channelwise`` therefore mixes each channel's CAM and STAM outputs only
  (a grouped 1×1 convolution, 2 weights per channel); ``full`` is the literal dense reading.
  Both start as the average of the two maps, so a pretrained network begins undisturbed.
- VCM's position ("after the fully connected layer"): ``vcm_position: logits`` (default) reweights
  the final layer's outputs, u = number of classes, 10 k parameters on UCF101 as Table 6 allows;
  ``features`` reweights the pooled features before the final layer instead. Its layer has no
  bias, as eq. 6 writes it (`σ(W M)`): u² parameters.
- STAM's three 3×3 convolutions (2D) and its 1×7×7 → 7×1×1 pair (3D) map one channel to one
  channel with no bias and no nonlinearity in between, as eq. 4 writes them.
- The highlight map (eq. 4): `threshold(m) = 1 where m ≥ η·max(M)`, else 0, applied, as eq. 4
  writes it, to `F'_ST(M)`, the convolutions' output before the sigmoid, with max(M) taken per
  sample (``highlight_on: logits``, the default). Where the peak is negative the literal rule is
  empty: η·max(M) then lies above the peak, so no position is highlighted for any η < 1, while
  the paper's highlighted map "is emphasized the most discriminative parts" (§3.2). The threshold
  is therefore `min(η·max(M), max(M))`: the literal rule wherever the peak is 0 or above, the
  peak position(s) alone where it is negative. ``highlight_on: sigmoid`` thresholds σ(F'_ST(M))
  instead, the reading this module used before: σ is positive, so η·max is a fraction of the
  peak, but σ flattens the map (with a peak of 10, σ(m) ≥ 0.9·σ(10) for every m ≥ 2.2) and so
  keeps far more positions. At η = 0.9, on the 16 STAM maps of a freshly initialised ResNet-50 +
  AARM on noise (4 × 224²): 1.6 % of the positions on the logits, 81 % on σ.
- The highlight map is chosen instead of the sigmoid map with probability χ per forward call, in
  training only; evaluation always uses the sigmoid map. The highlight map has no gradient, so a
  step that picks it leaves STAM's convolutions out of the graph; the module declares this
  (`may_skip_parameters`) and DDP then detects unused parameters.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from registry.attention.base import reduced_channels, register_attention
from registry.attention.pooling import broadcastable, global_avg_pool, global_max_pool
from registry.errors import ConfigError


def _check_fraction(option: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"aarm: option {option}={value} must lie in [0, 1].")
    return value


def highlight_map(scores: torch.Tensor, eta: float) -> torch.Tensor:
    """AARM eq. 4's `threshold`: 1 where `m ≥ η·max(M)`, else 0, with max(M) the peak of each
    sample of `scores` `(N, 1, [T,] H, W)`. The threshold is `min(η·max, max)`, so the peak is
    always kept: the literal rule when the peak is 0 or above; on a map whose peak is negative,
    where η·max would lie above every value and select nothing, the peak position(s) alone."""
    peak = scores.flatten(1).amax(dim=1).view(-1, *([1] * (scores.dim() - 1)))  # (N, 1, …)
    return (scores >= torch.minimum(eta * peak, peak)).to(scores.dtype)


@register_attention("cam", dims=(2, 3))
class ChannelAttentionModule(nn.Module):
    """CAM (AARM eq. 3): `F_ch(M) = σ(W2 δ(W1 (α·AvgPool(M) + (1-α)·MaxPool(M))))`, applied as
    `M ⊗ F_ch(M)`. Bias-free layers, hidden width C/r."""

    display_name = "CAM"  # as report tables print it

    def __init__(self, channels: int, *, alpha: float = 0.5, reduction: int = 16) -> None:
        super().__init__()
        self.alpha = _check_fraction("alpha", alpha)
        hidden = reduced_channels("cam", channels, reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, channels, bias=False)

    def attention_map(self, m: torch.Tensor) -> torch.Tensor:
        """`F_ch(M)`, `(N, C, 1, …)`."""
        mixed = self.alpha * global_avg_pool(m) + (1 - self.alpha) * global_max_pool(m)  # (N, C)
        return broadcastable(torch.sigmoid(self.fc2(torch.relu(self.fc1(mixed)))), m)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return m * self.attention_map(m)


class _STAMBase(nn.Module):
    """STAM (AARM eq. 4): a one-channel map from channel-wise mixed pooling, refined by
    convolutions, normalised by a sigmoid, or replaced by its highlight map with probability χ
    during training (thresholded before the sigmoid, or after it with ``highlight_on: sigmoid``).
    """

    dims = 2
    display_name = "STAM"  # as report tables print it

    def __init__(
        self,
        channels: int,
        *,
        alpha: float = 0.5,
        eta: float = 0.9,
        chi: float = 0.25,
        highlight_on: Literal["logits", "sigmoid"] = "logits",
    ) -> None:
        super().__init__()
        self.alpha = _check_fraction("alpha", alpha)
        self.eta = _check_fraction("eta", eta)
        self.chi = _check_fraction("chi", chi)
        if highlight_on not in ("logits", "sigmoid"):
            raise ConfigError(
                f"stam: option highlight_on={highlight_on!r} is not accepted: "
                "expected one of logits|sigmoid."
            )
        self.highlight_on = highlight_on
        self.convs = self._make_convs()

    @property
    def may_skip_parameters(self) -> bool:
        """True when a training step can take the highlight branch, which leaves the
        convolutions out of the graph: DDP must then look for unused parameters."""
        return self.chi > 0

    def _make_convs(self) -> nn.Sequential:
        return nn.Sequential(*(nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(3)))

    def attention_map(self, m: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """`F_st(M)`, `(N, 1, [T,] H, W)`, and whether the highlight map was picked."""
        pooled = self.alpha * m.mean(dim=1, keepdim=True) + (1 - self.alpha) * m.amax(
            dim=1, keepdim=True
        )  # channel-wise mixed pooling, (N, 1, [T,] H, W)
        logits = self.convs(pooled)  # F'_ST(M), before the sigmoid
        if self.training and self.chi > 0 and torch.rand(()).item() < self.chi:
            scores = logits if self.highlight_on == "logits" else torch.sigmoid(logits)
            return highlight_map(scores, self.eta), True
        return torch.sigmoid(logits), False

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return m * self.attention_map(m)[0]


@register_attention("stam", dims=(2,))
class STAM2d(_STAMBase):
    """STAM on `(N, C, H, W)`: three consecutive 3×3 convolutions on the pooled map."""


@register_attention("stam", dims=(3,))
class STAM3d(_STAMBase):
    """STAM on `(N, C, T, H, W)`: a (2+1)D pair, 1×7×7 then 7×1×1, on the pooled map."""

    dims = 3

    def _make_convs(self) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv3d(1, 1, (1, 7, 7), padding=(0, 3, 3), bias=False),
            nn.Conv3d(1, 1, (7, 1, 1), padding=(3, 0, 0), bias=False),
        )


class ParallelFusion(nn.Module):
    """AARM eq. 5: `Y = conv1×1([M_ch, M_st])`, channelwise (2 weights per channel) or full."""

    def __init__(self, channels: int, dims: int, mode: str) -> None:
        super().__init__()
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        groups = channels if mode == "channelwise" else 1
        self.conv = conv(2 * channels, channels, 1, groups=groups, bias=False)
        with torch.no_grad():  # start as the average of the two recalibrated maps
            weight = self.conv.weight.view(channels, -1)
            weight.zero_()
            if mode == "channelwise":
                weight.fill_(0.5)
            else:
                index = torch.arange(channels)
                weight[index, 2 * index] = 0.5
                weight[index, 2 * index + 1] = 0.5

    def forward(self, m_ch: torch.Tensor, m_st: torch.Tensor) -> torch.Tensor:
        # interleave so that input channels (2c, 2c+1) are channel c's CAM and STAM outputs
        return self.conv(torch.stack([m_ch, m_st], dim=2).flatten(1, 2))


class VideoContextModule(nn.Module):
    """VCM (AARM eq. 6): `M' = σ(W M) ⊗ M` on an activation vector `(N, u)`; W is u×u with no
    bias, as eq. 6 writes it (u² parameters)."""

    def __init__(self, units: int) -> None:
        super().__init__()
        self.fc = nn.Linear(units, units, bias=False)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        return m * torch.sigmoid(self.fc(m))


class _AARMBase(nn.Module):
    """AARM in a convolutional block: CAM and STAM, fused (eq. 1); VCM goes at the classifier.

    Parts are switchable for AARM Table 1's ablation (`cam`, `stam`, `vcm`); `fusion` is
    ``parallel`` (the paper's proposal, eq. 5) or ``sequential`` (CAM then STAM, Table 1). With
    `cam` and `stam` both off the block part is the identity (VCM alone).
    """

    dims = 2
    display_name = "AARM"  # as report tables print it
    stam_class: type[_STAMBase] = STAM2d

    def __init__(
        self,
        channels: int,
        *,
        cam: bool = True,
        stam: bool = True,
        vcm: bool = True,
        fusion: Literal["parallel", "sequential"] = "parallel",
        fusion_conv: Literal["channelwise", "full"] = "channelwise",
        vcm_position: Literal["logits", "features"] = "logits",
        alpha: float = 0.5,
        reduction: int = 16,
        eta: float = 0.9,
        chi: float = 0.25,
        highlight_on: Literal["logits", "sigmoid"] = "logits",
    ) -> None:
        super().__init__()
        if not (cam or stam or vcm):
            raise ConfigError("aarm: cam, stam and vcm are all off; enable at least one part.")
        self.cam = (
            ChannelAttentionModule(channels, alpha=alpha, reduction=reduction) if cam else None
        )
        self.stam = (
            self.stam_class(channels, alpha=alpha, eta=eta, chi=chi, highlight_on=highlight_on)
            if stam
            else None
        )
        parallel = cam and stam and fusion == "parallel"
        self.fuse = ParallelFusion(channels, self.dims, fusion_conv) if parallel else None

    @staticmethod
    def head_point(*, vcm: bool = True, vcm_position: str = "logits", **_: Any) -> str | None:
        """The classifier-side insertion point VCM needs, if enabled."""
        return f"head.{vcm_position}" if vcm else None

    @staticmethod
    def build_head(units: int, **_: Any) -> nn.Module:
        return VideoContextModule(units)

    def forward(self, m: torch.Tensor) -> torch.Tensor:
        if self.cam is None and self.stam is None:
            return m
        if self.cam is None:
            return self.stam(m)
        m_ch = self.cam(m)  # M_ch = F_ch(M) ⊗ M
        if self.stam is None:
            return m_ch
        if self.fuse is None:  # sequential: STAM on CAM's output
            return self.stam(m_ch)
        return self.fuse(m_ch, self.stam(m))  # Y = Fuse(M_ch, M_st), eqs. 1 and 5


@register_attention("aarm", dims=(2,))
class AARM2d(_AARMBase):
    """AARM (Li et al.): CAM + STAM in every block, fused; VCM after the classifier."""


@register_attention("aarm", dims=(3,))
class AARM3d(_AARMBase):
    """AARM on 3D backbones: CAM + (2+1)D STAM in every block, fused; VCM after the classifier."""

    dims = 3
    stam_class = STAM3d
