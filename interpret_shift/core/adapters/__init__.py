"""Architecture adapters: which adapter fits a config, and the list of supported ones."""

from __future__ import annotations

from collections.abc import Iterable

from interpret_shift.core.adapters.bind import BoundPoint, Layout
from interpret_shift.core.adapters.spec import LAYER_POINTS, MODEL_POINTS, Adapter, Experts, Point
from interpret_shift.core.adapters.tables import BUILTIN_ADAPTERS
from interpret_shift.errors import ModelLoadError

__all__ = [
    "Adapter",
    "BUILTIN_ADAPTERS",
    "BoundPoint",
    "Experts",
    "LAYER_POINTS",
    "MODEL_POINTS",
    "Layout",
    "Point",
    "find_adapter",
]


def find_adapter(config, adapters: Iterable[Adapter] = BUILTIN_ADAPTERS) -> Adapter:
    """The adapter for ``config``: by ``architectures[0]``, then by ``model_type``.

    ``adapters`` defaults to the built-in tables; the registry passes its own list (the
    built-ins plus plugins').
    """
    adapters = list(adapters)
    architecture = (getattr(config, "architectures", None) or [None])[0]
    model_type = getattr(config, "model_type", None)
    for adapter in adapters:
        if architecture in adapter.architectures:
            return adapter
    for adapter in adapters:
        if model_type in adapter.model_types:
            return adapter
    supported = ", ".join(sorted({a.name for a in adapters}))
    raise ModelLoadError(
        f"No adapter for architecture {architecture!r} (model_type {model_type!r}). "
        f"Supported families: {supported}.",
        "To add one, write an Adapter table (see docs/writing-a-plugin.md) and return it from "
        "an `interpret_shift_adapters` hook in a plugin registered under the "
        "`interpret_shift` entry-point group.",
    )
