"""The difference lens's figure: the relative norm of the difference by layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from interpret_shift.core.render.plots import floats, layer_ticks, new_figure, png, styled

GROUP_COLORS = {"prompt": "#4C78A8", "response": "#F58518"}


@styled
def norm_by_layer(curves: dict[str, dict[str, Any]]) -> str:
    """One line per group of positions: the mean over prompts of |Δh| / |h_base| after each
    layer, the band from the smallest to the largest prompt."""
    figure = new_figure(6.4, 3.2)
    ax = figure.subplots()
    for group, stats in curves.items():
        mean = floats(stats["mean"])
        x = np.arange(len(mean))
        color = GROUP_COLORS.get(group, "#555555")
        ax.plot(x, mean, marker="o", markersize=3.5, color=color, label=f"{group} positions")
        ax.fill_between(x, floats(stats["min"]), floats(stats["max"]), color=color, alpha=0.18,
                        linewidth=0)  # fmt: skip
    ax.set_xlabel("layer")
    ax.set_ylabel("|h_tuned − h_base| / |h_base|")
    ax.set_ylim(bottom=0)
    layer_ticks(ax.xaxis)
    ax.legend(loc="upper left")
    return png(figure)
