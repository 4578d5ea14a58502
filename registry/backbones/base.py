"""What every backbone declares: how to build it and where attention modules can go."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from registry.placement import InsertionPoint

# Given an insertion point's name, a fresh attention module for it, or None where the placement
# puts nothing. Backbones call it while they build, so no module is patched in afterwards.
AttentionAt = Callable[[str], nn.Module | None]


def no_attention(point: str) -> None:
    """The `AttentionAt` of a plain backbone."""
    return None


def head_points(features: int, num_classes: int) -> tuple[InsertionPoint, ...]:
    """The two classifier-side points every built-in backbone offers to modules such as AARM's
    VCM: the pooled feature vector before the final layer, and the logits after it."""
    return (
        InsertionPoint("head.features", "head", "head", features),
        InsertionPoint("head.logits", "head", "head", num_classes),
    )


class HeadAttention(nn.Module):
    """Optional recalibration around the final classifier layer.

    `(N, F)` pooled features → [module at ``head.features``] → classifier → [module at
    ``head.logits``] → `(N, num_classes)`. Empty unless an attention module asks for a head point.
    """

    def __init__(self, attention_at: AttentionAt) -> None:
        super().__init__()
        self.features = attention_at("head.features")
        self.logits = attention_at("head.logits")

    def forward(self, pooled: torch.Tensor, classifier: nn.Module) -> torch.Tensor:
        if self.features is not None:
            pooled = self.features(pooled)
        logits = classifier(pooled)
        if self.logits is not None:
            logits = self.logits(logits)
        return logits


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone: how to build it, and what the rest of the harness needs to know
    about it (so no table elsewhere keys on its name).

    `build(num_classes=..., attention_at=..., **options)` returns the network;
    `points(num_classes=..., **options)` lists its insertion points without building anything.
    `input_shape` is the per-sample input the papers use, `(C, T, H, W)` for 3D and `(C, H, W)`
    for 2D backbones; `classifier` is the prefix of the layer that fine-tuning replaces and
    `first_conv` the prefix of the input convolution (adapted when a flow stream loads RGB
    weights).

    The last four fields have defaults, so an entry that leaves them out still works:

    - `display_name`: the name a paper's table prints ("3D ResNet-50", "VGG16"); reports use it.
      Left empty, it is the registry `name`.
    - `fixed_input`: the per-sample input shape the network requires when it cannot take any
      other (C3D's fully connected `fc6` needs the 16×112×112 clip: `(3, 16, 112, 112)`); `None`
      where global pooling accepts any size. Smoke runs and tests feed fixed-input backbones
      exactly this shape.
    - `min_side`: the smallest crop side the network takes where global pooling does not save
      a smaller one (VGG16's five 2×2 max pools: 32); 1 where any side works. Specs with a
      smaller `size` are refused when they load, not when their trials reach the network.
    - `gradcam_layer`: the dotted name (as in `model.named_modules()`) of the module whose
      forward output is the last spatial feature map before pooling, `(N, K, T', H', W')` or
      `(N, K, H', W')`: what Grad-CAM reads. Empty when the backbone offers none; Grad-CAM is
      then not drawn for it.
    """

    name: str
    build: Callable[..., nn.Module]
    points: Callable[..., tuple[InsertionPoint, ...]]
    dims: int
    input_shape: tuple[int, ...]
    classifier: str
    description: str
    first_conv: str = ""
    display_name: str = ""
    fixed_input: tuple[int, ...] | None = None
    gradcam_layer: str = ""
    min_side: int = 1

    def __post_init__(self) -> None:
        if not self.display_name:  # frozen: set the default through object.__setattr__
            object.__setattr__(self, "display_name", self.name)
