"""The difference lens over a pair's records: the relative norm by layer (with its spread
over prompts), and per layer the tokens most often promoted and suppressed."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from interpret_shift.core.method import DiffContext, DiffMetric, Records
from interpret_shift.methods.diff_lens.analysis import GROUPS, READOUTS

NAME = "diff-lens"


def _layers(records: Records) -> list[str]:
    return next(iter(records.values())).meta["layers"] if records else []


def _stats(values: np.ndarray) -> dict[str, Any]:
    """Mean, min and max over prompts per layer, skipping prompts without the group."""
    seen = np.isfinite(values)
    n = seen.sum(axis=0)
    with np.errstate(invalid="ignore"):
        mean = np.where(n > 0, np.nansum(values, axis=0) / np.maximum(n, 1), np.nan)
        low = np.where(n > 0, np.nanmin(np.where(seen, values, np.inf), axis=0), np.nan)
        high = np.where(n > 0, np.nanmax(np.where(seen, values, -np.inf), axis=0), np.nan)
    return {"n": n.tolist(), "mean": mean.tolist(), "min": low.tolist(), "max": high.tolist()}


def norm_by_layer(records: Records, context: DiffContext) -> dict[str, Any]:
    """Per group: |h_T - h_B| / |h_B| by layer, per prompt summarised over prompts, and
    pooled (position-weighted sums of both norms); ``first_layer`` is the first layer with
    any difference at all."""
    result: dict[str, Any] = {"layers": _layers(records)}
    for g, group in enumerate(GROUPS):
        delta = np.stack([r.arrays["delta_norm"][g] for r in records.values()]).astype(float)
        base = np.stack([r.arrays["base_norm"][g] for r in records.values()]).astype(float)
        count = np.array([r.arrays["positions"][g] for r in records.values()], dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            relative = delta / base
            pooled = np.nansum(delta * count[:, None], 0) / np.nansum(base * count[:, None], 0)
        total = int(count.sum())
        changed = np.flatnonzero(np.nan_to_num(np.nansum(delta, axis=0)) > 0)
        result[group] = {
            "positions": total,
            "relative": _stats(relative),
            "pooled": pooled.tolist() if total else [None] * len(result["layers"]),
            "first_layer": int(changed[0]) if len(changed) else None,
        }
    return result


def lens_tokens(records: Records, context: DiffContext) -> dict[str, Any]:
    """Per group, readout and layer: the tokens in the most prompts' top (promoted) or bottom
    (suppressed) lists, with how many prompts and their mean lens value there."""
    top = int(context.options.get("lens_top", 5))
    layers = _layers(records)
    result: dict[str, Any] = {"layers": layers, "groups": list(GROUPS), "readouts": list(READOUTS)}
    for direction, sign in (("promoted", -1.0), ("suppressed", 1.0)):
        grid = []
        for g in range(len(GROUPS)):
            per_readout = []
            for r in range(len(READOUTS)):
                per_readout.append([_aggregate(records, direction, g, r, layer, top, sign)
                                    for layer in range(len(layers))])  # fmt: skip
            grid.append(per_readout)
        result[direction] = grid  # (groups, readouts, layers) lists of tokens
    return result


def _aggregate(records: Records, direction: str, g: int, r: int, layer: int, top: int,
               sign: float) -> list[dict[str, Any]]:  # fmt: skip
    counts: dict[int, int] = defaultdict(int)
    values: dict[int, list[float]] = defaultdict(list)
    texts: dict[int, str] = {}
    for record in records.values():
        ids = record.arrays[f"{direction}_ids"][g, r, layer]
        vals = record.arrays[f"{direction}_values"][g, r, layer]
        words = record.meta[f"{direction}_tokens"][g][r][layer]
        for token, value, word in zip(ids.tolist(), vals.tolist(), words):
            if token < 0:
                continue
            counts[token] += 1
            values[token].append(value)
            texts.setdefault(token, word)
    order = sorted(counts, key=lambda t: (-counts[t], sign * float(np.mean(values[t])), t))
    return [{"id": t, "token": texts[t], "prompts": counts[t], "mean_value": float(np.mean(values[t]))}
            for t in order[:top]]  # fmt: skip


DIFF_METRICS = (
    DiffMetric(explainer=NAME, name="norm-by-layer", compute=norm_by_layer,
               description="|residual difference| / |base residual| by layer"),
    DiffMetric(explainer=NAME, name="lens-tokens", compute=lens_tokens,
               options={"lens_top": 5}, minimums={"lens_top": 1},
               description="tokens the difference promotes and suppresses, by layer"),
)  # fmt: skip
