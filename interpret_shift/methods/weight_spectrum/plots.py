"""The weight-spectrum section's figure: effective rank and relative norm as heatmaps."""

from __future__ import annotations

import numpy as np

from interpret_shift.core.render.plots import floats, new_figure, png, styled

MAX_LABELS = 40  # cells annotated with their value up to this many rows


@styled
def rank_heatmaps(spectrum: dict, fraction: str = "0.9") -> str:
    """Left: the rank holding ``fraction`` of the energy; right: ||ΔW|| / ||W||."""
    layers, matrices = spectrum["layers"], spectrum["matrices"]
    panels = [
        (floats(spectrum["energy_rank"][fraction]), f"rank at {float(fraction):.0%} energy",
         "Blues", ".0f"),
        (floats(spectrum["relative_norm"]), "‖ΔW‖ / ‖W‖", "Oranges", ".2g"),
    ]  # fmt: skip
    height = min(1.2 + 0.28 * len(layers), 14)
    figure = new_figure(2 * (1.2 + 0.55 * len(matrices)) + 1.0, height)
    axes = figure.subplots(1, 2, squeeze=False)[0]
    for ax, (values, title, cmap, fmt) in zip(axes, panels):
        grid = values.reshape(len(layers), len(matrices))
        image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap,
                          vmin=0, interpolation="nearest")  # fmt: skip
        ax.set_xticks(range(len(matrices)), matrices, rotation=45, ha="right")
        ax.set_yticks(range(len(layers)), [str(layer) for layer in layers])
        ax.grid(False)
        ax.set_title(title, loc="left")
        if len(layers) <= MAX_LABELS:
            top = np.nanmax(grid) if np.isfinite(grid).any() else 0
            for (row, col), value in np.ndenumerate(grid):
                text = "?" if np.isnan(value) else format(value, fmt)
                dark = np.isfinite(value) and top > 0 and value > 0.6 * top
                ax.text(col, row, text, ha="center", va="center", fontsize=7,
                        color="white" if dark else "#2d3340")  # fmt: skip
        figure.colorbar(image, ax=ax, shrink=0.8)
    axes[0].set_ylabel("layer")
    return png(figure)
