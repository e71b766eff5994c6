"""Presets: named sets of explainer and diff-metric options (``--preset NAME``).

A preset is data: ``{explainer: {option: value}}``, the same shape as ``--set`` options.
:func:`preset_options` lays the user's options over it (the user wins) and keeps only the
explainers that run. ``paper`` is every choice of the paper's released code
(arXiv:2310.00492); docs/paper-fidelity.md says what each one changes and why the
defaults differ.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from interpret_shift.errors import InputError

PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "paper": {
        "saliency": {
            "target": "prob",  # d p(y_j) / d E
            "chat_template": False,  # the raw prompt
            "response_tokens": "joined",  # prompt.strip() + " " + response.strip()
            "levels": 10,  # L
            "threshold": 7,  # b
            "norm_p": 4.0,  # p
            "epsilon": 1e-7,  # each column divided by (max + 1e-7)
        },
        "heads": {
            "top_k": 30,  # K words per dimension
            "z": 1.96,
            "baseline": None,  # the word list itself is the threshold baseline
            "self_pairs": "exact",  # drop only identical words
            "word_rule": "paper",  # " word", a bare leading space token dropped
        },
        "ffn": {
            "top_k": 20,  # K words per component
            "components": 10,  # R
            "svd": "exact",
            "word_rule": "paper",
        },
    },
}


def preset_options(
    preset: str | None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    explainers: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``options`` laid over the preset's, for the ``explainers`` that run (all of the
    preset's when None). Without a preset, a copy of ``options``."""
    merged = {name: dict(values) for name, values in (options or {}).items()}
    if preset is None:
        return merged
    if preset not in PRESETS:
        raise InputError(
            f"Unknown preset {preset!r}.", f"Use one of: {', '.join(sorted(PRESETS))}."
        )
    for name, values in PRESETS[preset].items():
        if explainers is None or name in explainers:
            merged[name] = {**values, **merged.get(name, {})}
    return merged
