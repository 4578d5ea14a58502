"""A trial: one model of a spec's grid, with every value resolved, and its stable key."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from registry import PlacementRule, ResolvedModel, resolve_model


@dataclass(frozen=True)
class Trial:
    """One model of a spec's grid, with every value resolved."""

    backbone: str
    attention: str
    placement: PlacementRule
    num_classes: int
    frames: int
    size: int
    options: tuple[tuple[str, Any], ...] = ()
    split: int | None = None  # training specs only
    seed: int | None = None

    @property
    def key(self) -> str:
        """A stable, unique, readable identifier, e.g.
        `resnet3d_50-eam-stage_output-f16-s112-c51-k_c=3-split1-seed0` (backbone, attention,
        placement, frames, size, classes, options in name order, then split and seed when the
        spec trains)."""
        parts = [self.backbone, self.attention, self.placement.label, f"f{self.frames}"]
        parts += [f"s{self.size}", f"c{self.num_classes}"]
        parts += [f"{name}={value}" for name, value in self.options]
        if self.split is not None:
            parts += [f"split{self.split}", f"seed{self.seed}"]
        return "-".join(parts)

    @property
    def stream(self) -> str:
        """`rgb`, or `flow` for a 2D model on stacked optical flow (`in_channels` other than 3)."""
        return "rgb" if dict(self.options).get("in_channels", 3) == 3 else "flow"

    def fields(self) -> dict[str, Any]:
        """Axis values as a flat dict (what `include`, `exclude` and `reference` match against),
        plus `stream` (`rgb` | `flow`; `two-stream` for fused rows)."""
        return {
            "backbone": self.backbone,
            "attention": self.attention,
            "placement": self.placement.label,
            "num_classes": self.num_classes,
            "frames": self.frames,
            "size": self.size,
            **dict(self.options),
            "stream": self.stream,
        }

    def resolve(self) -> ResolvedModel:
        return resolve_model(
            self.backbone,
            attention=self.attention,
            placement=self.placement,
            num_classes=self.num_classes,
            **dict(self.options),
        )

    def input_shape(self, resolved: ResolvedModel) -> tuple[int, ...]:
        """The input of one sample: `(C, T, H, W)` for 3D backbones, `(C, H, W)` for 2D."""
        channels = resolved.backbone_options.get("in_channels", resolved.backbone.input_shape[0])
        if resolved.backbone.dims == 3:
            return (channels, self.frames, self.size, self.size)
        return (channels, self.size, self.size)


def matches(fields: Mapping[str, Any], match: Mapping[str, Any]) -> bool:
    """True when every key of `match` is in `fields` with the same value."""
    return all(key in fields and fields[key] == value for key, value in match.items())
