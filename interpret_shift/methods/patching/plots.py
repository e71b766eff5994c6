"""The patching section's figures: recovery and KL by layer, per direction and component."""

from __future__ import annotations

import numpy as np

from interpret_shift.core.render.plots import (
    BASE_COLOR,
    TUNED_COLOR,
    floats,
    layer_ticks,
    new_figure,
    png,
    styled,
)

COLORS = {"resid_post": "#2d3340", "attn.out": BASE_COLOR, "mlp.out": TUNED_COLOR}
TITLES = {"into_base": "tuned → base", "into_tuned": "base → tuned"}


@styled
def recovery_grid(recovery: dict) -> str:
    """Median recovered share by layer (line) and its interquartile range (band)."""
    directions, components = recovery["directions"], recovery["components"]
    layers = np.asarray(recovery["layers"])
    figure = new_figure(3.0 * len(components) + 0.6, 2.4 * len(directions) + 0.3)
    grid = figure.subplots(len(directions), len(components), squeeze=False, sharey=True)
    for row, direction in enumerate(directions):
        entry = recovery[direction]
        for col, component in enumerate(components):
            ax = grid[row][col]
            ax.axhline(0, color="#8a8f98", linewidth=0.7)
            ax.axhline(1, color="#8a8f98", linewidth=0.7, linestyle="--")
            if entry["reason"]:
                ax.text(0.5, 0.5, "undefined (0/0)", transform=ax.transAxes, ha="center",
                        va="center", color="#8a8f98")  # fmt: skip
            else:
                spread = entry[component]
                color = COLORS.get(component, BASE_COLOR)
                ax.fill_between(layers, floats(spread["q25"]), floats(spread["q75"]),
                                color=color, alpha=0.25, linewidth=0)  # fmt: skip
                ax.plot(layers, floats(spread["median"]), marker="o", markersize=3, color=color)
            ax.set_title(f"{TITLES.get(direction, direction)} · {component}", loc="left")
            layer_ticks(ax.xaxis)
            if row == len(directions) - 1:
                ax.set_xlabel("layer patched")
        grid[row][0].set_ylabel("recovered share")
    return png(figure)


@styled
def kl_lines(kl: dict) -> str:
    """Mean KL to the other model after patching each layer; dashed: before patching."""
    directions, components = kl["directions"], kl["components"]
    layers = np.asarray(kl["layers"])
    figure = new_figure(3.2 * len(directions) + 0.4, 2.6)
    axes = figure.subplots(1, len(directions), squeeze=False)[0]
    for ax, direction in zip(axes, directions):
        entry = kl[direction]
        for component in components:
            ax.plot(layers, floats(entry[component]["mean"]), marker="o", markersize=3,
                    color=COLORS.get(component, BASE_COLOR), label=component)  # fmt: skip
        if entry["clean_mean"] is not None:
            ax.axhline(entry["clean_mean"], color="#8a8f98", linestyle="--", label="unpatched")
        ax.set_title(TITLES.get(direction, direction), loc="left")
        ax.set_xlabel("layer patched")
        layer_ticks(ax.xaxis)
    axes[0].set_ylabel("mean KL (nats)")
    axes[-1].legend(loc="best")
    return png(figure)
