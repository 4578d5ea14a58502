"""What every backbone declares: how to build it and where attention modules can go."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from registry.placement import InsertionPoint

# Given an insertion point's name, a fresh attention module for it, or None where the placement
# puts nothing. Backbones call it while they build, so no module is patched in afterwards.
AttentionAt = Callable[[str], nn.Module | None]


def no_attention(point: str) -> None:
    """The `AttentionAt` of a plain backbone."""
    return None


@dataclass(frozen=True)
class BackboneEntry:
    """A registered backbone.

    `build(num_classes=..., attention_at=..., **options)` returns the network; `points(**options)`
    lists its insertion points without building anything. `input_shape` is the per-sample input
    the papers use, `(C, T, H, W)` for 3D and `(C, H, W)` for 2D backbones; `classifier` is the
    prefix of the layer that fine-tuning replaces.
    """

    name: str
    build: Callable[..., nn.Module]
    points: Callable[..., tuple[InsertionPoint, ...]]
    dims: int
    input_shape: tuple[int, ...]
    classifier: str
    description: str
