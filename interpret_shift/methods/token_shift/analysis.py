"""The token distribution shift on arrays: ranks, classes and their aggregates.

At response position j the tuned model's token is its own greedy choice t_j (the argmax
of its next-token distribution given the prompt and the response so far). Its rank under
the base model fed the same prefix is 1 + the number of tokens the base model scores
strictly higher. Classes (Lin et al. 2023, "The Unlocking Spell on Base LLMs"):
unshifted (rank 1), marginal (rank 2-3), shifted (rank > 3).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

CLASSES = ("unshifted", "marginal", "shifted")
MARGINAL_MAX = 3  # the largest rank that is still "marginal"


@dataclass
class Shift:
    """Per response position: the tuned model's token and how the base model sees it."""

    tuned_ids: np.ndarray  # (m,) the tuned model's greedy choice
    base_top_ids: np.ndarray  # (m,) the base model's greedy choice
    base_rank: np.ndarray  # (m,) rank of tuned_ids under the base model, 1 = its top
    p_base: np.ndarray  # (m,) base probability of tuned_ids
    p_tuned: np.ndarray  # (m,) tuned probability of tuned_ids
    kl: np.ndarray  # (m,) KL(tuned || base) of the next-token distributions, nats


def token_shift(base_logits: torch.Tensor, tuned_logits: torch.Tensor) -> Shift:
    """The shift at every position from the two models' logits (m, vocab) on one prefix each."""
    base, tuned = base_logits.float(), tuned_logits.float()
    chosen = tuned.argmax(-1)
    rank = 1 + (base > base.gather(-1, chosen[:, None])).sum(-1)
    log_b, log_t = base.log_softmax(-1), tuned.log_softmax(-1)
    kl = (log_t.exp() * (log_t - log_b)).sum(-1).clamp_min(0.0)

    def pick(log_p: torch.Tensor) -> np.ndarray:
        return log_p.gather(-1, chosen[:, None])[:, 0].exp().numpy().astype(np.float32)

    return Shift(
        tuned_ids=chosen.numpy().astype(np.int64),
        base_top_ids=base.argmax(-1).numpy().astype(np.int64),
        base_rank=rank.numpy().astype(np.int64),
        p_base=pick(log_b),
        p_tuned=pick(log_t),
        kl=kl.numpy().astype(np.float32),
    )


def classify(ranks: Sequence[int] | np.ndarray) -> np.ndarray:
    """Class index per position: 0 unshifted, 1 marginal, 2 shifted."""
    ranks = np.asarray(ranks, dtype=np.int64)
    return np.where(ranks <= 1, 0, np.where(ranks <= MARGINAL_MAX, 1, 2))


def shares(classes: np.ndarray) -> dict[str, float | None]:
    """The share of each class among the positions (None when there are none)."""
    n = len(classes)
    return {name: (float(np.mean(classes == i)) if n else None) for i, name in enumerate(CLASSES)}


def by_position(classes: Iterable[np.ndarray], limit: int) -> np.ndarray:
    """Counts (positions, 3 classes) over prompts, for the first ``limit`` response positions."""
    counts = np.zeros((limit, len(CLASSES)), dtype=np.int64)
    for row in classes:
        row = row[:limit]
        np.add.at(counts, (np.arange(len(row)), row), 1)
    return counts
