"""Post-hoc maths on a raw saliency matrix (DESIGN §3.1).

Every function takes ``s`` or its derivatives as a (prompt tokens x response tokens) array.
The raw signed matrix is kept by the explainer; levels, threshold and norm are parameters
here so that an analysis can be rerun with other settings without recomputing gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from interpret_shift.core.stats import t_test


def quantize(s: np.ndarray, levels: int = 10, epsilon: float = 0.0) -> np.ndarray:
    """Positive part of each response token's column, scaled by its max and rounded up to levels.

    Per-column scaling makes response tokens comparable whatever their gradient magnitude;
    a column without any positive entry becomes all zeros. ``epsilon`` is added to each
    column's max before dividing: 0 (the default) divides by the exact max, so a column's
    largest entry is always at the top level; the paper's code uses 1e-7, which lowers the
    top level of columns whose max is itself near 1e-7 and moves entries that sit just
    above a level boundary down one level.
    """
    positive = np.maximum(np.asarray(s, dtype=np.float64), 0.0)
    column_max = positive.max(axis=0, keepdims=True) if positive.size else positive
    scaled = np.divide(
        positive, column_max + epsilon, out=np.zeros_like(positive), where=column_max > 0
    )
    return np.ceil(scaled * levels)


def sparsify(
    s: np.ndarray, levels: int = 10, threshold: int = 7, epsilon: float = 0.0
) -> np.ndarray:
    """Quantize, then zero the levels <= ``threshold`` so only strong attributions remain."""
    quantized = quantize(s, levels, epsilon)
    return np.where(quantized > threshold, quantized, 0.0)


def density(sparse: np.ndarray, p: float = 4, normalise: bool = True) -> np.ndarray:
    """Importance density per prompt token: ||s_i||_1 / ||s_i||_p, divided by its prompt maximum.

    The ratio is large when a token matters for many response tokens at once rather than
    strongly for a few. Rows (and prompts) without any attribution give 0, never NaN.
    With ``normalise=False`` the ratio is returned as it is, before the division by the
    prompt's maximum (comparable across prompts: it counts, roughly, how many response
    tokens lean on the token).
    """
    x = np.abs(np.asarray(sparse, dtype=np.float64))
    l1 = x.sum(axis=1)
    lp = (x**p).sum(axis=1) ** (1.0 / p)
    ratio = np.divide(l1, lp, out=np.zeros_like(l1), where=lp > 0)
    if not normalise:
        return ratio
    top = ratio.max() if ratio.size else 0.0
    return ratio / top if top > 0 else ratio


def instruction_score(density: np.ndarray, instruction_mask: np.ndarray) -> float:
    """Summed density over instruction tokens, damped by log2(2 + their count).

    The damping keeps long instructions from scoring high only because they are long.
    """
    mask = np.asarray(instruction_mask, dtype=bool)
    values = np.asarray(density, dtype=np.float64)
    if mask.shape != values.shape:
        raise ValueError(f"mask shape {mask.shape} differs from density shape {values.shape}")
    return float(values[mask].sum() / math.log2(2 + int(mask.sum())))


def position_curve(density: np.ndarray, bins: int = 10) -> np.ndarray:
    """Mean density by relative prompt position (token i of n falls in bin floor(i * bins / n)).

    Relative positions let prompts of different lengths be averaged ("lost in the middle").
    Bins that no token falls in are NaN, so averaging across prompts can use ``nanmean``.
    """
    values = np.asarray(density, dtype=np.float64)
    n = values.shape[0]
    which = (np.arange(n) * bins) // max(n, 1)
    sums = np.bincount(which, weights=values, minlength=bins)
    counts = np.bincount(which, minlength=bins)
    return np.divide(sums, counts, out=np.full(bins, np.nan), where=counts > 0)


@dataclass(frozen=True)
class WelchResult:
    """A one-sided Welch t-test (H1: mean of a > mean of b) with the sizes and means it used."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    t: float
    p: float


def welch_greater(a, b) -> WelchResult:
    """One-sided Welch t-test that ``a`` is larger than ``b`` (t and p NaN as in ``t_test``)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    mean_a = float(a.mean()) if a.size else math.nan
    mean_b = float(b.mean()) if b.size else math.nan
    return WelchResult(a.size, b.size, mean_a, mean_b, *t_test(a, b, alternative="greater"))
