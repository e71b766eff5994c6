"""Generic comparisons, one set per data kind, run for every explainer of that kind.

They read records only through the typed views (:mod:`interpret_shift.core.views`), so a
plugin's explainer is compared without code of its own; its method may add more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from interpret_shift.core.linalg import match_components, principal_angles, subspace_overlap
from interpret_shift.core.method import Claim, Claims, DiffContext, DiffMetric, Records
from interpret_shift.core.render.numbers import brief
from interpret_shift.core.stats import paired_t_test
from interpret_shift.core.views import RankedWords, Subspace, TokenAttribution, UnitScalars

EXAMPLES = 3  # items whose token attributions are shown in full


def _common(base: Records, tuned: Records) -> list[str]:
    return [key for key in base if key in tuned]


# -- token attribution -----------------------------------------------------------------------
def token_importance(view: TokenAttribution) -> np.ndarray:
    """Per prompt token, the summed |attribution| over the targets, scaled to max 1."""
    importance = view.prompt(np.abs(view.attribution).sum(axis=1))
    top = importance.max(initial=0.0)
    return importance / top if top > 0 else importance


def attribution_shift(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    """Per item, the cosine of the two models' token importances; a few items in full."""
    keys = _common(base, tuned)
    cosines, examples = [], []
    for key in keys:
        a, b = TokenAttribution.of(base[key]), TokenAttribution.of(tuned[key])
        ia, ib = token_importance(a), token_importance(b)
        norm = float(np.linalg.norm(ia) * np.linalg.norm(ib))
        cosines.append(float(ia @ ib) / norm if norm > 0 and len(ia) == len(ib) else None)
        if len(examples) < EXAMPLES:
            examples.append({"id": key, "tokens": [t for t, m in zip(a.tokens, a.prompt_mask) if m],
                             "base": ia.tolist(), "tuned": ib.tolist(),
                             "base_response": a.response, "tuned_response": b.response})  # fmt: skip
    defined = [c for c in cosines if c is not None]
    return {"items": keys, "cosine": cosines,
            "mean_cosine": float(np.mean(defined)) if defined else None,
            "examples": examples}  # fmt: skip


# -- ranked words ----------------------------------------------------------------------------
def pair_overlap(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    """Per item and unit, the Jaccard overlap of the two models' word-pair sets."""
    keys = _common(base, tuned)
    rows, units = [], []
    for key in keys:
        view = RankedWords.of(base[key])
        a, b = view.pair_sets(), RankedWords.of(tuned[key]).pair_sets()
        units = units or view.units
        rows.append([float(len(x & y) / len(x | y)) if x | y else None for x, y in zip(a, b)])
    values = [v for row in rows for v in row if v is not None]
    return {"items": keys, "units": units, "jaccard": rows,
            "mean": float(np.mean(values)) if values else None}  # fmt: skip


# -- subspaces -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Rotation:
    """How one unit's top directions moved: principal angles (radians, ascending), subspace
    overlap (mean squared cosine, 1 = same), matched components (Hungarian on |cosine|)."""

    layer: int
    angles: np.ndarray
    overlap: float
    matched: np.ndarray  # (R, 2) int: base component, tuned component
    cosine: np.ndarray  # (R,)

    @property
    def mean_angle_deg(self) -> float:
        return float(np.degrees(self.angles.mean()))

    @property
    def max_angle_deg(self) -> float:
        return float(np.degrees(self.angles.max()))


def rotation_of(base, tuned, components: int | None = None) -> Rotation:
    """Principal angles, overlap and component matching between two subspace records."""
    view = Subspace.of(base)
    a, b = view.directions[:components], Subspace.of(tuned).directions[:components]
    index_a, index_b, cosine = match_components(a, b)
    return Rotation(view.layer, principal_angles(a, b), subspace_overlap(a, b),
                    np.stack([index_a, index_b], axis=1), cosine)  # fmt: skip


def rotations(base: Records, tuned: Records, components: int | None = None) -> list[Rotation]:
    """Per unit both models were explained at, in layer order."""
    found = [rotation_of(base[key], tuned[key], components) for key in _common(base, tuned)]
    return sorted(found, key=lambda r: r.layer)


def rotation_summary(layers: Sequence[Rotation]) -> dict[str, float]:
    """Mean angle (degrees) and mean overlap over layers, plus the extremes."""
    if not layers:
        return {"layers": 0}
    means = np.array([r.mean_angle_deg for r in layers])
    overlaps = np.array([r.overlap for r in layers])
    return {
        "layers": len(layers),
        "mean_angle_deg": float(means.mean()),
        "max_angle_deg": float(max(r.max_angle_deg for r in layers)),
        "mean_overlap": float(overlaps.mean()),
        "min_overlap": float(overlaps.min()),
        "mean_matched_cosine": float(np.mean([r.cosine.mean() for r in layers])),
    }


def rotation(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    layers = rotations(base, tuned)
    return {
        "layers": [r.layer for r in layers],
        "mean_angle_deg": [r.mean_angle_deg for r in layers],
        "max_angle_deg": [r.max_angle_deg for r in layers],
        "overlap": [r.overlap for r in layers],
        "matched_cosine": [r.cosine.tolist() for r in layers],
        "summary": rotation_summary(layers),
    }


def variance_shift(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    """Share of variance in the top components, per layer: did the spectrum sharpen?"""
    views = {side: {k: Subspace.of(r[k]) for k in _common(base, tuned)}
             for side, r in (("base", base), ("tuned", tuned))}  # fmt: skip
    keys = sorted(views["base"], key=lambda k: views["base"][k].layer)
    top = {side: [float(v[k].explained_variance[: len(v[k].directions)].sum()) for k in keys]
           for side, v in views.items()}  # fmt: skip
    return {"layers": [views["base"][k].layer for k in keys],
            "base_top": top["base"], "tuned_top": top["tuned"]}  # fmt: skip


# -- per-unit scalars ------------------------------------------------------------------------
def paired_units(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    """Per unit, tuned minus base over items, with a two-sided paired t-test."""
    keys = _common(base, tuned)
    a = np.stack([UnitScalars.of(base[k]).values for k in keys])
    b = np.stack([UnitScalars.of(tuned[k]).values for k in keys])
    units = UnitScalars.of(base[keys[0]]).units
    tests = []
    for u, unit in enumerate(units):
        t, p = paired_t_test(b[:, u], a[:, u])
        tests.append({"unit": unit, "n": len(keys), "mean_base": float(a[:, u].mean()),
                      "mean_tuned": float(b[:, u].mean()), "t": float(t),
                      "p": float(p)})  # fmt: skip
    return {"units": tests}


GENERIC_DIFF_METRICS = (
    DiffMetric(data_kind="token_attribution", name="attribution-shift", compute=attribution_shift,
               description="cosine of the two models' prompt-token importances per item"),
    DiffMetric(data_kind="ranked_words", name="pair-overlap", compute=pair_overlap,
               description="Jaccard overlap of each unit's word pairs"),
    DiffMetric(data_kind="subspace", name="rotation", compute=rotation,
               description="principal angles and overlap of the top directions"),
    DiffMetric(data_kind="subspace", name="variance-shift", compute=variance_shift,
               description="variance in the top components"),
    DiffMetric(data_kind="unit_scalars", name="paired-units", compute=paired_units,
               description="paired t-test per unit"),
)  # fmt: skip


# -- one summary line per data kind, for explainers that bring no claims ---------------------


def _attribution_claims(diff: dict) -> list[Claim]:
    shift = diff.get("attribution-shift") or {}
    n = len([c for c in shift.get("cosine", []) if c is not None])
    return [Claim(f"Prompt-token importance of the two models agrees with mean cosine "
                  f"{brief(shift.get('mean_cosine'))} (1 = same tokens matter).",
                  "attribution-shift", n=n)] if n else []  # fmt: skip


def _ranked_claims(diff: dict) -> list[Claim]:
    overlap = diff.get("pair-overlap") or {}
    n = sum(v is not None for row in overlap.get("jaccard", []) for v in row)
    return [Claim(f"Units keep on average {brief(overlap.get('mean'))} of their word pairs "
                  "(Jaccard overlap, 1 = unchanged).", "pair-overlap", n=n)] if n else []  # fmt: skip


def _subspace_claims(diff: dict) -> list[Claim]:
    summary = (diff.get("rotation") or {}).get("summary") or {}
    if not summary.get("layers"):
        return []
    return [Claim(f"The top directions rotated by {brief(summary['mean_angle_deg'])}° on average "
                  f"(subspace overlap {brief(summary['mean_overlap'])}).", "rotation",
                  n=summary["layers"])]  # fmt: skip


def _scalar_claims(diff: dict) -> list[Claim]:
    tests = (diff.get("paired-units") or {}).get("units") or []
    tested = [t for t in tests if t["p"] is not None]
    if not tested:
        return []
    best = min(tested, key=lambda t: t["p"])
    return [Claim(f"Largest paired change at {best['unit']}: {brief(best['mean_base'])} (base) → "
                  f"{brief(best['mean_tuned'])} (tuned), paired t-test; {len(tested)} units tested.",
                  "paired-units", n=best["n"], p=best["p"])]  # fmt: skip


GENERIC_CLAIMS = (
    Claims(data_kind="token_attribution", name="attribution-claims", make=_attribution_claims),
    Claims(data_kind="ranked_words", name="ranked-words-claims", make=_ranked_claims),
    Claims(data_kind="subspace", name="subspace-claims", make=_subspace_claims),
    Claims(data_kind="unit_scalars", name="unit-scalar-claims", make=_scalar_claims),
)
