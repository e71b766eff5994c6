"""The built-in plugin: registered exactly like an external one, through the hookspecs."""

from __future__ import annotations

from interpret_shift.adapters.tables import BUILTIN_ADAPTERS
from interpret_shift.hookspecs import hookimpl


@hookimpl
def interpret_shift_adapters() -> list:
    return list(BUILTIN_ADAPTERS)


@hookimpl
def interpret_shift_explainers() -> list[type]:
    return []
