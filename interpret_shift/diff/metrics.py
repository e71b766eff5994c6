"""The built-in comparisons, one or more per data kind (registered as diff-metric plugins)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import stats

from interpret_shift.analysis import saliency as sal
from interpret_shift.diff import DiffMetric, Records

HEATMAP_PROMPTS = 4


def _number(value: float) -> float | None:
    """JSON has no NaN: undefined statistics become null."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _welch(a, b) -> dict[str, Any]:
    """One-sided Welch test that ``b`` (tuned) exceeds ``a`` (base)."""
    result = sal.welch_greater(np.asarray(b, float), np.asarray(a, float))
    return {
        "n_base": result.n_b, "n_tuned": result.n_a,
        "mean_base": _number(result.mean_b), "mean_tuned": _number(result.mean_a),
        "t": _number(result.t), "p": _number(result.p),
    }  # fmt: skip


# -- token attributions (saliency) -------------------------------------------------------
def _density(record) -> np.ndarray:
    """Importance density of the user-prompt tokens (DESIGN §3.1, b = 7, p = 4, L = 10)."""
    raw = record.arrays["saliency"][record.arrays["prompt_mask"].astype(bool)]
    return sal.density(sal.sparsify(raw))


def _instruction_mask(record) -> np.ndarray:
    prompt = record.arrays["prompt_mask"].astype(bool)
    return record.arrays["instruction_mask"].astype(bool)[prompt]


def instruction_scores(base: Records, tuned: Records) -> dict[str, Any]:
    keys = list(base)
    scores = {
        side: [sal.instruction_score(_density(r[k]), _instruction_mask(r[k])) for k in keys]
        for side, r in (("base", base), ("tuned", tuned))
    }
    groups = [base[k].meta.get("group") for k in keys]
    by_group = {
        group: _welch(
            [s for s, g in zip(scores["base"], groups) if g == group],
            [s for s, g in zip(scores["tuned"], groups) if g == group],
        )
        for group in sorted({g for g in groups if g})
    }
    return {
        "prompt_ids": keys,
        "groups": groups,
        **scores,
        "overall": _welch(scores["base"], scores["tuned"]),
        "by_group": by_group,
    }


def position_curves(base: Records, tuned: Records, bins: int = 10) -> dict[str, Any]:
    """Mean density per relative-position bin; a bin no prompt reaches stays empty (null)."""
    curves = {}
    for side, records in (("base", base), ("tuned", tuned)):
        stacked = np.array([sal.position_curve(_density(r), bins) for r in records.values()])
        seen = (~np.isnan(stacked)).sum(axis=0)
        total = np.nansum(stacked, axis=0)
        curves[side] = [_number(float(t / n)) if n else None for t, n in zip(total, seen)]
    return {"bins": bins, **curves}


def heatmaps(base: Records, tuned: Records) -> list[dict[str, Any]]:
    """Per-token densities of the first prompts, for the report's heatmaps."""
    maps = []
    for key in list(base)[:HEATMAP_PROMPTS]:
        a, b = base[key], tuned[key]
        prompt = a.arrays["prompt_mask"].astype(bool)
        maps.append({
            "id": key,
            "tokens": [t for t, keep in zip(a.meta["tokens"], prompt) if keep],
            "instruction_mask": _instruction_mask(a).tolist(),
            "context_mask": a.arrays["context_mask"].astype(bool)[prompt].tolist(),
            "base_density": _density(a).tolist(),
            "tuned_density": _density(b).tolist(),
            "base_response": a.meta.get("response", ""),
            "tuned_response": b.meta.get("response", ""),
        })  # fmt: skip
    return maps


# -- ranked words (attention heads) -------------------------------------------------------
def head_overlap(base: Records, tuned: Records) -> dict[str, Any]:
    from interpret_shift.analysis.heads import head_overlap as overlaps

    found = overlaps(base, tuned)
    n_layers = max(o.layer for o in found) + 1
    n_heads = max(o.head for o in found) + 1
    table = np.full((n_layers, n_heads), np.nan)
    for o in found:
        table[o.layer, o.head] = o.jaccard
    return {"n_layers": n_layers, "n_heads": n_heads,
            "jaccard": [[_number(float(v)) for v in row] for row in table]}  # fmt: skip


def verb_shares(base: Records, tuned: Records) -> dict[str, Any]:
    from interpret_shift.analysis.heads import compare_verbs
    from interpret_shift.errors import InterpretShiftError
    from interpret_shift.words import load_words

    try:
        general = load_words("general-verbs").words
    except InterpretShiftError as error:
        return {"skipped": error.what}
    instruction = load_words("instruction-verbs").words
    result = compare_verbs(base, tuned, instruction, general)
    return {"groups": [
        {"layers": [t.first_layer, t.last_layer],
         "instruction": {"n": t.n_instruction, "mean": _number(t.mean_instruction)},
         "general": {"n": t.n_general, "mean": _number(t.mean_general)},
         "t": _number(t.t), "p": _number(t.p_two_sided), "p_greater": _number(t.p_greater)}
        for t in result.tests
    ]}  # fmt: skip


# -- subspaces (FFN) ----------------------------------------------------------------------
def rotation(base: Records, tuned: Records) -> dict[str, Any]:
    from interpret_shift.analysis.ffn import rotation_summary, rotations

    layers = rotations(base, tuned)
    return {
        "layers": [r.layer for r in layers],
        "mean_angle_deg": [r.mean_angle_deg for r in layers],
        "max_angle_deg": [r.max_angle_deg for r in layers],
        "overlap": [r.overlap for r in layers],
        "matched_cosine": [r.cosine.tolist() for r in layers],
        "summary": rotation_summary(layers),
    }


def variance_shift(base: Records, tuned: Records) -> dict[str, Any]:
    """Share of variance in the top components, per layer: did the spectrum sharpen?"""
    keys = sorted(base, key=lambda k: int(base[k].meta["layer"]))
    top = {
        side: [
            float(np.sum(r[k].arrays["explained_variance"][: len(r[k].arrays["directions"])]))
            for k in keys
        ]
        for side, r in (("base", base), ("tuned", tuned))
    }
    return {"layers": [int(base[k].meta["layer"]) for k in keys],
            "base_top": top["base"], "tuned_top": top["tuned"]}  # fmt: skip


# -- per-unit scalars ---------------------------------------------------------------------
def paired_units(base: Records, tuned: Records) -> dict[str, Any]:
    """Per unit, tuned minus base over items, with a paired t-test."""
    a = np.stack([base[k].arrays["values"] for k in base]).astype(float)
    b = np.stack([tuned[k].arrays["values"] for k in base]).astype(float)
    units = next(iter(base.values())).meta.get("units") or [str(i) for i in range(a.shape[1])]
    tests = []
    for u, unit in enumerate(units):
        diff = b[:, u] - a[:, u]
        p = math.nan
        if len(diff) >= 2 and np.any(diff != 0):
            p = float(stats.ttest_rel(b[:, u], a[:, u]).pvalue)
        tests.append({"unit": unit, "n": len(diff), "mean_base": float(a[:, u].mean()),
                      "mean_tuned": float(b[:, u].mean()), "p": _number(p)})  # fmt: skip
    return {"units": tests}


BUILTIN_DIFF_METRICS = (
    DiffMetric("instruction-score", "token_attribution", instruction_scores,
               "instruction score per prompt, one-sided Welch tuned > base"),
    DiffMetric("position-curve", "token_attribution", position_curves,
               "importance density by relative prompt position"),
    DiffMetric("heatmaps", "token_attribution", heatmaps, "per-token densities of a few prompts"),
    DiffMetric("head-overlap", "ranked_words", head_overlap, "Jaccard of top pairs per head"),
    DiffMetric("verb-shares", "ranked_words", verb_shares,
               "instruction vs general verbs per layer group (the paper's Table 3)"),
    DiffMetric("rotation", "subspace", rotation, "principal angles of the top components"),
    DiffMetric("variance-shift", "subspace", variance_shift, "variance in the top components"),
    DiffMetric("paired-units", "unit_scalars", paired_units, "paired t-test per unit"),
)  # fmt: skip
