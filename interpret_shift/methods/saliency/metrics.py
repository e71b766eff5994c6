"""The saliency method's comparisons: instruction scores (the paper's Table 2), density by
prompt position, per-token densities of a few prompts."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from interpret_shift.core.method import DiffContext, DiffMetric, Records
from interpret_shift.core.views import TokenAttribution
from interpret_shift.methods.saliency import analysis as sal

HEATMAP_PROMPTS = 4


def _welch(a, b) -> dict[str, Any]:
    """One-sided Welch test that ``b`` (tuned) exceeds ``a`` (base)."""
    result = sal.welch_greater(np.asarray(b, float), np.asarray(a, float))
    return {
        "n_base": result.n_b, "n_tuned": result.n_a,
        "mean_base": float(result.mean_b), "mean_tuned": float(result.mean_a),
        "t": float(result.t), "p": float(result.p),
    }  # fmt: skip


#: Options of the sparsification and density, shared by the saliency diff metrics
#: (``--set saliency.NAME=VALUE``): L, b, p of DESIGN §3.1 and the column max's epsilon.
DENSITY_OPTIONS = {"levels": 10, "threshold": 7, "norm_p": 4.0, "epsilon": 0.0}


def density(
    view: TokenAttribution, options: Mapping[str, Any] | None = None, normalise: bool = True
) -> np.ndarray:
    """Importance density of the user-prompt tokens (DESIGN §3.1; defaults L = 10, b = 7,
    p = 4, exact column max), divided by the prompt's maximum unless ``normalise=False``."""
    o = {**DENSITY_OPTIONS, **(options or {})}
    sparse = sal.sparsify(view.attribution[view.prompt_mask], int(o["levels"]),
                          int(o["threshold"]), float(o["epsilon"]))  # fmt: skip
    return sal.density(sparse, float(o["norm_p"]), normalise=normalise)


def settings(context: DiffContext) -> dict[str, Any]:
    """The sparsification and density options a metric used (recorded in its output)."""
    return {name: context.options.get(name, value) for name, value in DENSITY_OPTIONS.items()}


def instruction_scores(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    keys = list(base)
    views = {side: [TokenAttribution.of(r[k]) for k in keys]
             for side, r in (("base", base), ("tuned", tuned))}  # fmt: skip
    options = settings(context)
    scores = {side: [sal.instruction_score(density(v, options), v.prompt(v.instruction_mask))
                     for v in vs] for side, vs in views.items()}  # fmt: skip
    groups = [v.group for v in views["base"]]
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
        "settings": options,
    }


def position_curves(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    """Mean density per relative-position bin; a bin no prompt reaches stays empty (null)."""
    bins = int(context.options.get("bins", 10))
    options = settings(context)
    curves = {}
    for side, records in (("base", base), ("tuned", tuned)):
        stacked = np.array([sal.position_curve(density(TokenAttribution.of(r), options), bins)
                            for r in records.values()])  # fmt: skip
        seen = (~np.isnan(stacked)).sum(axis=0)
        total = np.nansum(stacked, axis=0)
        curves[side] = [float(t / n) if n else None for t, n in zip(total, seen)]
    return {"bins": bins, **curves}


def heatmaps(base: Records, tuned: Records, context: DiffContext) -> list[dict[str, Any]]:
    """Per-token densities of the first prompts, for the report's heatmaps; ``*_density_raw``
    are the same before the division by the prompt's maximum."""
    options = settings(context)
    maps = []
    for key in list(base)[:HEATMAP_PROMPTS]:
        a, b = TokenAttribution.of(base[key]), TokenAttribution.of(tuned[key])
        maps.append({
            "id": key,
            "tokens": [t for t, keep in zip(a.tokens, a.prompt_mask) if keep],
            "instruction_mask": a.prompt(a.instruction_mask).tolist(),
            "context_mask": a.prompt(a.context_mask).tolist(),
            "base_density": density(a, options).tolist(),
            "tuned_density": density(b, options).tolist(),
            "base_density_raw": density(a, options, normalise=False).tolist(),
            "tuned_density_raw": density(b, options, normalise=False).tolist(),
            "base_response": a.response,
            "tuned_response": b.response,
        })  # fmt: skip
    return maps


DIFF_METRICS = (
    DiffMetric(explainer="saliency", name="instruction-score", compute=instruction_scores,
               options=DENSITY_OPTIONS,
               minimums={"levels": 1, "threshold": 0, "norm_p": 1, "epsilon": 0},
               description="instruction score per prompt, one-sided Welch tuned > base"),
    DiffMetric(explainer="saliency", name="position-curve", compute=position_curves,
               options={"bins": 10}, minimums={"bins": 1},
               description="importance density by relative prompt position"),
    DiffMetric(explainer="saliency", name="heatmaps", compute=heatmaps,
               description="per-token densities of a few prompts"),
)  # fmt: skip
