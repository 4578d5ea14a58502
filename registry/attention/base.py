"""The attention registry: names → module classes, one class per input dimensionality.

An attention module is an `nn.Module` whose constructor is `Module(channels, *, option=default, …)`
and whose forward maps `(N, C, T, H, W)` (3D backbones) or `(N, C, H, W)` (2D backbones) to a tensor
of the same shape. The keyword-only constructor arguments are the module's options: their type
hints and defaults are what specs are validated against and what `harness list` prints.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from registry.errors import ConfigError
from registry.registry import Registry


@dataclass
class AttentionEntry:
    """A registered attention module: its classes by dimensionality and a one-line description."""

    name: str
    classes: dict[int, type[nn.Module]] = field(default_factory=dict)
    description: str = ""

    def for_dims(self, dims: int, backbone: str) -> type[nn.Module]:
        if dims not in self.classes:
            supported = ", ".join(f"{d}D" for d in sorted(self.classes)) or "none"
            raise ConfigError(
                f"Attention {self.name!r} has no {dims}D version, so it cannot go into backbone "
                f"{backbone!r} ({dims}D); it supports: {supported}."
            )
        return self.classes[dims]

    @property
    def reference_class(self) -> type[nn.Module] | None:
        """The class whose constructor defines the options (the 3D one where there is one)."""
        return self.classes[max(self.classes)] if self.classes else None


ATTENTION: Registry[AttentionEntry] = Registry("attention module")
ATTENTION.add("none", AttentionEntry("none", {}, "no attention (the baseline)"))


def register_attention(name: str, *, dims: tuple[int, ...]) -> Callable[[type], type]:
    """Class decorator: register `cls` as attention `name` for the given input dimensionalities."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        add_attention_class(name, cls, dims)
        return cls

    return add


def add_attention_class(name: str, cls: type[nn.Module], dims: tuple[int, ...]) -> None:
    """Register `cls` under `name` (used by the decorator and by plugins)."""
    entry = ATTENTION.get(name) if name in ATTENTION else None
    if entry is None:
        summary = (cls.__doc__ or "").strip().splitlines()[0] if cls.__doc__ else ""
        entry = AttentionEntry(name, {}, summary)
        ATTENTION.add(name, entry)
    for d in dims:
        if d in entry.classes and entry.classes[d] is not cls:
            raise ConfigError(f"Attention {name!r} already has a {d}D class; names must be unique.")
        entry.classes[d] = cls
