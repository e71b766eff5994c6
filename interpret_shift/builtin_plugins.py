"""The built-in plugin: registered exactly like an external one, through the hookspecs.

Imports happen inside the hooks so that loading the plugin manager stays cheap and
free of import cycles.
"""

from __future__ import annotations

from interpret_shift.hookspecs import hookimpl


@hookimpl
def interpret_shift_adapters() -> list:
    from interpret_shift.adapters.tables import BUILTIN_ADAPTERS

    return list(BUILTIN_ADAPTERS)


@hookimpl
def interpret_shift_explainers() -> list[type]:
    from interpret_shift.explainers.ffn import FFNConcepts
    from interpret_shift.explainers.heads import HeadPatterns
    from interpret_shift.explainers.saliency import SaliencyExplainer

    return [SaliencyExplainer, HeadPatterns, FFNConcepts]


@hookimpl
def interpret_shift_diff_metrics() -> list:
    from interpret_shift.diff.metrics import BUILTIN_DIFF_METRICS

    return list(BUILTIN_DIFF_METRICS)


@hookimpl
def interpret_shift_similarity_backends() -> list:
    from interpret_shift.similarity import BUILTIN_BACKENDS

    return list(BUILTIN_BACKENDS)


@hookimpl
def interpret_shift_word_lists() -> list:
    from interpret_shift.words import BUILTIN_WORD_LISTS

    return list(BUILTIN_WORD_LISTS)


@hookimpl
def interpret_shift_annotators() -> list:
    from interpret_shift.annotators import BUILTIN_ANNOTATORS

    return list(BUILTIN_ANNOTATORS)
