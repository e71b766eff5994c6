"""Options of explainers and diff metrics, checked before any work: names, types, ranges.

A ``Config`` dataclass states each option's type in its annotation and, where a range
matters, its bounds in the field's metadata: ``field(default=100, metadata=at_least(1))``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any

from interpret_shift.errors import InputError


def at_least(low: float) -> dict[str, float]:
    """Field metadata: the option must be a number >= ``low`` (None passes when allowed)."""
    return {"min": low}


def chosen_layers(
    owner: str, layers: Sequence[int] | None, n_layers: int, pair: bool = False
) -> list[int]:
    """The layers an explainer's ``layers`` option names (None: all of them), each checked
    to exist in the model (or in both models of a ``pair``)."""
    chosen = list(range(n_layers)) if layers is None else list(layers)
    bad = [layer for layer in chosen if not 0 <= layer < n_layers]
    if bad:
        raise InputError(
            f"{owner}.layers names layer {bad[0]}, which does not exist: the "
            f"{'models have' if pair else 'model has'} {n_layers} layers.",
            f"Choose layers between 0 and {n_layers - 1}.",
        )
    return chosen


def checked(owner: str, config_cls: type, options: Mapping[str, Any]) -> Any:
    """``config_cls(**options)`` after checking every option's name, type and range."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(options) - set(fields))
    if unknown:
        raise InputError(
            f"{owner} has no option {unknown[0]!r}.",
            f"Its options are: {', '.join(sorted(fields)) or '(none)'}.",
        )
    hints = typing.get_type_hints(config_cls)
    for name, value in options.items():
        check_value(f"{owner}.{name}", value, hints.get(name, Any), fields[name].metadata)
    try:
        return config_cls(**options)
    except (TypeError, ValueError) as error:
        raise InputError(f"{owner}: {error}", "Check the option's value.") from error


def check_value(label: str, value: Any, hint: Any, metadata: Mapping[str, Any] = {}) -> None:
    """Raise an :class:`InputError` naming ``label`` unless ``value`` fits ``hint`` and range."""
    if not matches(value, hint):
        raise InputError(f"{label}={value!r} is not {describe(hint)}.", f"Pass {describe(hint)}.")
    low = metadata.get("min")
    if low is not None and value is not None and not isinstance(value, list) and value < low:
        raise InputError(f"{label}={value!r} is out of range.", f"Pass a value of at least {low}.")


def matches(value: Any, hint: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(matches(value, arg) for arg in args)
    if origin is typing.Literal:
        return value in args
    if origin in (list, tuple):
        return isinstance(value, list | tuple) and all(matches(v, args[0]) for v in value)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint) if isinstance(hint, type) else True


def describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe(arg) for arg in args)
    if origin is typing.Literal:
        return "one of " + ", ".join(map(repr, args))
    if origin in (list, tuple):
        return f"a list of {describe(args[0]).removeprefix('a ').removeprefix('an ')}s"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string",
             type(None): "null"}  # fmt: skip
    return names.get(hint, getattr(hint, "__name__", str(hint)))
