"""Patching over the prompts: recovered share and KL per direction, component and layer,
with their spread. A share that is 0/0 for every prompt stays ``null`` with its reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from interpret_shift.core.method import DiffMetric, Json


def _spread(values: np.ndarray) -> Json:
    """Per layer over prompts (rows): mean, median, quartiles, extremes; null where none."""
    defined = ~np.isnan(values)
    count = defined.sum(axis=0)

    def stat(fn) -> list[float | None]:
        return [float(fn(values[defined[:, i], i])) if count[i] else None
                for i in range(values.shape[1])]  # fmt: skip

    return {
        "mean": stat(np.mean),
        "median": stat(np.median),
        "q25": stat(lambda v: np.quantile(v, 0.25)),
        "q75": stat(lambda v: np.quantile(v, 0.75)),
        "min": stat(np.min),
        "max": stat(np.max),
    }


def _layout(records: Mapping[str, Any]) -> tuple[list[str], list[str], list[int], list[str]]:
    first = next(iter(records.values()))
    meta = first.meta
    return meta["directions"], meta["components"], meta["layers"], sorted(records)


def _by_component(records: Mapping[str, Any], keys: list[str], array: str, d: int) -> Json:
    """Per component, the :func:`_spread` over the prompts ``keys`` of ``array[d, c]``."""
    _, components, layers, _ = _layout(records)
    return {
        component: _spread(np.array([records[k].arrays[array][d, c] for k in keys],
                                    dtype=np.float64).reshape(len(keys), len(layers)))
        for c, component in enumerate(components)
    }  # fmt: skip


def recovery(records: Mapping[str, Any], context) -> Json:
    """Recovered share of the other model's log-probability of the response."""
    if not records:
        return {"skipped": "no prompts"}
    directions, components, layers, keys = _layout(records)
    result: Json = {"directions": directions, "components": components, "layers": layers}
    for d, direction in enumerate(directions):
        reasons = {key: records[key].meta["undefined"][direction] for key in keys
                   if records[key].meta["undefined"][direction]}  # fmt: skip
        defined = [key for key in keys if key not in reasons]
        entry: Json = {"n": len(defined), "undefined": reasons, "reason": None}
        if not defined:
            entry["reason"] = "undefined for every prompt: " + sorted(set(reasons.values()))[0]
        result[direction] = entry | _by_component(records, defined, "recovery", d)
    return result


def kl(records: Mapping[str, Any], context) -> Json:
    """Mean KL to the other model's distribution after patching, and before (``clean``)."""
    if not records:
        return {"skipped": "no prompts"}
    directions, components, layers, keys = _layout(records)
    keys = [k for k in keys if records[k].meta["n_response_tokens"] > 0]
    result: Json = {"directions": directions, "components": components, "layers": layers}
    for d, direction in enumerate(directions):
        clean = [float(records[k].arrays["kl_clean"][d]) for k in keys]
        entry: Json = {"n": len(keys), "clean_mean": float(np.mean(clean)) if clean else None}
        result[direction] = entry | _by_component(records, keys, "kl_patched", d)
    return result


DIFF_METRICS = (
    DiffMetric(explainer="patching", name="recovery", compute=recovery,
               description="recovered share of the other model's response log-probability"),
    DiffMetric(explainer="patching", name="kl", compute=kl,
               description="KL to the other model's distribution, patched and clean"),
)  # fmt: skip
