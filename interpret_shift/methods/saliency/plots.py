"""The saliency section's figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Patch

from interpret_shift.core.render.plots import (
    BASE_COLOR,
    CONTEXT_COLOR,
    INSTRUCTION_COLOR,
    TUNED_COLOR,
    bars,
    box_with_dots,
    count,
    floats,
    model_patches,
    new_figure,
    png,
    short,
    styled,
)
from interpret_shift.core.render.tokens import clean_token


def score_categories(groups: Sequence[str | None]) -> list[str]:
    """``all`` plus every dataset group, when there is more than one group to compare."""
    named = sorted({g for g in groups if g is not None})
    return ["all", *named] if len(named) > 1 else ["all"]


@styled
def instruction_scores(base: Any, tuned: Any, groups: Sequence[str | None] | None = None) -> str:
    """Box plots with every prompt as a dot, base vs tuned, overall and per dataset group."""
    base, tuned = floats(base), floats(tuned)
    groups = list(groups) if groups else [None] * len(base)
    categories = score_categories(groups)
    figure = new_figure(min(9.0, 2.6 + 1.5 * len(categories)), 3.2)
    ax = figure.subplots()
    rng = np.random.default_rng(0)
    for i, category in enumerate(categories):
        keep = np.array([category == "all" or g == category for g in groups], dtype=bool)
        for offset, values, color in ((-0.2, base, BASE_COLOR), (0.2, tuned, TUNED_COLOR)):
            box_with_dots(ax, i + offset, values[keep], color, rng)
    labels = [f"{c}\n(n = {count(groups, c)})" for c in categories]
    ax.set_xticks(range(len(categories)), labels)
    ax.set_xlim(-0.6, len(categories) - 0.4)
    ax.set_ylabel("instruction score")
    figure.legend(handles=model_patches(), loc="outside upper left", ncols=2)
    ax.grid(axis="x", visible=False)
    return png(figure)


@styled
def position_curve(base: Any, tuned: Any) -> str:
    """Mean importance density per relative-position bin, one line per model."""
    base, tuned = floats(base), floats(tuned)
    centres = (np.arange(len(base)) + 0.5) / max(len(base), 1)
    figure = new_figure(7, 2.8)
    ax = figure.subplots()
    ax.plot(centres, base, marker="o", markersize=3.5, color=BASE_COLOR, label="base")
    ax.plot(centres, tuned, marker="o", markersize=3.5, color=TUNED_COLOR, label="tuned")
    ax.set_xlim(0, 1)
    ax.set_xlabel("relative position in the prompt (0 = first token, 1 = last)")
    ax.set_ylabel("mean importance density")
    ax.legend(loc="best")
    return png(figure)


@styled
def density_bars(
    tokens: Sequence[str], base: Any, tuned: Any, instruction: Any, context: Any
) -> str:
    """Per-token density, base vs tuned; instruction and context tokens shaded behind."""
    base, tuned = np.nan_to_num(floats(base)), np.nan_to_num(floats(tuned))
    x = np.arange(len(base))
    figure = new_figure(9, 2.1 if len(x) <= 60 else 1.7)
    ax = figure.subplots()
    _shade(ax, instruction, INSTRUCTION_COLOR)
    _shade(ax, context, CONTEXT_COLOR)
    bars(ax, x - 0.2, base, 0.4, BASE_COLOR)
    bars(ax, x + 0.2, tuned, 0.4, TUNED_COLOR)
    if len(x) <= 60:
        labels = [short(clean_token(t).replace("\n", "↵").strip() or "␣", 10) for t in tokens]
        ax.set_xticks(x, labels, rotation=90, fontsize=6.5)
    else:
        ax.set_xlabel("prompt token")
    ax.set_xlim(-0.6, len(x) - 0.4)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("density")
    ax.grid(axis="x", visible=False)
    shades = [
        Patch(color=c, alpha=0.25, label=f"{k} tokens")
        for k, c in (("instruction", INSTRUCTION_COLOR), ("context", CONTEXT_COLOR))
    ]
    figure.legend(handles=[*model_patches(), *shades], loc="outside upper right", ncols=4)
    return png(figure)


def _shade(ax: Axes, mask: Any, color: str) -> None:
    """Shade each run of marked tokens (one span per run keeps the image small)."""
    marked = np.asarray(mask if mask is not None else [], dtype=bool)
    start = None
    for i, flag in enumerate([*marked, False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            ax.axvspan(start - 0.5, i - 0.5, color=color, alpha=0.12, linewidth=0)
            start = None
