"""The post-hoc saliency maths against slow, obvious loop implementations written here."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import stats

from interpret_shift.core.stats import t_test
from interpret_shift.methods.saliency.analysis import (
    WelchResult,
    density,
    instruction_score,
    position_curve,
    quantize,
    sparsify,
    welch_greater,
)

# --- slow references: one scalar at a time, straight from DESIGN §3.1 ---------------------------


def slow_sparsify(s, levels, threshold):
    n, m = len(s), len(s[0]) if len(s) else 0
    out = [[0.0] * m for _ in range(n)]
    for j in range(m):
        column = [max(0.0, float(s[i][j])) for i in range(n)]
        top = max(column) if column else 0.0
        for i in range(n):
            level = math.ceil(column[i] / top * levels) if top > 0 else 0
            out[i][j] = float(level) if level > threshold else 0.0
    return out


def slow_density(sparse, p):
    ratios = []
    for row in sparse:
        l1 = sum(abs(x) for x in row)
        lp = sum(abs(x) ** p for x in row) ** (1.0 / p)
        ratios.append(l1 / lp if lp > 0 else 0.0)
    top = max(ratios) if ratios else 0.0
    return [r / top if top > 0 else 0.0 for r in ratios]


def slow_instruction_score(values, mask):
    total, count = 0.0, 0
    for value, inside in zip(values, mask):
        if inside:
            total += value
            count += 1
    return total / math.log2(2 + count)


def slow_position_curve(values, bins):
    sums, counts = [0.0] * bins, [0] * bins
    n = len(values)
    for i, value in enumerate(values):
        b = int(i * bins / n)
        sums[b] += value
        counts[b] += 1
    return [sums[b] / counts[b] if counts[b] else float("nan") for b in range(bins)]


def slow_welch_greater(a, b):
    mean_a, mean_b = sum(a) / len(a), sum(b) / len(b)
    var_a = sum((x - mean_a) ** 2 for x in a) / (len(a) - 1)
    var_b = sum((x - mean_b) ** 2 for x in b) / (len(b) - 1)
    se_a, se_b = var_a / len(a), var_b / len(b)
    t = (mean_a - mean_b) / math.sqrt(se_a + se_b)
    dof = (se_a + se_b) ** 2 / (se_a**2 / (len(a) - 1) + se_b**2 / (len(b) - 1))
    return t, float(stats.t.sf(t, dof))


# --- tests ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0, 7])
def test_sparsify_matches_loops(seed, threshold):
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(9, 6))
    s[:, 2] = -np.abs(s[:, 2])  # a response token without any positive attribution
    expected = np.array(slow_sparsify(s.tolist(), 10, threshold))
    np.testing.assert_array_equal(sparsify(s, levels=10, threshold=threshold), expected)


def test_quantize_levels_and_column_max():
    s = np.array([[1.0, -2.0], [0.5, -1.0], [0.04, -3.0]])
    np.testing.assert_array_equal(quantize(s, 10), [[10.0, 0.0], [5.0, 0.0], [1.0, 0.0]])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("p", [2, 4])
def test_density_matches_loops(seed, p):
    rng = np.random.default_rng(seed)
    sparse = sparsify(rng.normal(size=(12, 20)), threshold=7)
    sparse[3] = 0.0  # a prompt token no response token depends on
    expected = slow_density(sparse.tolist(), p)
    np.testing.assert_allclose(density(sparse, p=p), expected, rtol=1e-12)
    assert density(sparse, p=p).max() == pytest.approx(1.0)


def test_density_of_all_zero_matrix_is_zero_not_nan():
    result = density(np.zeros((4, 3)))
    assert not np.isnan(result).any()
    np.testing.assert_array_equal(result, np.zeros(4))
    assert density(np.zeros((4, 0))).tolist() == [0.0] * 4


@pytest.mark.parametrize("seed", range(4))
def test_instruction_score_matches_loops(seed):
    rng = np.random.default_rng(seed)
    values = rng.random(15)
    mask = rng.random(15) < 0.4
    expected = slow_instruction_score(values.tolist(), mask.tolist())
    assert instruction_score(values, mask) == pytest.approx(expected, rel=1e-12)


def test_instruction_score_without_instruction_tokens_is_zero():
    assert instruction_score(np.ones(5), np.zeros(5, dtype=bool)) == 0.0


def test_instruction_score_rejects_mismatched_mask():
    with pytest.raises(ValueError, match="shape"):
        instruction_score(np.ones(5), np.ones(4, dtype=bool))


@pytest.mark.parametrize("n", [1, 3, 10, 17, 40])
def test_position_curve_matches_loops(n):
    values = np.random.default_rng(n).random(n)
    expected = slow_position_curve(values.tolist(), 10)
    np.testing.assert_allclose(position_curve(values, bins=10), expected, equal_nan=True)


@pytest.mark.parametrize("seed", range(4))
def test_welch_greater_matches_formula(seed):
    rng = np.random.default_rng(seed)
    a, b = rng.normal(0.5, 1.0, size=14), rng.normal(0.0, 2.0, size=9)
    t, p = slow_welch_greater(a.tolist(), b.tolist())
    result = welch_greater(a, b)
    assert (result.n_a, result.n_b) == (14, 9)
    assert result.mean_a == pytest.approx(sum(a) / 14)
    assert result.mean_b == pytest.approx(sum(b) / 9)
    assert result.t == pytest.approx(t, rel=1e-9)
    assert result.p == pytest.approx(p, rel=1e-9)


def test_welch_greater_is_one_sided():
    high, low = [3.0, 3.5, 4.0, 4.5], [1.0, 1.5, 2.0, 2.5]
    assert welch_greater(high, low).p < 0.05
    assert welch_greater(low, high).p > 0.95


def test_welch_greater_with_too_few_samples_gives_nan_not_error():
    result = welch_greater([1.0], [1.0, 2.0, 3.0])
    assert isinstance(result, WelchResult)
    assert (result.n_a, result.n_b, result.mean_a, result.mean_b) == (1, 3, 1.0, 2.0)
    assert math.isnan(result.t) and math.isnan(result.p)
    empty = welch_greater([], [1.0, 2.0])
    assert empty.n_a == 0 and math.isnan(empty.mean_a) and math.isnan(empty.p)


def test_welch_with_one_constant_side_matches_formula_without_warning():
    # the demo pair's verb shares: every instruction verb at 1.0, general verbs mostly 1.0
    constant, varied = [1.0, 1.0], [0.0] + [1.0] * 8
    t, p = slow_welch_greater(constant, varied)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scipy flags a variance of exactly 0 as precision loss
        result = welch_greater(constant, varied)
        two_sided = t_test(constant, varied)
    assert result.t == pytest.approx(t, rel=1e-9) and result.p == pytest.approx(p, rel=1e-9)
    assert two_sided == pytest.approx((t, 2 * p), rel=1e-9)


def test_t_test_without_spread_on_either_side_is_nan():
    for equal_var in (False, True):
        assert all(map(math.isnan, t_test([2.0, 2.0], [1.0, 1.0, 1.0], equal_var=equal_var)))
