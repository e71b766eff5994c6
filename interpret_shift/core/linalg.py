"""Small linear-algebra pieces: principal directions, subspace comparison, component matching.

Directions are rows (``(k, d)``), as the explainers store them. SVDs run in torch in the
input's dtype (float32 is plenty for the top components and fast); comparisons between
subspaces run in float64 numpy because angles near zero are where the interest lies.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def centre(matrix: torch.Tensor) -> torch.Tensor:
    """Subtract the mean row, so singular directions are those of the rows' covariance."""
    return matrix - matrix.mean(dim=0, keepdim=True)


def svd_exact(matrix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All singular values (descending) and right singular vectors as rows."""
    _, values, right = torch.linalg.svd(matrix, full_matrices=False)
    return values, right


def svd_randomized(
    matrix: torch.Tensor,
    rank: int,
    *,
    oversample: int = 10,
    power_iters: int = 4,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``rank`` singular values and right singular vectors by randomised subspace
    iteration (Halko, Martinsson & Tropp 2011, Algorithms 4.4 and 5.1).

    A Gaussian test matrix starts a basis of the dominant singular subspace on the short
    side of ``matrix``; each power iteration applies ``X^T X`` and re-orthonormalises by
    QR, which is cheap there (short side x (rank + oversample)). A Rayleigh-Ritz step,
    a small float64 eigenproblem, then gives the values and vectors. Skipping the QR
    between ``X`` and ``X^T`` only loses singular values below ~sqrt(eps) of the largest,
    far below any component worth explaining.
    """
    tall = matrix.shape[0] >= matrix.shape[1]
    a = matrix if tall else matrix.T  # (m, k), m >= k
    width = min(rank + oversample, a.shape[1])
    test = torch.randn(a.shape[0], width, generator=generator, dtype=a.dtype)
    basis = torch.linalg.qr(a.T @ test.to(a.device)).Q  # (k, width)
    for _ in range(power_iters):
        basis = torch.linalg.qr(a.T @ (a @ basis)).Q
    projected = (a @ basis).double()  # (m, width)
    eigenvalues, rotation = torch.linalg.eigh(projected.T @ projected)
    eigenvalues, rotation = eigenvalues.flip(0)[:rank], rotation.flip(1)[:, :rank]
    values = eigenvalues.clamp(min=0).sqrt()
    if tall:
        vectors = (basis.double() @ rotation).T
    else:  # right singular vectors of the wide matrix are left ones of its transpose
        vectors = (projected @ rotation / values.clamp(min=1e-300)).T
    return values.to(matrix.dtype), vectors.to(matrix.dtype)


def orient(directions: torch.Tensor) -> torch.Tensor:
    """Flip each row so its largest-magnitude coordinate is positive (singular vectors have no
    sign of their own; this makes records deterministic)."""
    largest = directions.gather(1, directions.abs().argmax(dim=1, keepdim=True))
    return directions * torch.where(largest < 0, -1.0, 1.0).to(directions.dtype)


def _basis(rows) -> np.ndarray:
    """An orthonormal basis (columns) of the span of ``rows``."""
    return np.linalg.qr(np.asarray(rows, dtype=np.float64).T).Q


def principal_angles(a, b) -> np.ndarray:
    """Principal angles (radians, ascending) between the spans of the rows of ``a`` and ``b``.

    Cosines are the singular values of ``Qa^T Qb`` (clipped to [0, 1]). Because arccos is
    ill-conditioned near 0, angles below 45 degrees are taken from the sines instead: the
    singular values of ``Qb - Qa Qa^T Qb`` (Knyazev & Argentati 2002).
    """
    qa, qb = _basis(a), _basis(b)
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa
    overlap = qa.T @ qb
    cosines = np.clip(np.linalg.svd(overlap, compute_uv=False), 0.0, 1.0)  # descending
    sines = np.clip(np.linalg.svd(qb - qa @ overlap, compute_uv=False), 0.0, 1.0)[::-1]
    angles = np.where(cosines**2 > 0.5, np.arcsin(sines), np.arccos(cosines))
    return np.sort(angles)


def subspace_overlap(a, b) -> float:
    """Mean squared cosine of the principal angles: 1 for the same subspace, 0 for orthogonal."""
    qa, qb = _basis(a), _basis(b)
    return float(np.square(qa.T @ qb).sum() / min(qa.shape[1], qb.shape[1]))


def match_components(a, b) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pair rows of ``a`` with rows of ``b`` one-to-one, maximising the summed |cosine|.

    Returns ``(index_a, index_b, cosine)``; the cosine is the absolute value since a
    direction and its negative are the same component.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    similarity = np.abs(a @ b.T)
    index_a, index_b = linear_sum_assignment(similarity, maximize=True)
    return index_a, index_b, similarity[index_a, index_b]
