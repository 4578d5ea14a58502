"""Third-party attention modules and backbones, registered through Python entry points.

A package adds names to the registries by declaring entry points in its `pyproject.toml`::

    [project.entry-points."harness.attention"]
    my_gate = "my_package.gate:MyGate"          # an nn.Module class

    [project.entry-points."harness.backbones"]
    my_net = "my_package.net:entry"             # a function returning a BackboneEntry

Once the package is installed, its names work in specs, `harness list` and `harness profile`
like built-ins. The contracts are in the README ("Plugins").
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points

from registry.attention.base import ATTENTION, add_attention_class
from registry.backbones import BACKBONES
from registry.backbones.base import BackboneEntry

ATTENTION_GROUP = "harness.attention"
BACKBONE_GROUP = "harness.backbones"


def load_plugins() -> list[str]:
    """Register every installed plugin; returns the names added. A broken plugin is reported on
    stderr and skipped, so one bad package cannot disable the harness."""
    added = []
    for point in entry_points(group=ATTENTION_GROUP):
        added += register_guarded(point, _add_attention)
    for point in entry_points(group=BACKBONE_GROUP):
        added += register_guarded(point, _add_backbone)
    return added


def register_guarded(point, add) -> list[str]:
    """`[add(point.name, loaded object)]`, or `[]` with a warning on stderr when loading or
    registering the entry point fails (used for every plugin group, datasets' included)."""
    try:
        return [add(point.name, point.load())]
    except Exception as error:  # any failure inside third-party code
        print(
            f"warning: plugin {point.name!r} ({point.value}) was not registered: "
            f"{type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return []


def _add_attention(name: str, cls: type) -> str:
    if name in ATTENTION:
        raise ValueError(f"attention {name!r} already exists")
    add_attention_class(name, cls, tuple(getattr(cls, "supported_dims", (3,))))
    return name


def _add_backbone(name: str, factory) -> str:
    entry = factory() if callable(factory) and not isinstance(factory, BackboneEntry) else factory
    if not isinstance(entry, BackboneEntry):
        raise TypeError(f"expected a BackboneEntry, got {type(entry).__name__}")
    if entry.name != name:
        raise ValueError(f"entry point name {name!r} differs from the entry's name {entry.name!r}")
    if name in BACKBONES:
        raise ValueError(f"backbone {name!r} already exists")
    BACKBONES.add(name, entry)
    return name
