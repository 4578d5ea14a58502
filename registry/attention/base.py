"""The attention registry: names → module classes, one class per input dimensionality.

An attention module is an `nn.Module` whose constructor is `Module(channels, *, option=default, …)`
and whose forward maps `(N, C, T, H, W)` (3D backbones) or `(N, C, H, W)` (2D backbones) to a tensor
of the same shape. The keyword-only constructor arguments are the module's options: their type
hints and defaults are what specs are validated against and what `harness list` prints. A class
attribute `display_name` ("SE", "Non-local") is the name report tables print; without one, the
registry name is used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from registry.errors import ConfigError
from registry.registry import Registry


@dataclass
class AttentionEntry:
    """A registered attention module: its classes by dimensionality, a one-line description and
    `display_name`, the name a paper's table prints ("+ SE", "+ EAM-T"). `add_attention_class`
    reads it from the classes' `display_name` attribute; it is "" only for "none" (the baseline
    row has no module to name)."""

    name: str
    classes: dict[int, type[nn.Module]] = field(default_factory=dict)
    description: str = ""
    display_name: str = ""

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
ATTENTION.add("none", AttentionEntry("none", {}, "no attention (the baseline)", display_name=""))


def may_skip_parameters(model: nn.Module) -> bool:
    """Whether a module of `model` may leave some of its parameters out of a training step (it
    says so with a `may_skip_parameters` attribute, as AARM's STAM does with χ > 0): DDP must
    then look for unused parameters, and fused SGD with momentum cannot step them."""
    return any(getattr(module, "may_skip_parameters", False) for module in model.modules())


def reduced_channels(
    module: str, channels: int, reduction: int, *, units: str = "hidden units"
) -> int:
    """`channels // reduction`, the width of a module's reduced layer, or a `ConfigError` naming
    `module`'s option when `reduction` leaves none (below 1, or above `channels`). `units` names
    what is reduced in the message: "hidden units" of an MLP, "inner channels" of a convolution.
    """
    if reduction < 1 or channels // reduction < 1:
        raise ConfigError(
            f"{module}: option reduction={reduction} leaves no {units} for {channels} channels; "
            f"use an integer between 1 and {channels}."
        )
    return channels // reduction


def register_attention(name: str, *, dims: tuple[int, ...]) -> Callable[[type], type]:
    """Class decorator: register `cls` as attention `name` for the given input dimensionalities."""

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        add_attention_class(name, cls, dims)
        return cls

    return add


def add_attention_class(name: str, cls: type[nn.Module], dims: tuple[int, ...]) -> None:
    """Register `cls` under `name` (used by the decorator and by plugins)."""
    display_name = getattr(cls, "display_name", "") or name
    if not isinstance(display_name, str):
        raise ConfigError(
            f"Attention {name!r}: display_name must be a string, got {display_name!r}."
        )
    entry = ATTENTION.get(name) if name in ATTENTION else None
    if entry is None:
        first_paragraph = (cls.__doc__ or "").strip().split("\n\n")[0]
        summary = " ".join(first_paragraph.split())  # a first line may stop mid-sentence
        entry = AttentionEntry(name, {}, summary, display_name)
        ATTENTION.add(name, entry)
    elif entry.display_name != display_name:
        raise ConfigError(
            f"Attention {name!r}: {cls.__name__}.display_name = {display_name!r} differs from "
            f"{entry.display_name!r} of its other classes; one name prints per module."
        )
    for d in dims:
        if d in entry.classes and entry.classes[d] is not cls:
            raise ConfigError(f"Attention {name!r} already has a {d}D class; names must be unique.")
        entry.classes[d] = cls
