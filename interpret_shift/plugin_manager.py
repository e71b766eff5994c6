"""Finds plugins (built-ins and entry points) and merges what they provide into registries.

Environment variables:
- ``INTERPRET_SHIFT_NO_PLUGINS=1``: load only the built-ins (no entry-point autoload).
- ``INTERPRET_SHIFT_STRICT_PLUGINS=1``: a plugin that fails to load is fatal.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any

import pluggy

from interpret_shift import hookspecs
from interpret_shift.errors import InterpretShiftError

ENTRY_POINT_GROUP = "interpret_shift"
DISABLE_ENV = "INTERPRET_SHIFT_NO_PLUGINS"
STRICT_ENV = "INTERPRET_SHIFT_STRICT_PLUGINS"


@dataclass
class PluginManager:
    """A pluggy manager plus the failures met while loading, kept for ``plugins``."""

    pm: pluggy.PluginManager
    failures: dict[str, str] = field(default_factory=dict)
    conflicts: list[str] = field(default_factory=list)

    def _collect(self, hook: str, key: str) -> dict[str, Any]:
        """Merge a hook's lists into ``{item.<key>: item}``; the first registered wins."""
        merged: dict[str, Any] = {}
        for impl in getattr(self.pm.hook, hook).get_hookimpls():  # registration order
            for item in impl.function() or []:
                name = getattr(item, key)
                if name in merged:
                    self.conflicts.append(f"{hook}: {name!r} from {impl.plugin_name} ignored")
                    continue
                merged[name] = item
        return merged

    def explainers(self) -> dict[str, type]:
        return self._collect("interpret_shift_explainers", "name")

    def adapters(self) -> dict[str, Any]:
        adapters = self._collect("interpret_shift_adapters", "name")
        for adapter in adapters.values():
            adapter.validate()
        return adapters

    def diff_metrics(self) -> dict[str, Any]:
        return self._collect("interpret_shift_diff_metrics", "name")

    def similarity_backends(self) -> dict[str, Any]:
        return self._collect("interpret_shift_similarity_backends", "name")

    def annotators(self) -> dict[str, Any]:
        return self._collect("interpret_shift_annotators", "name")

    def word_lists(self) -> dict[str, Any]:
        return self._collect("interpret_shift_word_lists", "name")

    def provided(self) -> dict[str, dict[str, list[str]]]:
        """Per plugin, per hook, the names it provides (for ``interpret-shift plugins``)."""
        table: dict[str, dict[str, list[str]]] = {}
        for hook_name in dir(hookspecs):
            if not hook_name.startswith("interpret_shift_"):
                continue
            for impl in getattr(self.pm.hook, hook_name).get_hookimpls():
                names = [getattr(item, "name", repr(item)) for item in impl.function() or []]
                table.setdefault(impl.plugin_name, {})[
                    hook_name.removeprefix("interpret_shift_")
                ] = names
        return table


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def load_plugins(autoload: bool | None = None, strict: bool | None = None) -> PluginManager:
    """Build a manager: built-ins first, then every entry point of the group.

    A plugin that fails to import is recorded by name with its error and skipped,
    unless ``strict`` (or ``INTERPRET_SHIFT_STRICT_PLUGINS``) makes it fatal.
    """
    autoload = not _flag(DISABLE_ENV) if autoload is None else autoload
    strict = _flag(STRICT_ENV) if strict is None else strict
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    from interpret_shift import builtin_plugins

    pm.register(builtin_plugins, name="builtin")
    manager = PluginManager(pm)
    if not autoload:
        return manager
    for entry_point in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.has_plugin(entry_point.name):
            continue
        try:
            pm.register(entry_point.load(), name=entry_point.name)
        except Exception as error:  # a broken plugin must not take the tool down
            message = f"{type(error).__name__}: {error}"
            if strict:
                raise InterpretShiftError(
                    f"Plugin {entry_point.name!r} ({entry_point.value}) failed to load: {message}",
                    f"Fix or uninstall it, or unset {STRICT_ENV} to skip broken plugins.",
                ) from error
            manager.failures[entry_point.name] = message
    return manager


@cache
def plugin_manager() -> PluginManager:
    """The process-wide manager (loaded once)."""
    return load_plugins()
