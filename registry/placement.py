"""Placements: where in a backbone attention modules go, written as data.

A placement is a readable rule such as ``{where: stage_output, stages: [res3, res4]}``. The pure
function `expand_placement` turns it into the explicit list of insertion points it selects on one
backbone, checked against the points that backbone declares. Backbones declare their points;
attention modules never know where they sit.

Rules (the `where` values):

- ``none``: no attention anywhere.
- ``stage_output``: one module at the output of each selected stage. EAM Tables 3 and 4 insert every
  attention module "into all the stages" this way.
- ``block``: one module inside every residual block of the selected stages, applied to the residual
  branch before the addition (the SE-Net / CBAM arrangement; AARM puts CAM and STAM there too).

A spec may write a rule as a bare string (``stage_output``: all stages) or as a mapping with `where`
and an optional `stages` list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from registry.errors import ConfigError

WHERE_CHOICES = ("none", "stage_output", "block")
WHERE_HELP = {
    "none": "no attention module",
    "stage_output": "one module at the output of each selected stage (EAM Tables 3-4)",
    "block": "one module in every residual block of the selected stages, before the addition",
}


@dataclass(frozen=True)
class InsertionPoint:
    """A place a backbone can host an attention module, e.g. ``res3.out`` or ``res3.block2``."""

    name: str
    where: str
    stage: str
    channels: int


@dataclass(frozen=True)
class PlacementRule:
    """Which insertion points to use: a kind of point and, optionally, a subset of stages."""

    where: str = "none"
    stages: tuple[str, ...] | None = None

    @property
    def label(self) -> str:
        """A short name for tables and run names: ``stage_output``, ``block[res3,res4]``."""
        if self.stages is None or self.where == "none":
            return self.where
        return f"{self.where}[{','.join(self.stages)}]"

    def as_dict(self) -> dict[str, object]:
        return {"where": self.where, "stages": list(self.stages) if self.stages else None}


def parse_placement(value: object) -> PlacementRule:
    """Read a rule from a spec value: a string, a mapping, or an existing rule."""
    if isinstance(value, PlacementRule):
        return value
    if isinstance(value, str):
        return _checked_rule(value, None, value)
    if isinstance(value, Mapping):
        unknown = set(value) - {"where", "stages"}
        if unknown:
            raise ConfigError(
                f"Placement {dict(value)!r} has unknown key(s) {sorted(unknown)}; "
                "a placement mapping takes 'where' and optionally 'stages'."
            )
        stages = value.get("stages")
        if stages is not None:
            if isinstance(stages, str):
                stages = [stages]
            if not isinstance(stages, Sequence) or not all(isinstance(s, str) for s in stages):
                raise ConfigError(
                    f"Placement {dict(value)!r}: 'stages' must be a list of stage names "
                    "such as [res2, res3]."
                )
            stages = tuple(stages)
        return _checked_rule(value.get("where", "stage_output"), stages, dict(value))
    raise ConfigError(
        f"Placement {value!r} is not a rule: write one of {', '.join(WHERE_CHOICES)} or a mapping "
        "like {where: stage_output, stages: [res3, res4]}."
    )


def _checked_rule(where: object, stages: tuple[str, ...] | None, shown: object) -> PlacementRule:
    if where not in WHERE_CHOICES:
        raise ConfigError(
            f"Unknown placement {shown!r}: 'where' must be one of {', '.join(WHERE_CHOICES)}."
        )
    if stages is not None and len(stages) == 0:
        raise ConfigError(f"Placement {shown!r} lists no stages; leave 'stages' out for all.")
    if stages is not None and len(set(stages)) != len(stages):
        raise ConfigError(f"Placement {shown!r} lists a stage twice; name each stage once.")
    return PlacementRule(str(where), stages)


def expand_placement(
    rule: PlacementRule, points: Sequence[InsertionPoint], *, backbone: str
) -> list[InsertionPoint]:
    """The explicit, ordered list of insertion points `rule` selects among `points`.

    Raises `ConfigError` naming the backbone's available points when the rule asks for a stage or
    a kind of point the backbone does not have.
    """
    if rule.where == "none":
        return []
    of_kind = [p for p in points if p.where == rule.where]
    stages = list(dict.fromkeys(p.stage for p in of_kind))
    if not of_kind:
        raise ConfigError(_impossible(rule, backbone, points, f"no '{rule.where}' points"))
    wanted = rule.stages if rule.stages is not None else stages
    missing = [s for s in wanted if s not in stages]
    if missing:
        raise ConfigError(
            _impossible(rule, backbone, points, f"no '{rule.where}' point in stage(s) {missing}")
        )
    return [p for p in of_kind if p.stage in wanted]


def _impossible(
    rule: PlacementRule, backbone: str, points: Sequence[InsertionPoint], why: str
) -> str:
    # classifier-side points ("head") are taken by modules such as VCM, never by a placement
    available = ", ".join(p.name for p in points if p.where in WHERE_CHOICES) or "none"
    return (
        f"Placement {rule.label!r} is impossible on backbone {backbone!r}: it has {why}. "
        f"Available insertion points: {available}."
    )
