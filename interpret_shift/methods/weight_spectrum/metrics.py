"""The weight-delta spectrum over layers: tables layer x matrix of effective ranks, norms
and angles, and the words of the largest changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from interpret_shift.core.method import DiffMetric, Json


def _ordered(records: Mapping[str, Any]) -> list[Any]:
    return sorted(records.values(), key=lambda record: record.meta["layer"])


def _matrices(ordered: list[Any]) -> list[str]:
    return list(dict.fromkeys(name for r in ordered for name in r.meta["matrices"]))


def _table(ordered: list[Any], matrices: list[str], pick) -> list[list[float | None]]:
    """layer x matrix of ``pick(record, index)``; null where a layer lacks the matrix or the
    value is unknown (NaN)."""
    rows = []
    for record in ordered:
        where = {name: i for i, name in enumerate(record.meta["matrices"])}
        row = []
        for name in matrices:
            value = float(pick(record, where[name])) if name in where else float("nan")
            row.append(value if np.isfinite(value) else None)
        rows.append(row)
    return rows


def spectrum(records: Mapping[str, Any], context) -> Json:
    """Energy ranks, stable rank, relative and absolute norm per layer and matrix."""
    if not records:
        return {"skipped": "no layers"}
    ordered = _ordered(records)
    matrices = _matrices(ordered)
    fractions = ordered[0].meta["fractions"]
    result: Json = {
        "layers": [r.meta["layer"] for r in ordered],
        "matrices": matrices,
        "fractions": fractions,
        "energy_rank": {
            str(f): _table(ordered, matrices, lambda r, i, j=j: r.arrays["energy_rank"][i, j])
            for j, f in enumerate(fractions)
        },
        "stable_rank": _table(ordered, matrices, lambda r, i: r.arrays["stable_rank"][i]),
        "relative_norm": _table(ordered, matrices, lambda r, i: r.arrays["relative_norm"][i]),
        "frobenius": _table(ordered, matrices, lambda r, i: r.arrays["frobenius"][i]),
        "max_rank": _table(ordered, matrices, lambda r, i: r.arrays["max_rank"][i]),
        "source": sorted({r.meta["source"] for r in ordered}),
        "methods": sorted({m for r in ordered for m in r.meta["methods"]}),
    }
    norms = np.array([[np.nan if v is None else v for v in row]
                      for row in result["relative_norm"]], dtype=float)  # fmt: skip
    result["identical"] = bool(np.nan_to_num(norms).max(initial=0.0) == 0.0)
    if not result["identical"]:
        layer, column = np.unravel_index(np.nanargmax(norms), norms.shape)
        result["largest"] = {"layer": result["layers"][layer], "matrix": matrices[column],
                             "relative_norm": float(norms[layer, column])}  # fmt: skip
    ranks = [v for row in result["energy_rank"]["0.9"] for v in row if v]
    result["median_rank_90"] = float(np.median(ranks)) if ranks else 0.0
    return result


def angles(records: Mapping[str, Any], context) -> Json:
    """Smallest and mean principal angle (degrees) between the top subspaces of ΔW and W."""
    if not records:
        return {"skipped": "no layers"}
    ordered = _ordered(records)
    matrices = _matrices(ordered)

    def reduce(name: str, fn):
        def pick(record, i):
            row = record.arrays[name][i]
            return fn(row[~np.isnan(row)]) if (~np.isnan(row)).any() else np.nan

        return _table(ordered, matrices, pick)

    return {
        "layers": [r.meta["layer"] for r in ordered],
        "matrices": matrices,
        "out_min": reduce("angles_out", np.min),
        "out_mean": reduce("angles_out", np.mean),
        "in_min": reduce("angles_in", np.min),
        "in_mean": reduce("angles_in", np.mean),
    }


def words(records: Mapping[str, Any], context) -> Json:
    """The words each top output direction of the writing matrices' changes writes."""
    rows = []
    for record in _ordered(records):
        for matrix, directions in record.meta["words"].items():
            where = record.meta["matrices"].index(matrix)
            rows.append({"layer": record.meta["layer"], "matrix": matrix,
                         "relative_norm": float(record.arrays["relative_norm"][where]),
                         "directions": directions})  # fmt: skip
    return {"rows": rows}


DIFF_METRICS = (
    DiffMetric(explainer="weight-spectrum", name="spectrum", compute=spectrum,
               description="effective ranks and norms of each weight change"),
    DiffMetric(explainer="weight-spectrum", name="angles", compute=angles,
               description="principal angles between the top subspaces of ΔW and W"),
    DiffMetric(explainer="weight-spectrum", name="words", compute=words,
               description="the words the top directions of each residual write change"),
)  # fmt: skip
