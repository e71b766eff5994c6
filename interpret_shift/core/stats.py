"""Statistics shared by the methods: t-tests that never warn on constant data, layer labels."""

from __future__ import annotations

import math
import warnings

import numpy as np
from scipy import stats


def layers_label(first: int, last: int) -> str:
    """A layer range as text: "layer 3", "layers 0-3" (inclusive)."""
    return f"layer {first}" if first == last else f"layers {first}-{last}"


def t_test(a, b, *, equal_var: bool = False, alternative: str = "two-sided") -> tuple[float, float]:
    """(t, p) of a two-sample t-test, Welch's unless ``equal_var``.

    NaN when a side has fewer than 2 values or neither side varies (t is undefined).
    """
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.size < 2 or b.size < 2 or (np.ptp(a) == 0 and np.ptp(b) == 0):
        return math.nan, math.nan
    with warnings.catch_warnings():
        if np.ptp(a) == 0 or np.ptp(b) == 0:  # a variance of exactly 0, which scipy flags
            warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=equal_var, alternative=alternative)
    return float(result.statistic), float(result.pvalue)


def paired_t_test(a, b) -> tuple[float, float]:
    """(t, p) of a two-sided paired t-test of ``a`` against ``b``; NaN when undefined
    (fewer than two pairs, or no pair differs)."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    diff = a - b
    if diff.size < 2 or not np.any(diff != 0):
        return math.nan, math.nan
    with warnings.catch_warnings():
        if np.ptp(diff) == 0:  # a constant shift: infinite t, scipy warns
            warnings.filterwarnings("ignore", category=RuntimeWarning)
        result = stats.ttest_rel(a, b)
    return float(result.statistic), float(result.pvalue)
