"""Analyses of FFN concepts: what share of components serve each task or linguistic level,
per model, layer group and seed, base vs tuned (the paper's Table 5 and Figure 3).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from interpret_shift.core.records import Explanation
from interpret_shift.core.stats import layers_label, t_test
from interpret_shift.methods.ffn.annotators import CANNOT_TELL, LEVELS, TASKS, Annotation, Annotator

ALL = "all layers"


@dataclass(frozen=True)
class Labelled:
    """One component's annotation under one seed, and where the component came from."""

    model: str
    layer: int
    component: int
    annotation: Annotation


def label_records(
    records: Iterable[Explanation],
    annotator: Annotator,
    model: str,
    seeds: Sequence[int] = (0,),
    components: int | None = None,
) -> list[Labelled]:
    """Annotate the top words of every component of ``ffn`` records under every seed."""
    labels = []
    for record in records:
        layer = int(record.meta["layer"])
        for component, words in enumerate(record.meta["top_words"][:components]):
            for seed in seeds:
                labels.append(Labelled(model, layer, component, annotator.annotate(words, seed)))
    return labels


def default_group_size(n_layers: int) -> int:
    """A quarter of the depth (rounded up), so every model is read in four layer groups."""
    return max(1, math.ceil(n_layers / 4))


@dataclass(frozen=True)
class Proportions:
    """Shares of explainable components per category.

    ``shares[model]`` is ``(groups, seeds, categories)``; ``explainable[model]`` is
    ``(groups, seeds)``, the share of components that got a concept at all, and
    ``counts[model]`` the number of explainable components (the shares' denominator).
    """

    axis: str
    categories: tuple[str, ...]
    groups: tuple[str, ...]
    seeds: tuple[int, ...]
    shares: dict[str, np.ndarray]
    explainable: dict[str, np.ndarray]
    counts: dict[str, np.ndarray]


def proportions(
    labels: Sequence[Labelled],
    axis: str = "task",
    categories: Sequence[str] | None = None,
    group_size: int | None = None,
) -> Proportions:
    """Per model, layer group (plus all layers) and seed, the share of explainable
    components whose task (or level) contains each category name.

    Matching is by substring, as in the paper's analysis: the category ``"writing"``
    counts daily, literary and professional writing together. A component tagged with
    several tasks counts for each, so task shares may sum to more than one.
    """
    if axis not in ("task", "level"):
        raise ValueError(f"axis must be 'task' or 'level', not {axis!r}")
    default = TASKS if axis == "task" else LEVELS
    categories = tuple(categories or (*default, CANNOT_TELL))
    n_layers = max(label.layer for label in labels) + 1 if labels else 0
    size = group_size or default_group_size(n_layers)
    bounds = [(start, min(start + size, n_layers)) for start in range(0, n_layers, size)]
    groups = (ALL, *(layers_label(a, b - 1) for a, b in bounds))
    seeds = tuple(sorted({label.annotation.seed for label in labels}))
    models = list(dict.fromkeys(label.model for label in labels))

    # one row per label: model, group index, seed index, explainable, category hits
    model_id = np.array([models.index(label.model) for label in labels], dtype=int)
    group_id = np.array([1 + label.layer // size for label in labels], dtype=int)
    seed_id = np.array([seeds.index(label.annotation.seed) for label in labels], dtype=int)
    explained = np.array([label.annotation.explainable for label in labels], dtype=float)
    hits = np.array(
        [[any(c in v for v in _values(label.annotation, axis)) for c in categories]
         for label in labels],
        dtype=float,
    ).reshape(len(labels), len(categories))  # fmt: skip

    shares, explainable, counts = {}, {}, {}
    for m, model in enumerate(models):
        total = np.zeros((len(groups), len(seeds)))
        good = np.zeros((len(groups), len(seeds)))
        hit = np.zeros((len(groups), len(seeds), len(categories)))
        mine = model_id == m
        for groups_of_row in (np.zeros_like(group_id), group_id):  # all layers, then per group
            index = (groups_of_row[mine], seed_id[mine])
            np.add.at(total, index, 1.0)
            np.add.at(good, index, explained[mine])
            np.add.at(hit, index, hits[mine] * explained[mine, None])
        shares[model] = np.divide(hit, good[..., None], out=np.full_like(hit, np.nan),
                                  where=good[..., None] > 0)  # fmt: skip
        explainable[model] = np.divide(good, total, out=np.full_like(good, np.nan),
                                       where=total > 0)  # fmt: skip
        counts[model] = good.astype(int)
    return Proportions(axis, categories, groups, seeds, shares, explainable, counts)


def _values(annotation: Annotation, axis: str) -> tuple[str, ...]:
    return annotation.tasks if axis == "task" else (annotation.level,)


@dataclass(frozen=True)
class CategoryTest:
    """Base vs tuned share of one category in one layer group, over seeds."""

    category: str
    group: str
    n_base: int
    n_tuned: int
    mean_base: float
    std_base: float
    mean_tuned: float
    std_tuned: float
    t: float
    p: float


def compare_proportions(
    table: Proportions, base: str, tuned: str, *, equal_var: bool = True
) -> list[CategoryTest]:
    """Two-sided t-test of the per-seed shares, base vs tuned, per group and category.

    The paper compared the per-seed proportions with Student's test (``equal_var``);
    with fewer than two seeds per side t and p are NaN.
    """
    results = []
    for g, group in enumerate(table.groups):
        for c, category in enumerate(table.categories):
            a = table.shares[base][g, :, c]
            b = table.shares[tuned][g, :, c]
            a, b = a[~np.isnan(a)], b[~np.isnan(b)]
            t, p = t_test(a, b, equal_var=equal_var)
            results.append(
                CategoryTest(
                    category, group, a.size, b.size, _mean(a), _std(a), _mean(b), _std(b), t, p
                )  # fmt: skip
            )
    return results


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else math.nan


def _std(x: np.ndarray) -> float:
    return float(x.std()) if x.size else math.nan
