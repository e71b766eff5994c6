"""linalg: SVDs, sign convention, principal angles, overlap and matching against obvious routes."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.linalg
import torch

from interpret_shift.core.linalg import (
    centre,
    match_components,
    orient,
    principal_angles,
    subspace_overlap,
    svd_exact,
    svd_randomized,
)


def decaying(rows: int, cols: int, rate: float = 0.85, seed: int = 0) -> torch.Tensor:
    """A matrix with singular values rate**i and random singular vectors."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.standard_normal((rows, cols)))[0]
    v = np.linalg.qr(rng.standard_normal((cols, cols)))[0]
    return torch.from_numpy(u @ np.diag(rate ** np.arange(cols)) @ v.T).float()


def random_rows(k: int, d: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((k, d))


def test_centre_removes_the_row_mean():
    x = torch.arange(12.0).reshape(4, 3) ** 2
    expected = x.numpy() - x.numpy().mean(axis=0)
    np.testing.assert_allclose(centre(x).numpy(), expected, atol=1e-5)


def test_exact_svd_matches_covariance_eigenvectors():
    x = centre(decaying(80, 20))
    values, right = svd_exact(x)
    cov = x.double().numpy().T @ x.double().numpy()
    eigenvalues, eigenvectors = np.linalg.eigh(cov)
    order = np.argsort(eigenvalues)[::-1]
    np.testing.assert_allclose(values.double().numpy() ** 2, eigenvalues[order], rtol=1e-4,
                               atol=1e-6)  # fmt: skip
    cosines = np.abs(np.sum(right.double().numpy()[:8] * eigenvectors[:, order[:8]].T, axis=1))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-4)


def test_randomized_svd_recovers_the_top_subspace_of_a_decaying_spectrum():
    x = centre(decaying(400, 160, rate=0.93))
    _, exact = svd_exact(x)
    values, approx = svd_randomized(x, 20, generator=torch.Generator().manual_seed(0))
    assert approx.shape == (20, 160)
    assert subspace_overlap(exact[:20].numpy(), approx.numpy()) > 0.99
    np.testing.assert_allclose(values.numpy(), svd_exact(x)[0][:20].numpy(), rtol=1e-3)
    rows = approx.double().numpy()
    np.testing.assert_allclose(rows @ rows.T, np.eye(20), atol=1e-5)


def test_randomized_svd_is_reproducible_with_a_seeded_generator():
    x = centre(decaying(100, 60))
    first = svd_randomized(x, 5, generator=torch.Generator().manual_seed(3))[1]
    second = svd_randomized(x, 5, generator=torch.Generator().manual_seed(3))[1]
    assert torch.equal(first, second)


def test_orient_makes_the_largest_coordinate_positive_and_keeps_the_line():
    rows = torch.tensor([[0.1, -0.9, 0.3], [0.5, 0.2, -0.1], [-0.2, 0.1, -0.7]])
    oriented = orient(rows)
    for before, after in zip(rows, oriented):
        assert after[after.abs().argmax()] > 0
        assert torch.equal(after.abs(), before.abs())
    assert torch.equal(orient(-rows), oriented)


def test_principal_angles_match_scipy_on_random_subspaces():
    for k1, k2, seed in [(3, 3, 0), (5, 2, 1), (2, 6, 2), (8, 8, 3)]:
        a, b = random_rows(k1, 12, seed), random_rows(k2, 12, seed + 10)
        expected = np.sort(scipy.linalg.subspace_angles(a.T, b.T))
        # two 8-planes in 12 dimensions share 4 directions: scipy gets ~3e-8 for those zeros
        np.testing.assert_allclose(principal_angles(a, b), expected, atol=1e-7)


def test_principal_angles_of_known_planes():
    e = np.eye(4)
    theta = 0.3
    tilted = np.stack([np.cos(theta) * e[0] + np.sin(theta) * e[2], e[1]])
    np.testing.assert_allclose(principal_angles(e[:2], tilted), [0.0, theta], atol=1e-14)
    np.testing.assert_allclose(principal_angles(e[:2], e[2:]), [np.pi / 2] * 2, atol=1e-14)
    a = random_rows(4, 10, 5)
    assert np.max(principal_angles(a, a)) < 1e-7
    assert np.max(principal_angles(a, 3 * a[::-1])) < 1e-7  # span, not basis, matters


def test_subspace_overlap_is_the_mean_squared_cosine():
    a, b = random_rows(4, 9, 0), random_rows(4, 9, 1)
    assert subspace_overlap(a, b) == pytest.approx(np.mean(np.cos(principal_angles(a, b)) ** 2))
    assert subspace_overlap(a, 2 * a) == pytest.approx(1.0)
    e = np.eye(6)
    assert subspace_overlap(e[:3], e[3:]) == pytest.approx(0.0, abs=1e-15)


def test_match_components_finds_the_best_permutation():
    rng = np.random.default_rng(0)
    a = np.linalg.qr(rng.standard_normal((10, 5)))[0].T  # 5 orthonormal rows
    permutation = np.array([3, 0, 4, 1, 2])
    signs = np.array([1, -1, 1, -1, 1])[:, None]
    b = signs * a[permutation] + 0.01 * rng.standard_normal((5, 10))
    index_a, index_b, cosine = match_components(a, b)
    # brute force over all permutations of |cosine|
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    similarity = np.abs(unit(a) @ unit(b).T)
    best = max(itertools.permutations(range(5)), key=lambda p: similarity[range(5), p].sum())
    assert list(index_b[np.argsort(index_a)]) == list(best)
    assert list(best) == list(np.argsort(permutation))
    np.testing.assert_allclose(cosine, similarity[index_a, index_b])
    assert np.all(cosine > 0.99)


def test_randomized_svd_of_a_wide_matrix_gives_right_singular_vectors():
    x = centre(decaying(400, 160, rate=0.9)).T.contiguous()  # 160 x 400
    values, right = svd_randomized(x, 10, generator=torch.Generator().manual_seed(1))
    exact_values, exact_right = svd_exact(x)
    assert right.shape == (10, 400)
    np.testing.assert_allclose(values.numpy(), exact_values[:10].numpy(), rtol=1e-4)
    cosines = np.abs(np.sum(right.numpy() * exact_right[:10].numpy(), axis=1))
    np.testing.assert_allclose(cosines, 1.0, atol=1e-4)
