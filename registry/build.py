"""`build_model`: a backbone × attention × placement, built from names and plain options."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from registry.attention import ATTENTION, AttentionEntry
from registry.backbones import BACKBONES, BackboneEntry
from registry.checkpoints import load_pretrained
from registry.errors import ConfigError
from registry.options import check_options, check_value, describe_options, options_of
from registry.placement import InsertionPoint, PlacementRule, expand_placement, parse_placement


@dataclass(frozen=True)
class ResolvedModel:
    """A request checked against the registries, before any weights exist.

    `points` is the explicit list of insertion points the placement expands to; `head` is the
    classifier-side point an attention module may also ask for (AARM's VCM). Both are logged.
    """

    backbone: BackboneEntry
    attention: AttentionEntry
    placement: PlacementRule
    points: tuple[InsertionPoint, ...]
    num_classes: int
    backbone_options: dict[str, Any] = field(default_factory=dict)
    attention_options: dict[str, Any] = field(default_factory=dict)
    head: InsertionPoint | None = None

    @property
    def point_names(self) -> list[str]:
        """Every insertion point that receives a module, in order (what a run logs)."""
        return [p.name for p in self.points] + ([self.head.name] if self.head else [])

    def build(self) -> nn.Module:
        """The network, freshly initialised, with one attention module at each point."""
        attention_cls = (
            self.attention.for_dims(self.backbone.dims, self.backbone.name) if self.points else None
        )
        selected = {p.name: p for p in self.points}
        if self.head is not None:
            selected[self.head.name] = self.head
        placed: list[str] = []

        def attention_at(point: str) -> nn.Module | None:
            if point not in selected:
                return None
            placed.append(point)
            if self.head is not None and point == self.head.name:
                return attention_cls.build_head(self.head.channels, **self.attention_options)
            return attention_cls(selected[point].channels, **self.attention_options)

        model = self.backbone.build(
            num_classes=self.num_classes, attention_at=attention_at, **self.backbone_options
        )
        if sorted(placed) != sorted(selected):
            raise RuntimeError(
                f"Backbone {self.backbone.name!r} declares insertion points it does not build: "
                f"asked for {sorted(selected)}, placed {sorted(placed)}."
            )
        model.classifier_path = self.backbone.classifier  # for who must find it (bf16's fp32 head)
        return model


def resolve_model(
    backbone: str,
    *,
    attention: str = "none",
    placement: object = "none",
    num_classes: int,
    **options: Any,
) -> ResolvedModel:
    """Check a request against the registries and expand its placement, without building."""
    backbone_entry = BACKBONES.get(backbone)
    attention_entry = ATTENTION.get(attention)
    check_value("num_classes", int, num_classes)
    if num_classes < 1:
        raise ConfigError(f"num_classes = {num_classes}: expected a positive number of classes.")
    backbone_options, attention_options = _split_options(backbone_entry, attention_entry, options)
    rule = parse_placement(placement)
    points: tuple[InsertionPoint, ...] = ()
    head = None
    if attention != "none":
        if rule.where == "none":
            raise ConfigError(
                f"Attention {attention!r} needs a placement, but placement is 'none'. Use "
                "stage_output, block, or a mapping like {where: stage_output, stages: [res4]}."
            )
        attention_cls = attention_entry.for_dims(backbone_entry.dims, backbone)
        available = backbone_entry.points(num_classes=num_classes, **backbone_options)
        points = tuple(expand_placement(rule, available, backbone=backbone))
        attention_cls(points[0].channels, **attention_options)  # values checked by the module
        head = _head_point(attention_cls, attention_options, available, backbone)
    return ResolvedModel(
        backbone_entry,
        attention_entry,
        rule,
        points,
        num_classes,
        backbone_options,
        attention_options,
        head,
    )


def _head_point(
    attention_cls: type[nn.Module],
    options: Mapping[str, Any],
    available: tuple[InsertionPoint, ...],
    backbone: str,
) -> InsertionPoint | None:
    """The classifier-side point a module asks for through `head_point(**options)`, if any."""
    asked = getattr(attention_cls, "head_point", lambda **_: None)(**options)
    if asked is None:
        return None
    for point in available:
        if point.name == asked:
            return point
    raise ConfigError(
        f"Backbone {backbone!r} has no classifier-side point {asked!r}, which this attention "
        f"module needs; its points: {', '.join(p.name for p in available if p.where == 'head')}."
    )


def build_model(
    backbone: str,
    *,
    attention: str = "none",
    placement: object = "none",
    num_classes: int,
    pretrained: str | Path | None = None,
    **options: Any,
) -> nn.Module:
    """Build `backbone` with `attention` modules where `placement` puts them.

    `options` are routed by name to the backbone (e.g. `shortcut`) or to the attention module
    (e.g. `k_c`, `reduction`). With `pretrained`, a released checkpoint is loaded strictly into
    everything but the classifier (replaced for `num_classes`) and the attention modules (new).
    Unknown names, wrong option types and impossible placements raise `ConfigError`.
    """
    resolved = resolve_model(
        backbone, attention=attention, placement=placement, num_classes=num_classes, **options
    )
    model = resolved.build()
    if pretrained is not None:
        backbone_entry = resolved.backbone
        load_pretrained(
            model,
            pretrained,
            classifier=backbone_entry.classifier,
            first_conv=backbone_entry.first_conv,
        )
    return model


def _split_options(
    backbone: BackboneEntry, attention: AttentionEntry, options: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    backbone_declared = options_of(backbone.build)
    attention_declared = options_of(attention.reference_class)
    for_backbone = {k: v for k, v in options.items() if k in backbone_declared}
    for_attention = {k: v for k, v in options.items() if k not in backbone_declared}
    if for_attention and attention.name == "none":
        raise ConfigError(
            f"Option(s) {sorted(for_attention)} belong to no component: attention is 'none' and "
            f"backbone {backbone.name!r} accepts only "
            f"{', '.join(backbone_declared) or 'no options'}."
        )
    unknown = sorted(set(for_attention) - set(attention_declared))
    if unknown:
        raise ConfigError(
            f"Unknown option(s) {unknown} for backbone {backbone.name!r} with attention "
            f"{attention.name!r}. Backbone options: {describe_options(backbone_declared)}; "
            f"attention options: {describe_options(attention_declared)}."
        )
    return (
        check_options(f"Backbone {backbone.name!r}", backbone_declared, for_backbone),
        check_options(f"Attention {attention.name!r}", attention_declared, for_attention),
    )
