"""The singular spectrum of one weight change ΔW = W_tuned - W_base, and what it tells.

Energy ranks and stable rank need the singular values; the words a change writes and the
principal angles need only the top singular directions. Three ways to get them:

* ``exact``: ``torch.linalg.svd`` of ΔW, every value.
* ``randomized``: the top values and vectors by randomised subspace iteration
  (:func:`interpret_shift.core.linalg.svd_randomized`); energy fractions come from the
  exact Frobenius norm, so a rank beyond the values computed is reported as unknown
  (NaN), never guessed.
* ``factors``: a low-rank adapter gives ΔW = B A with B (out x r), A (r x in). With
  B = Qb Rb and Aᵀ = Qa Ra, ΔW = Qb (Rb Raᵀ) Qaᵀ, so the SVD of the r x r core gives the
  exact spectrum at the cost of two thin QRs, without forming ΔW.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from interpret_shift.core.linalg import svd_randomized

#: Energy fractions whose ranks are reported.
FRACTIONS = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Spectrum:
    """Singular values (descending), top left (out x k) and right (in x k) vectors of ΔW."""

    values: torch.Tensor  # float64
    left: torch.Tensor
    right: torch.Tensor
    energy: float  # ||ΔW||_F^2, exact
    complete: bool  # ``values`` hold every non-zero singular value
    method: str
    shape: tuple[int, int]

    @property
    def numerical_rank(self) -> int:
        """Values above the float32 noise floor of the largest (numpy's matrix_rank rule)."""
        if len(self.values) == 0 or float(self.values[0]) == 0.0:
            return 0
        floor = float(self.values[0]) * max(self.shape) * float(np.finfo(np.float32).eps)
        return int((self.values > floor).sum())

    def energy_ranks(self, fractions=FRACTIONS) -> list[float]:
        """The fewest directions holding each fraction of ||ΔW||_F^2 (0 for ΔW = 0; NaN when
        the values computed do not reach it)."""
        if self.energy <= 0.0:
            return [0.0 for _ in fractions]
        cumulative = torch.cumsum(self.values.square(), 0).numpy() / self.energy
        ranks = []
        for fraction in fractions:
            reached = np.nonzero(cumulative >= fraction * (1 - 1e-9))[0]
            if len(reached):
                ranks.append(float(reached[0] + 1))
            else:  # rounding can leave the sum of all values a hair below the norm
                ranks.append(float(len(cumulative)) if self.complete else float("nan"))
        return ranks

    @property
    def stable_rank(self) -> float:
        """||ΔW||_F^2 / sigma_max^2: an effective rank that is robust to small values."""
        top = float(self.values[0]) if len(self.values) else 0.0
        return 0.0 if top == 0.0 else self.energy / top**2


def of_matrix(
    delta: torch.Tensor, method: str, keep: int, *, power_iters: int = 8, seed: int = 0
) -> Spectrum:
    """The spectrum of a dense ΔW; ``randomized`` computes the top ``keep`` values only."""
    delta = delta.float()
    energy = float(delta.double().square().sum())
    shape = (int(delta.shape[0]), int(delta.shape[1]))
    if method == "exact" or min(shape) <= keep:
        left, values, right_t = torch.linalg.svd(delta, full_matrices=False)
        return Spectrum(values.double(), left, right_t.T, energy, True, "exact", shape)
    generator = torch.Generator().manual_seed(seed)
    values, right = svd_randomized(delta, keep, oversample=keep, power_iters=power_iters,
                                   generator=generator)  # fmt: skip
    left = (delta @ right.T) / values.clamp_min(torch.finfo(values.dtype).tiny)
    return Spectrum(values.double(), left, right.T, energy, False, "randomized", shape)


def of_factors(b: torch.Tensor, a: torch.Tensor) -> Spectrum:
    """The exact spectrum of ΔW = b @ a (b: out x r, a: r x in) from two thin QRs."""
    b, a = b.double(), a.double()
    qb, rb = torch.linalg.qr(b)
    qa, ra = torch.linalg.qr(a.T)
    core_left, values, core_right_t = torch.linalg.svd(rb @ ra.T)
    left, right = qb @ core_left, qa @ core_right_t.T
    energy = float(values.square().sum())
    shape = (int(b.shape[0]), int(a.shape[1]))
    return Spectrum(values, left.float(), right.float(), energy, True, "adapter factors", shape)


def top_directions(spectrum: Spectrum, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top ``k`` (at most the numerical rank) left and right singular vectors as rows,
    each pair's sign fixed by the left vector's largest coordinate (records are stable)."""
    k = min(k, spectrum.numerical_rank)
    left, right = spectrum.left[:, :k].T.float(), spectrum.right[:, :k].T.float()
    if k == 0:
        return left, right
    largest = left.gather(1, left.abs().argmax(dim=1, keepdim=True))
    sign = torch.where(largest < 0, -1.0, 1.0)
    return left * sign, right * sign
