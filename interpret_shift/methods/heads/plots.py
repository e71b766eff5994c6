"""The attention-head sections' figures."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from interpret_shift.core.render.numbers import format_p
from interpret_shift.core.render.plots import (
    VERB_COLORS,
    nan_or_float,
    new_figure,
    overlap_grid,
    png,
    span_label,
    styled,
)


def head_overlap(jaccard: Any) -> str:
    """Layer x head heatmap of the Jaccard overlap of each head's top word pairs."""
    return overlap_grid(jaccard, "head", "layer", "Jaccard overlap (1 = unchanged)")


@styled
def verb_shares(groups: Sequence[dict[str, Any]]) -> str:
    """Mean share per layer group: instruction verbs vs general verbs, p above each pair."""
    figure = new_figure(min(9.0, 2.8 + 1.2 * len(groups)), 3.0)
    ax = figure.subplots()
    x = np.arange(len(groups))
    for offset, verbs in ((-0.19, "instruction"), (0.19, "general")):
        means = [nan_or_float(g[verbs]["mean"]) for g in groups]
        ax.bar(
            x + offset,
            np.nan_to_num(means),
            width=0.36,
            color=VERB_COLORS[verbs],
            label=f"{verbs} verbs",
        )
    for i, group in enumerate(groups):
        top = np.nanmax([nan_or_float(group[k]["mean"]) for k in VERB_COLORS] + [0.0])
        ax.text(i, top + 0.03, f"p = {format_p(group.get('p'))}", ha="center", fontsize=7.5)
    ax.axhline(0.5, color="#2d3340", linestyle=":", linewidth=1)
    ax.set_xticks(x, [span_label(g["layers"]) for g in groups])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("share of heads where\nthe tuned count is higher")
    figure.legend(loc="outside upper left", ncols=2)
    ax.grid(axis="x", visible=False)
    return png(figure)
