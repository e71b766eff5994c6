"""interpret-shift: what instruction tuning changes inside a causal LM.

The public API, for embedding in other tooling. Names are imported on first use, so
``import interpret_shift`` loads neither torch nor matplotlib::

    from interpret_shift import load_registry, load_subject, compare
    registry = load_registry()
    base = load_subject("HuggingFaceTB/SmolLM2-135M", adapters=registry.adapters())
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_EXPORTS = {
    "InterpretShiftError": "interpret_shift.errors",
    "ModelLoadError": "interpret_shift.errors",
    "HookPointError": "interpret_shift.errors",
    "PluginError": "interpret_shift.errors",
    "RecordError": "interpret_shift.errors",
    "InputError": "interpret_shift.errors",
    "Subject": "interpret_shift.core.subject",
    "load_subject": "interpret_shift.core.subject",
    "Adapter": "interpret_shift.core.adapters",
    "Point": "interpret_shift.core.adapters",
    "HookRegistry": "interpret_shift.core.hooks",
    "Weights": "interpret_shift.core.weights",
    "PromptRecord": "interpret_shift.core.prompts",
    "read_prompts": "interpret_shift.core.prompts",
    "Explanation": "interpret_shift.core.records",
    "RecordStore": "interpret_shift.core.records",
    "Explainer": "interpret_shift.core.explainer",
    "run_explainer": "interpret_shift.core.explainer",
    "DiffMetric": "interpret_shift.core.method",
    "DiffContext": "interpret_shift.core.method",
    "Claim": "interpret_shift.core.method",
    "Claims": "interpret_shift.core.method",
    "ReportSection": "interpret_shift.core.method",
    "SectionContext": "interpret_shift.core.method",
    "hookimpl": "interpret_shift.core.method",
    "Resources": "interpret_shift.core.resources",
    "view": "interpret_shift.core.views",
    "WordList": "interpret_shift.lexicon.words",
    "load_words": "interpret_shift.lexicon.words",
    "diff_records": "interpret_shift.diff",
    "render_report": "interpret_shift.report",
    "Registry": "interpret_shift.plugins",
    "load_registry": "interpret_shift.plugins",
    "compare": "interpret_shift.pipeline",
    "explain": "interpret_shift.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'interpret_shift' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
