"""Named resources that plugins provide (word lists, similarity backends, annotators, ...).

The registry (``interpret_shift.plugins``) collects them and hands a :class:`Resources`
down to the code that looks things up by name; that code merges it over its own built-ins,
so it works without any registry too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from interpret_shift.errors import PluginError


@dataclass(frozen=True)
class Resources:
    """``by_category["word_lists"]["vocabulary"]`` and so on; empty by default."""

    by_category: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    def named(self, category: str, builtins: Iterable[Any] = ()) -> dict[str, Any]:
        """The resources of ``category`` by name: ``builtins`` first, then the registered ones."""
        return {**{item.name: item for item in builtins}, **self.by_category.get(category, {})}

    def get(self, category: str, name: str, builtins: Iterable[Any] = (), what: str = "") -> Any:
        """The resource ``name`` of ``category``, or a :class:`PluginError` listing the choices."""
        available = self.named(category, builtins)
        if name not in available:
            raise PluginError(
                f"Unknown {what or category.replace('_', ' ').rstrip('s')} {name!r}.",
                f"Choose one of: {', '.join(sorted(available)) or '(none)'} "
                "(see `interpret-shift plugins`).",
            )
        return available[name]
