"""Everything that can be built: backbones, attention modules, placements.

Public API::

    from registry import build_model
    model = build_model("resnet3d_50", attention="eam", placement="stage_output", num_classes=51)

The names are the values YAML specs use; `list_backbones()`, `list_attention()` and
`list_placements()` enumerate them.
"""

from registry.attention import ATTENTION
from registry.backbones import BACKBONES
from registry.build import ResolvedModel, build_model, resolve_model
from registry.checkpoints import CheckpointError, fitted_state, load_pretrained, read_state_dict
from registry.errors import ConfigError
from registry.placement import WHERE_HELP, InsertionPoint, PlacementRule, parse_placement
from registry.plugins import load_plugins

PLUGINS = load_plugins()


def list_backbones() -> list[str]:
    return BACKBONES.names()


def list_attention() -> list[str]:
    return ATTENTION.names()


def list_placements() -> dict[str, str]:
    return dict(WHERE_HELP)


__all__ = [
    "ATTENTION",
    "BACKBONES",
    "PLUGINS",
    "CheckpointError",
    "ConfigError",
    "InsertionPoint",
    "PlacementRule",
    "ResolvedModel",
    "build_model",
    "fitted_state",
    "list_attention",
    "list_backbones",
    "list_placements",
    "load_pretrained",
    "parse_placement",
    "read_state_dict",
    "resolve_model",
]
