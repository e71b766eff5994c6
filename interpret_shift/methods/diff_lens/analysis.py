"""The activation-difference lens on tensors: residual differences and their words.

For layer l and the positions P of a group (the prompt, or the first response tokens),
with h_B, h_T the two models' residual streams after layer l on the same input:

    delta_p = h_T[p] - h_B[p],   mean difference  d = mean_{p in P} delta_p,
    relative norm = mean_p |delta_p| / mean_p |h_B[p]|,
    lens_M(d) = unembed_M(final_norm_M(d))   for M = base and tuned,

the words the difference writes, read as each model's last layer would read them: the
highest entries of lens_M are the tokens the tuning promotes, the lowest those it suppresses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

GROUPS = ("prompt", "response")
READOUTS = ("base", "tuned")


@dataclass
class Difference:
    """Per group (2) and layer (L): statistics of the residual difference."""

    delta_mean: np.ndarray  # (2, L, d) mean difference over the group's positions
    delta_norm: np.ndarray  # (2, L) mean over positions of |h_T - h_B|
    base_norm: np.ndarray  # (2, L) mean over positions of |h_B|
    mean_norm: np.ndarray  # (2, L) |mean difference|
    positions: np.ndarray  # (2,) number of positions in each group


def difference(base: torch.Tensor, tuned: torch.Tensor, groups: list[slice]) -> Difference:
    """Statistics of ``tuned - base`` (layers, positions, d) over each group of positions."""
    base, tuned = base.float(), tuned.float()
    n_layers, _, width = base.shape
    out = Difference(np.zeros((len(groups), n_layers, width), np.float32),
                     *(np.full((len(groups), n_layers), np.nan, np.float32) for _ in range(3)),
                     np.zeros(len(groups), np.int64))  # fmt: skip
    for g, where in enumerate(groups):
        b, delta = base[:, where], tuned[:, where] - base[:, where]
        out.positions[g] = delta.shape[1]
        if delta.shape[1] == 0:
            continue
        mean = delta.mean(dim=1)
        out.delta_mean[g] = mean.numpy()
        out.delta_norm[g] = delta.norm(dim=-1).mean(dim=1).numpy()
        out.base_norm[g] = b.norm(dim=-1).mean(dim=1).numpy()
        out.mean_norm[g] = mean.norm(dim=-1).numpy()
    return out


@torch.no_grad()
def lens(
    readout: Callable[[torch.Tensor], torch.Tensor],
    vectors: torch.Tensor,
    k: int,
    readable: np.ndarray,
) -> tuple[np.ndarray, ...]:
    """Top-``k`` and bottom-``k`` tokens of ``readout`` (final norm, then unembedding) of each
    vector (L, d): ids (L, k) and values (L, k), promoted then suppressed. Rows that are not
    ``readable`` (no difference to read) get ids -1 and NaN values."""
    logits = readout(vectors).float()
    k = min(k, logits.shape[-1])
    top, bottom = logits.topk(k, dim=-1), logits.topk(k, dim=-1, largest=False)
    result = []
    for pick in (top, bottom):
        ids = np.where(readable[:, None], pick.indices.cpu().numpy(), -1).astype(np.int64)
        values = np.where(readable[:, None], pick.values.cpu().numpy(), np.nan).astype(np.float32)
        result += [ids, values]
    return tuple(result)
