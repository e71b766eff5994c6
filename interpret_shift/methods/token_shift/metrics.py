"""The token shift's analyses over a pair's records: shift ratios per prompt and overall, by
response position, the tokens most often shifted, and a few responses token by token."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from interpret_shift.core.method import DiffContext, DiffMetric, Records
from interpret_shift.methods.token_shift import analysis as ts

NAME = "token-shift"


def _classes(record) -> np.ndarray:
    return ts.classify(record.arrays["base_rank"])


def shift_ratios(records: Records, context: DiffContext) -> dict[str, Any]:
    """Class shares and mean KL per prompt, and pooled over every response token."""
    rows, pooled, kls = [], [], []
    for key, record in records.items():
        classes, kl = _classes(record), np.asarray(record.arrays["kl"], dtype=float)
        pooled.append(classes)
        kls.append(kl)
        rows.append({"id": key, "group": record.meta.get("group"), "n": int(len(classes)),
                     **ts.shares(classes),
                     "mean_kl": float(kl.mean()) if len(kl) else None})  # fmt: skip
    classes = np.concatenate(pooled) if pooled else np.zeros(0, dtype=np.int64)
    kl = np.concatenate(kls) if kls else np.zeros(0)
    ratios = [row["shifted"] for row in rows if row["shifted"] is not None]
    overall = {"n_tokens": int(len(classes)), "n_prompts": len(rows), **ts.shares(classes),
               "mean_kl": float(kl.mean()) if len(kl) else None,
               "mean_prompt_shift_ratio": float(np.mean(ratios)) if ratios else None}  # fmt: skip
    return {"marginal_max_rank": ts.MARGINAL_MAX, "per_prompt": rows, "overall": overall}


def position_curve(records: Records, context: DiffContext) -> dict[str, Any]:
    """Share of each class at each response position (0 = the first response token)."""
    limit = int(context.options.get("max_positions", 64))
    counts = ts.by_position((_classes(r) for r in records.values()), limit)
    n = counts.sum(axis=1)
    stop = int(np.flatnonzero(n)[-1]) + 1 if n.any() else 0
    counts, n = counts[:stop], n[:stop]
    kl_sum = np.zeros(stop)
    for record in records.values():
        kl = np.asarray(record.arrays["kl"], dtype=float)[:stop]
        kl_sum[: len(kl)] += kl
    return {
        "positions": list(range(stop)),
        "n": n.tolist(),
        **{name: (counts[:, i] / n).tolist() for i, name in enumerate(ts.CLASSES)},
        "mean_kl": (kl_sum / np.maximum(n, 1)).tolist(),
    }


def top_shifted(records: Records, context: DiffContext) -> dict[str, Any]:
    """The tuned model's tokens most often shifted, over all prompts: how often each was
    shifted, how often the tuned model chose it at all, and in how many prompts."""
    shifted, chosen, prompts = Counter(), Counter(), defaultdict(set)
    ranks, texts = defaultdict(list), {}
    for key, record in records.items():
        classes, ids = _classes(record), record.arrays["tuned_ids"]
        for token, cls, rank, text in zip(ids.tolist(), classes, record.arrays["base_rank"],
                                          record.meta["tuned_tokens"]):  # fmt: skip
            chosen[token] += 1
            texts.setdefault(token, text)
            if cls == 2:
                shifted[token] += 1
                prompts[token].add(key)
                ranks[token].append(int(rank))
    top = int(context.options.get("top", 20))
    order = sorted(shifted, key=lambda t: (-shifted[t], t))[:top]
    return {
        "n_shifted": int(sum(shifted.values())),
        "tokens": [{"id": t, "token": texts[t], "shifted": shifted[t], "chosen": chosen[t],
                    "prompts": len(prompts[t]), "median_base_rank": float(np.median(ranks[t]))}
                   for t in order],
    }  # fmt: skip


def examples(records: Records, context: DiffContext) -> list[dict[str, Any]]:
    """The first few responses token by token, for the report's coloured text."""
    shown = []
    for key in list(records)[: int(context.options.get("examples", 4))]:
        record = records[key]
        arrays, meta = record.arrays, record.meta
        shown.append({
            "id": key,
            "source": meta.get("response_source"),
            "tokens": meta["response_tokens"],
            "tuned_tokens": meta["tuned_tokens"],
            "base_top_tokens": meta["base_top_tokens"],
            "classes": _classes(record).tolist(),
            "base_rank": arrays["base_rank"].tolist(),
            "p_base": arrays["p_base"].tolist(),
            "p_tuned": arrays["p_tuned"].tolist(),
            "kl": arrays["kl"].tolist(),
        })  # fmt: skip
    return shown


DIFF_METRICS = (
    DiffMetric(explainer=NAME, name="shift-ratio", compute=shift_ratios,
               description="share of unshifted, marginal and shifted tokens per prompt and overall"),
    DiffMetric(explainer=NAME, name="shift-by-position", compute=position_curve,
               options={"max_positions": 64}, minimums={"max_positions": 1},
               description="share of each class by response position"),
    DiffMetric(explainer=NAME, name="top-shifted", compute=top_shifted,
               options={"top": 20}, minimums={"top": 1},
               description="the tuned model's tokens most often shifted, with counts"),
    DiffMetric(explainer=NAME, name="shift-examples", compute=examples,
               options={"examples": 4}, minimums={"examples": 0},
               description="a few responses token by token with their classes"),
)  # fmt: skip
