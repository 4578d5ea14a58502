"""A name → object registry with decorator registration (after fvcore's `Registry`).

Registries are how specs, the command line and plugins name what can be built: the values in a
YAML spec are exactly the keys registered here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from registry.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects of one kind (backbone builders, attention classes, …)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: `@BACKBONES.register("resnet3d_50")`."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        if name in self._entries and self._entries[name] is not obj:
            raise ConfigError(f"{self.kind} {name!r} is registered twice; names must be unique.")
        self._entries[name] = obj

    def get(self, name: str) -> T:
        if not isinstance(name, str) or name not in self._entries:
            raise ConfigError(self.unknown_message(name))
        return self._entries[name]

    def unknown_message(self, name: object) -> str:
        close = difflib.get_close_matches(str(name), self._entries, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        return f"Unknown {self.kind} {name!r}.{hint} Accepted values: {', '.join(self.names())}."

    def names(self) -> list[str]:
        """Registered names in natural order (resnet3d_18 before resnet3d_101)."""
        return sorted(self._entries, key=_natural_key)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)


def _natural_key(name: str) -> list[object]:
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", name)]
