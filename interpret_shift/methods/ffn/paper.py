"""The paper's Table 5 and Figure 3 (arXiv:2310.00492) from its released concept annotations.

The release holds ``results/linear_interpret/linear_task_seed{0..4}.tsv`` and
``linear_concept_seed{0..4}.tsv``: one row per principal component of a feed-forward layer,
labelled by ChatGPT with one seed per file. Columns ``Task Explainable Words Summary Model
Size Layer Type Head Rank Score TopK``; in the concept files the first column holds the
linguistic label. Columns are read by position.

Rows of ``llama`` (base) and ``vicuna`` (tuned) with ``Rank <= 300`` are kept. A row is in
category c when c is a substring of its lower-cased label (a row may be in several). The
proportion of c is the rows in c over the model's kept rows, per seed; each category gets the
mean and population std over the 5 seeds per model and a Student (equal-variance) two-sided
t-test of the 5 base proportions against the 5 tuned. The figure data does the same per group
of 4 layers (``layer // 4``), proportions over the model's kept rows in that group.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interpret_shift.core.stats import layers_label, t_test
from interpret_shift.errors import InputError

TASK_CATEGORIES = ("writing", "math", "coding", "translation", "none")
LINGUISTIC_CATEGORIES = ("semantic", "syntax", "morphology", "phonology")
#: File stem per kind of label: ``task`` and ``linguistic`` (the release calls it concept).
KINDS = {
    "task": ("linear_task", TASK_CATEGORIES),
    "linguistic": ("linear_concept", LINGUISTIC_CATEGORIES),
}
SEEDS = (0, 1, 2, 3, 4)
BASE_MODEL, TUNED_MODEL = "llama", "vicuna"
MAX_RANK = 300
LAYER_GROUP_SIZE = 4
N_COLUMNS = 12
LABEL, MODEL, LAYER, RANK = 0, 4, 6, 9  # column positions


@dataclass(frozen=True)
class Row:
    label: str
    model: str
    layer: int


@dataclass
class SeedRows:
    rows: list[Row] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def seed_path(folder: str | os.PathLike[str], kind: str, seed: int) -> Path:
    return Path(folder) / f"{KINDS[kind][0]}_seed{seed}.tsv"


def read_seed_file(path: Path) -> SeedRows:
    """Kept rows (llama / vicuna, Rank <= 300) of one seed file; bad rows are reported
    (file and line) and skipped; header lines (``Model`` in the model column) are skipped."""
    if not path.is_file():
        raise InputError(
            f"{path} does not exist: Table 5 needs seeds {SEEDS[0]}..{SEEDS[-1]} of "
            "linear_task_seed<N>.tsv and linear_concept_seed<N>.tsv.",
            "--ffn must be the release's results/linear_interpret folder.",
        )
    result = SeedRows()
    text = path.read_bytes().decode("utf-8", errors="replace")
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != N_COLUMNS:
            result.warnings.append(
                f"{path} line {number}: {len(fields)} columns, expected {N_COLUMNS}; skipped."
            )
            continue
        if fields[MODEL] == "Model":
            continue
        try:
            layer, rank = int(fields[LAYER]), float(fields[RANK])
        except ValueError:
            result.warnings.append(
                f"{path} line {number}: Layer {fields[LAYER]!r} / Rank {fields[RANK]!r} "
                "is not a number; skipped."
            )
            continue
        model = fields[MODEL].strip().lower()
        if model not in (BASE_MODEL, TUNED_MODEL):
            continue
        if rank <= MAX_RANK:
            result.rows.append(Row(fields[LABEL].lower(), model, layer))
    return result


def proportions(rows: Sequence[Row], model: str, categories: Sequence[str]) -> dict[str, float]:
    """Share of the model's rows whose label contains each category (NaN without rows)."""
    labels = [row.label for row in rows if row.model == model]
    if not labels:
        return {category: math.nan for category in categories}
    return {c: sum(c in label for label in labels) / len(labels) for c in categories}


@dataclass(frozen=True)
class ProportionCell:
    """One category: the 5 per-seed proportions of each model, their mean and population std,
    and the Student t-test of base against tuned."""

    base: tuple[float, ...]
    tuned: tuple[float, ...]
    t: float
    p: float

    @classmethod
    def of(cls, base: Sequence[float], tuned: Sequence[float]) -> ProportionCell:
        t, p = t_test(base, tuned, equal_var=True)
        return cls(tuple(base), tuple(tuned), t, p)

    @staticmethod
    def _mean(values: tuple[float, ...]) -> float:
        return float(np.mean(values)) if values else math.nan

    @staticmethod
    def _std(values: tuple[float, ...]) -> float:
        return float(np.std(values)) if values else math.nan

    @property
    def base_mean(self) -> float:
        return self._mean(self.base)

    @property
    def base_std(self) -> float:
        return self._std(self.base)

    @property
    def tuned_mean(self) -> float:
        return self._mean(self.tuned)

    @property
    def tuned_std(self) -> float:
        return self._std(self.tuned)

    def to_json(self) -> dict[str, Any]:
        def number(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "base": number(self.base_mean),
            "base_std": number(self.base_std),
            "tuned": number(self.tuned_mean),
            "tuned_std": number(self.tuned_std),
            "t": number(self.t),
            "p": number(self.p),
        }


@dataclass(frozen=True)
class FfnTables:
    """Table 5 (``overall[kind][category]``) and Figure 3's data
    (``by_layers[kind][layers label][category]``); kind is ``task`` or ``linguistic``."""

    overall: dict[str, dict[str, ProportionCell]]
    by_layers: dict[str, dict[str, dict[str, ProportionCell]]]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            **{
                kind: {c: cell.to_json() for c, cell in cells.items()}
                for kind, cells in self.overall.items()
            },
            "by_layers": {
                kind: {
                    label: {c: cell.to_json() for c, cell in cells.items()}
                    for label, cells in groups.items()
                }
                for kind, groups in self.by_layers.items()
            },
        }


def _cells(seeds: Sequence[Sequence[Row]], categories: Sequence[str]) -> dict[str, ProportionCell]:
    base = [proportions(rows, BASE_MODEL, categories) for rows in seeds]
    tuned = [proportions(rows, TUNED_MODEL, categories) for rows in seeds]
    return {c: ProportionCell.of([b[c] for b in base], [t[c] for t in tuned]) for c in categories}


def compute_ffn_tables(folder: str | os.PathLike[str]) -> FfnTables:
    """Table 5 and Figure 3's data from the ``linear_interpret`` folder."""
    overall: dict[str, dict[str, ProportionCell]] = {}
    by_layers: dict[str, dict[str, dict[str, ProportionCell]]] = {}
    warnings: list[str] = []
    for kind, (_, categories) in KINDS.items():
        paths = [seed_path(folder, kind, seed) for seed in SEEDS]
        for path in paths:  # name every missing seed before reading anything
            if not path.is_file():
                read_seed_file(path)
        seeds = []
        for path in paths:
            read = read_seed_file(path)
            warnings += read.warnings
            seeds.append(read.rows)
        overall[kind] = _cells(seeds, categories)
        groups = sorted({row.layer // LAYER_GROUP_SIZE for rows in seeds for row in rows})
        by_layers[kind] = {}
        for group in groups:
            first = group * LAYER_GROUP_SIZE
            label = layers_label(first, first + LAYER_GROUP_SIZE - 1)
            in_group = [[r for r in rows if r.layer // LAYER_GROUP_SIZE == group] for rows in seeds]
            by_layers[kind][label] = _cells(in_group, categories)
    return FfnTables(overall, by_layers, warnings)
