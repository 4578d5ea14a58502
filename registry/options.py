"""Options: the keyword-only constructor arguments of backbones and attention modules.

Options are read from signatures and type hints, so a module documents its options once, in its
own code, and specs, `build_model` and `harness list` all agree with it.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from registry.errors import ConfigError

# Arguments the framework passes itself; they are not user options.
FRAMEWORK_ARGUMENTS = frozenset({"channels", "num_classes", "attention_at"})


@dataclass(frozen=True)
class Option:
    """One option: its name, accepted type and default."""

    name: str
    annotation: Any
    default: Any

    @property
    def type_name(self) -> str:
        return _type_name(self.annotation)


def options_of(fn: Callable[..., Any] | None) -> dict[str, Option]:
    """The options of a constructor or builder, in declaration order."""
    if fn is None:
        return {}
    target = fn.__init__ if inspect.isclass(fn) else fn
    hints = typing.get_type_hints(target)
    found = {}
    for param in inspect.signature(target).parameters.values():
        if param.kind is not param.KEYWORD_ONLY or param.name in FRAMEWORK_ARGUMENTS:
            continue
        found[param.name] = Option(param.name, hints.get(param.name, Any), param.default)
    return found


def check_options(owner: str, declared: Mapping[str, Option], given: Mapping[str, Any]) -> dict:
    """`given` checked against `declared`: unknown names and wrong types raise `ConfigError`."""
    checked = {}
    for name, value in given.items():
        if name not in declared:
            raise ConfigError(
                f"{owner} has no option {name!r}. Accepted options: {describe_options(declared)}."
            )
        checked[name] = check_value(f"{owner}: option {name}", declared[name].annotation, value)
    return checked


def describe_options(declared: Mapping[str, Option]) -> str:
    """`name (type, default value), …` for messages; "none" when there are no options."""
    described = (f"{o.name} ({o.type_name}, default {o.default!r})" for o in declared.values())
    return ", ".join(described) or "none"


def check_value(where: str, annotation: Any, value: Any) -> Any:
    """`value` if it fits `annotation` (ints are accepted as floats), else `ConfigError`."""
    if _fits(annotation, value):
        return float(value) if annotation is float else value
    words = (
        annotation is str
        or typing.get_origin(annotation) is Literal
        or (str in typing.get_args(annotation))
    )
    hint = yaml_boolean_hint(value) if words else ""  # quoting gives a word, not a number
    if typing.get_origin(annotation) is Literal:
        expected = _type_name(annotation)
        raise ConfigError(f"{where} = {value!r} is not accepted: expected {expected}.{hint}")
    raise ConfigError(
        f"{where} = {value!r} has the wrong type: expected {_type_name(annotation)}, "
        f"got {_got(value)}.{hint}"
    )


def yaml_boolean_hint(value: Any) -> str:
    """For a boolean where a word was expected: YAML 1.1 (PyYAML's) reads unquoted yes/no,
    on/off and true/false as booleans, so `attention: [no, se]` holds False, not "no"."""
    if not isinstance(value, bool):
        return ""
    return (
        " YAML reads an unquoted no, off or false (yes, on, true) as a boolean: quote the word "
        'you wrote (e.g. "no") to give it as a word.'
    )


def _got(value: Any) -> str:
    """What `value` is, as a type error says it: a list names its items' types
    (`a list holding float 1.5`), which is what usually went wrong in one."""
    if isinstance(value, list) and value:
        items = ", ".join(f"{type(v).__name__} {v!r}" for v in value[:3])
        return f"a list holding {items}{', …' if len(value) > 3 else ''}"
    return type(value).__name__


def _fits(annotation: Any, value: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return True
    if origin is Literal:
        return value in typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_fits(arg, value) for arg in typing.get_args(annotation))
    if annotation is type(None):
        return value is None
    if origin is list:
        (item,) = typing.get_args(annotation) or (Any,)
        return isinstance(value, list) and all(_fits(item, v) for v in value)
    if annotation is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return True


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "one of " + "|".join(map(str, typing.get_args(annotation)))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is list:
        return f"a list of {_type_name(typing.get_args(annotation)[0])}"
    return getattr(annotation, "__name__", str(annotation))
