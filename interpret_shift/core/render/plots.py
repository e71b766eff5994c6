"""Matplotlib figures for reports: one style, the Agg canvas, base64 PNG out.

Figures are drawn on bare ``Figure`` objects with the Agg canvas: no pyplot global state, no
display needed. Chart functions take plain lists as they come from diff JSON (``None`` where
a value is missing) and return base64 PNG text.
"""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from interpret_shift.core.render import DPI

BASE_COLOR = "#4C78A8"
TUNED_COLOR = "#F58518"
INSTRUCTION_COLOR = "#2F5DA8"
CONTEXT_COLOR = "#2A9D8F"
VERB_COLORS = {"instruction": "#7A5195", "general": "#A0AEC0"}
DENSITY_CMAP = "YlOrRd"

STYLE: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.edgecolor": "#8a8f98",
    "axes.labelcolor": "#2d3340",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.axisbelow": True,
    "grid.color": "#e6e8eb",
    "grid.linewidth": 0.7,
    "xtick.color": "#4a5160",
    "ytick.color": "#4a5160",
    "legend.frameon": False,
    "legend.fontsize": 9,
    "savefig.dpi": DPI,
    "savefig.facecolor": "white",
}


F = TypeVar("F", bound=Callable[..., str])


def styled(func: F) -> F:
    """Draw under the report's rc style without changing the caller's global rcParams."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        with rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def new_figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas with constrained layout (labels never clipped)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png(figure: Figure) -> str:
    """Base64 PNG of ``figure``; no metadata, so the same data gives the same bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def floats(values: Any) -> np.ndarray:
    """A float array from JSON lists, ``None`` becoming NaN (JSON has no NaN of its own)."""
    if isinstance(values, list | tuple):
        return np.array(
            [floats(v) if isinstance(v, list | tuple) else nan_or_float(v) for v in values]
        )
    return np.asarray(nan_or_float(values), dtype=float)


def nan_or_float(value: Any) -> float:
    return np.nan if value is None else float(value)


def layer_ticks(axis: Any) -> None:
    axis.set_major_locator(MaxNLocator(integer=True, nbins=16))


def span_label(span: Sequence[int]) -> str:
    """``[first, last]`` layers as a short label."""
    first, last = int(span[0]), int(span[-1])
    return f"L{first}" if first == last else f"L{first}–{last}"


def bars(ax: Axes, x: np.ndarray, heights: np.ndarray, width: float, color: str) -> None:
    """Bars, drawn as one filled outline when there are many (a patch per bar is slow)."""
    if len(x) <= 80:
        ax.bar(x, heights, width=width, color=color)
        return
    xs = np.repeat(x, 4) + np.tile([-width / 2, -width / 2, width / 2, width / 2], len(x))
    ys = np.stack([np.zeros_like(heights), heights, heights, np.zeros_like(heights)], 1).ravel()
    ax.fill(xs, ys, color=color, linewidth=0)


def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def box_with_dots(ax: Axes, x: float, values: np.ndarray, color: str, rng: Any) -> None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return
    ax.boxplot(
        [values],
        positions=[x],
        widths=0.3,
        patch_artist=True,
        showfliers=False,
        boxprops={"facecolor": color + "33", "edgecolor": color},
        medianprops={"color": color, "linewidth": 1.6},
        whiskerprops={"color": color},
        capprops={"color": color},
    )
    jitter = rng.uniform(-0.09, 0.09, size=values.size)
    ax.scatter(x + jitter, values, s=9, color=color, alpha=0.65, linewidths=0, zorder=3)
    ax.scatter([x], [values.mean()], marker="D", s=22, color="white", edgecolors=color, zorder=4)


def model_patches() -> list[Patch]:
    return [Patch(color=BASE_COLOR, label="base"), Patch(color=TUNED_COLOR, label="tuned")]


def count(groups: Sequence[str | None], category: str) -> int:
    return len(groups) if category == "all" else sum(g == category for g in groups)


@styled
def weight_change(matrices: Sequence[str], relative_change: Any, per_layer: Any) -> str:
    """Matrix x layer heatmap of relative weight change, with the per-layer total beneath."""
    grid = floats(relative_change).reshape(-1, len(matrices)).T  # (matrices, layers)
    layers = grid.shape[1]
    figure = new_figure(9, 1.9 + 0.32 * len(matrices))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[max(len(matrices), 2), 2])
    cmap = colormaps["YlGnBu"].with_extremes(bad="#d9d9d9")
    image = top.imshow(
        np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=0, interpolation="nearest"
    )
    top.grid(False)
    top.set_yticks(range(len(matrices)), list(matrices))
    top.set_title("relative change ‖ΔW‖ / ‖W‖ per matrix", loc="left")
    figure.colorbar(image, ax=top, shrink=0.9, pad=0.01)
    total = floats(per_layer)
    bottom.bar(range(len(total)), np.nan_to_num(total), color=TUNED_COLOR, width=0.8)
    bottom.set_ylabel("per layer")
    bottom.set_xlabel("layer")
    bottom.set_xlim(-0.5, layers - 0.5)
    layer_ticks(bottom.xaxis)
    return png(figure)


@styled
def kl_bars(prompt_ids: Sequence[str], per_prompt: Any, mean: float, median: float) -> str:
    """Next-token KL per prompt, largest first, with mean and median lines."""
    values = np.nan_to_num(floats(per_prompt))
    order = np.argsort(-values, kind="stable")
    figure = new_figure(9, 2.9)
    ax = figure.subplots()
    bars(ax, np.arange(len(values)), values[order], 0.8, TUNED_COLOR)
    ax.axhline(nan_or_float(mean), color="#2d3340", linestyle="--", linewidth=1, label="mean")
    ax.axhline(nan_or_float(median), color="#2d3340", linestyle=":", linewidth=1, label="median")
    if len(values) <= 40:
        labels = [short(str(prompt_ids[i]), 14) for i in order]
        ax.set_xticks(range(len(values)), labels, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xlabel(f"{len(values)} prompts, sorted by KL")
        ax.set_xticks([])
    ax.set_xlim(-0.6, len(values) - 0.4)
    ax.set_ylabel("KL divergence")
    ax.legend(loc="upper right")
    return png(figure)


@styled
def rotation(layers: Any, mean_angle: Any, max_angle: Any, overlap: Any) -> str:
    """Principal angles (mean and max) and subspace overlap per layer, side by side."""
    x = floats(layers)
    figure = new_figure(9, 2.8)
    left, right = figure.subplots(1, 2)
    left.plot(x, floats(mean_angle), marker="o", markersize=3.5, color="#54A24B", label="mean")
    left.plot(
        x,
        floats(max_angle),
        marker="^",
        markersize=3.5,
        color="#54A24B",
        linestyle="--",
        alpha=0.7,
        label="max",
    )
    left.set_ylim(0, 92)
    left.set_ylabel("principal angle (degrees)")
    left.legend(loc="best")
    right.plot(x, floats(overlap), marker="o", markersize=3.5, color="#B279A2")
    right.set_ylim(0, 1.04)
    right.set_ylabel("subspace overlap (1 = same)")
    for ax in (left, right):
        ax.set_xlabel("layer")
        layer_ticks(ax.xaxis)
    return png(figure)


@styled
def variance_shift(layers: Any, base_top: Any, tuned_top: Any) -> str:
    """Variance explained by the top principal components per layer, base vs tuned."""
    x = floats(layers)
    figure = new_figure(7, 2.6)
    ax = figure.subplots()
    ax.plot(x, floats(base_top), marker="o", markersize=3.5, color=BASE_COLOR, label="base")
    ax.plot(x, floats(tuned_top), marker="o", markersize=3.5, color=TUNED_COLOR, label="tuned")
    ax.set_xlabel("layer")
    ax.set_ylabel("explained variance\nof top components")
    layer_ticks(ax.xaxis)
    ax.legend(loc="best")
    return png(figure)


@styled
def overlap_grid(values: Any, xlabel: str, ylabel: str, label: str) -> str:
    """A heatmap of values in 0..1 (rows x columns), missing values grey."""
    grid = floats(values)
    if grid.ndim != 2:
        grid = grid.reshape(len(grid), -1)
    rows, columns = grid.shape
    figure = new_figure(min(9.0, 2.6 + 0.26 * columns), min(7.5, 1.3 + 0.24 * rows))
    ax = figure.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(np.ma.masked_invalid(grid), aspect="auto", cmap=cmap, vmin=0, vmax=1,
                      interpolation="nearest")  # fmt: skip
    ax.grid(False)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    layer_ticks(ax.xaxis)
    layer_ticks(ax.yaxis)
    bar = figure.colorbar(image, ax=ax, shrink=0.9, pad=0.02)
    bar.set_label(label)
    return png(figure)


@styled
def paired_values(labels: Sequence[str], base: Any, tuned: Any, ylabel: str) -> str:
    """One value per labelled unit for each model, as two lines."""
    base, tuned = floats(base), floats(tuned)
    x = np.arange(len(labels))
    figure = new_figure(7, 2.8)
    ax = figure.subplots()
    ax.plot(x, base, marker="o", markersize=3.5, color=BASE_COLOR, label="base")
    ax.plot(x, tuned, marker="o", markersize=3.5, color=TUNED_COLOR, label="tuned")
    ax.set_xticks(x, [short(str(label), 14) for label in labels], rotation=60, ha="right",
                  fontsize=8)  # fmt: skip
    ax.set_ylabel(ylabel)
    ax.legend(loc="best")
    return png(figure)
