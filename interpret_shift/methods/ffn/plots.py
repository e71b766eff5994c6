"""The FFN concept section's figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes

from interpret_shift.core.render.plots import (
    BASE_COLOR,
    TUNED_COLOR,
    floats,
    new_figure,
    png,
    styled,
)


@styled
def concept_bars(concepts: dict[str, Any]) -> str:
    """Stacked concept shares per layer group, base and tuned side by side, task and level."""
    axes_present = [a for a in ("task", "level") if a in concepts["base"]]
    figure = new_figure(9, 3.6)
    axes = np.atleast_1d(figure.subplots(1, len(axes_present), squeeze=False)[0])
    for ax, axis in zip(axes, axes_present):
        categories = concepts["tasks" if axis == "task" else "levels"]
        _stacked(ax, concepts, axis, categories)
        ax.set_title(f"by {axis}", loc="left")
    axes[0].set_ylabel("share of components")
    return png(figure)


def _stacked(ax: Axes, concepts: dict[str, Any], axis: str, categories: Sequence[str]) -> None:
    groups = concepts["groups"]
    palette = colormaps["tab10" if len(categories) <= 10 else "tab20"]
    for model, offset in (("base", -0.21), ("tuned", 0.21)):
        shares = np.nan_to_num(floats(concepts[model][axis]).reshape(len(groups), -1))
        bottom = np.zeros(len(groups))
        for c, category in enumerate(categories):
            ax.bar(
                np.arange(len(groups)) + offset,
                shares[:, c],
                width=0.38,
                bottom=bottom,
                color=palette(c),
                edgecolor="white",
                linewidth=0.5,
                label=category if model == "base" else None,
            )
            bottom += shares[:, c]
        for g in range(len(groups)):
            ax.text(
                g + offset,
                bottom[g] + 0.02,
                model[0].upper(),
                ha="center",
                fontsize=7,
                color=BASE_COLOR if model == "base" else TUNED_COLOR,
                weight="bold",
            )
    ax.set_xticks(range(len(groups)), list(groups))  # labels such as "layers 0-3"
    ax.set_ylim(0, 1.12)
    ax.grid(axis="x", visible=False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncols=4, fontsize=7.5)
