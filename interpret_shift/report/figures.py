"""Figures for the HTML report: matplotlib (Agg) images as base64 PNG, and token-span HTML.

Each function takes plain lists as they come from the diff JSON (``None`` where a value is
missing) and returns a string ready to embed, so the page assembly never touches matplotlib.
Figures are drawn on bare ``Figure`` objects with the Agg canvas: no pyplot global state, no
display needed.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import re
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
from matplotlib import colormaps, rc_context
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from interpret_shift.bytelevel import byte_decoder

BASE_COLOR = "#4C78A8"
TUNED_COLOR = "#F58518"
INSTRUCTION_COLOR = "#2F5DA8"
CONTEXT_COLOR = "#2A9D8F"
VERB_COLORS = {"instruction": "#7A5195", "general": "#A0AEC0"}
DENSITY_CMAP = "YlOrRd"
DPI = 130

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


def _styled(func: F) -> F:
    """Draw under the report's rc style without changing the caller's global rcParams."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> str:
        with rc_context(STYLE):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _figure(width: float, height: float) -> Figure:
    """A figure on the Agg canvas with constrained layout (labels never clipped)."""
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _png(figure: Figure) -> str:
    """Base64 PNG of ``figure``; no metadata, so the same data gives the same bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def floats(values: Any) -> np.ndarray:
    """A float array from JSON lists, ``None`` becoming NaN (JSON has no NaN of its own)."""
    if isinstance(values, list | tuple):
        return np.array([floats(v) if isinstance(v, list | tuple) else _nan(v) for v in values])
    return np.asarray(_nan(values), dtype=float)


def _nan(value: Any) -> float:
    return np.nan if value is None else float(value)


def _layer_ticks(axis: Any) -> None:
    axis.set_major_locator(MaxNLocator(integer=True, nbins=16))


def _span_label(span: Sequence[int]) -> str:
    """``[first, last]`` layers as a short label."""
    first, last = int(span[0]), int(span[-1])
    return f"L{first}" if first == last else f"L{first}–{last}"


# -- model-level -----------------------------------------------------------------------------


@_styled
def weight_change(matrices: Sequence[str], relative_change: Any, per_layer: Any) -> str:
    """Matrix x layer heatmap of relative weight change, with the per-layer total beneath."""
    grid = floats(relative_change).reshape(-1, len(matrices)).T  # (matrices, layers)
    layers = grid.shape[1]
    figure = _figure(9, 1.9 + 0.32 * len(matrices))
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
    _layer_ticks(bottom.xaxis)
    return _png(figure)


@_styled
def kl_bars(prompt_ids: Sequence[str], per_prompt: Any, mean: float, median: float) -> str:
    """Next-token KL per prompt, largest first, with mean and median lines."""
    values = np.nan_to_num(floats(per_prompt))
    order = np.argsort(-values, kind="stable")
    figure = _figure(9, 2.9)
    ax = figure.subplots()
    _bars(ax, np.arange(len(values)), values[order], 0.8, TUNED_COLOR)
    ax.axhline(_nan(mean), color="#2d3340", linestyle="--", linewidth=1, label="mean")
    ax.axhline(_nan(median), color="#2d3340", linestyle=":", linewidth=1, label="median")
    if len(values) <= 40:
        labels = [_short(str(prompt_ids[i]), 14) for i in order]
        ax.set_xticks(range(len(values)), labels, rotation=60, ha="right", fontsize=7)
    else:
        ax.set_xlabel(f"{len(values)} prompts, sorted by KL")
        ax.set_xticks([])
    ax.set_xlim(-0.6, len(values) - 0.4)
    ax.set_ylabel("KL divergence")
    ax.legend(loc="upper right")
    return _png(figure)


def _bars(ax: Axes, x: np.ndarray, heights: np.ndarray, width: float, color: str) -> None:
    """Bars, drawn as one filled outline when there are many (a patch per bar is slow)."""
    if len(x) <= 80:
        ax.bar(x, heights, width=width, color=color)
        return
    xs = np.repeat(x, 4) + np.tile([-width / 2, -width / 2, width / 2, width / 2], len(x))
    ys = np.stack([np.zeros_like(heights), heights, heights, np.zeros_like(heights)], 1).ravel()
    ax.fill(xs, ys, color=color, linewidth=0)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- saliency --------------------------------------------------------------------------------


def score_categories(groups: Sequence[str | None]) -> list[str]:
    """``all`` plus every dataset group, when there is more than one group to compare."""
    named = sorted({g for g in groups if g is not None})
    return ["all", *named] if len(named) > 1 else ["all"]


@_styled
def instruction_scores(base: Any, tuned: Any, groups: Sequence[str | None] | None = None) -> str:
    """Box plots with every prompt as a dot, base vs tuned, overall and per dataset group."""
    base, tuned = floats(base), floats(tuned)
    groups = list(groups) if groups else [None] * len(base)
    categories = score_categories(groups)
    figure = _figure(min(9.0, 2.6 + 1.5 * len(categories)), 3.2)
    ax = figure.subplots()
    rng = np.random.default_rng(0)
    for i, category in enumerate(categories):
        keep = np.array([category == "all" or g == category for g in groups], dtype=bool)
        for offset, values, color in ((-0.2, base, BASE_COLOR), (0.2, tuned, TUNED_COLOR)):
            _box_with_dots(ax, i + offset, values[keep], color, rng)
    labels = [f"{c}\n(n = {_count(groups, c)})" for c in categories]
    ax.set_xticks(range(len(categories)), labels)
    ax.set_xlim(-0.6, len(categories) - 0.4)
    ax.set_ylabel("instruction score")
    figure.legend(handles=_model_patches(), loc="outside upper left", ncols=2)
    ax.grid(axis="x", visible=False)
    return _png(figure)


def _count(groups: Sequence[str | None], category: str) -> int:
    return len(groups) if category == "all" else sum(g == category for g in groups)


def _box_with_dots(ax: Axes, x: float, values: np.ndarray, color: str, rng: Any) -> None:
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


def _model_patches() -> list[Patch]:
    return [Patch(color=BASE_COLOR, label="base"), Patch(color=TUNED_COLOR, label="tuned")]


@_styled
def position_curve(base: Any, tuned: Any) -> str:
    """Mean importance density per relative-position bin, one line per model."""
    base, tuned = floats(base), floats(tuned)
    centres = (np.arange(len(base)) + 0.5) / max(len(base), 1)
    figure = _figure(7, 2.8)
    ax = figure.subplots()
    ax.plot(centres, base, marker="o", markersize=3.5, color=BASE_COLOR, label="base")
    ax.plot(centres, tuned, marker="o", markersize=3.5, color=TUNED_COLOR, label="tuned")
    ax.set_xlim(0, 1)
    ax.set_xlabel("relative position in the prompt (0 = first token, 1 = last)")
    ax.set_ylabel("mean importance density")
    ax.legend(loc="best")
    return _png(figure)


@_styled
def density_bars(
    tokens: Sequence[str], base: Any, tuned: Any, instruction: Any, context: Any
) -> str:
    """Per-token density, base vs tuned; instruction and context tokens shaded behind."""
    base, tuned = np.nan_to_num(floats(base)), np.nan_to_num(floats(tuned))
    x = np.arange(len(base))
    figure = _figure(9, 2.1 if len(x) <= 60 else 1.7)
    ax = figure.subplots()
    _shade(ax, instruction, INSTRUCTION_COLOR)
    _shade(ax, context, CONTEXT_COLOR)
    _bars(ax, x - 0.2, base, 0.4, BASE_COLOR)
    _bars(ax, x + 0.2, tuned, 0.4, TUNED_COLOR)
    if len(x) <= 60:
        labels = [_short(clean_token(t).replace("\n", "↵").strip() or "␣", 10) for t in tokens]
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
    figure.legend(handles=[*_model_patches(), *shades], loc="outside upper right", ncols=4)
    return _png(figure)


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


# -- token spans (HTML) ----------------------------------------------------------------------


_HEX_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def clean_token(token: str) -> str:
    """A token as the text it stands for: ``Ġ``/``▁`` become spaces, ``Ċ``/``<0x0A>`` newlines.

    Byte-level BPE tokens are decoded only when they decode to valid UTF-8, so a
    SentencePiece token that happens to use Latin-1 letters is left alone.
    """
    decoder = byte_decoder()
    if token and all(ch in decoder for ch in token) and any(ord(ch) > 127 for ch in token):
        try:
            return bytes(decoder[ch] for ch in token).decode("utf-8")
        except UnicodeDecodeError:
            pass
    text = token.replace("▁", " ").replace("Ġ", " ").replace("Ċ", "\n").replace("ĉ", "\t")
    return _HEX_BYTE.sub(_hex_char, text)


def _hex_char(match: re.Match[str]) -> str:
    value = int(match.group(1), 16)
    return chr(value) if value < 128 else match.group(0)


def density_color(value: float) -> tuple[str, str]:
    """Background and text colour for a density in 0..1 (white text on dark backgrounds)."""
    if not np.isfinite(value) or value <= 0.005:
        return "transparent", "inherit"
    return _density_palette()[min(int(value * 100), 100)]


@functools.cache
def _density_palette() -> tuple[tuple[str, str], ...]:
    """101 precomputed colours: a colormap lookup per token is slow on long prompts."""
    colors = colormaps[DENSITY_CMAP](0.08 + 0.84 * np.linspace(0, 1, 101))
    return tuple(
        (to_hex((r, g, b)), "#ffffff" if 0.299 * r + 0.587 * g + 0.114 * b < 0.55 else "#1b1f24")
        for r, g, b, _ in colors
    )


def token_spans(tokens: Sequence[str], density: Any, instruction: Any, context: Any) -> str:
    """The prompt as coloured token spans: background = density, underline = span kind."""
    values = floats(density) if len(tokens) else np.zeros(0)
    ins = _mask(instruction, len(tokens))
    ctx = _mask(context, len(tokens))
    spans = [_span(t, values[i], ins[i], ctx[i]) for i, t in enumerate(tokens)]
    return f'<div class="tokens">{"".join(spans)}</div>'


def _mask(mask: Any, length: int) -> list[bool]:
    values = list(mask or [])
    return [bool(v) for v in values[:length]] + [False] * (length - len(values))


def _span(token: str, value: float, instruction: bool, context: bool) -> str:
    background, color = density_color(value)
    kinds = [k for k, on in (("ins", instruction), ("ctx", context)) if on]
    words = {"ins": "instruction", "ctx": "context"}
    title = f"density {value:.2f}" if np.isfinite(value) else "density –"
    title += "".join(f" · {words[k]}" for k in kinds)
    text = clean_token(token)
    shown = html.escape(text.replace("\n", "↵\n")) if text else '<span class="empty">∅</span>'
    classes = " ".join(["tok", *kinds])
    style = f"background:{background};color:{color}"
    return f'<span class="{classes}" style="{style}" title="{html.escape(title)}">{shown}</span>'


def density_legend() -> str:
    """The colour scale and the two span markers, as an HTML fragment."""
    stops = ", ".join(density_color(v)[0] for v in np.linspace(0.01, 1, 8))
    return (
        '<div class="legend">'
        '<span class="scale"><span>density 0</span>'
        f'<span class="bar" style="background:linear-gradient(90deg, #ffffff, {stops})"></span>'
        "<span>1</span></span>"
        '<span class="tok ins">instruction token</span>'
        '<span class="tok ctx">context token</span>'
        "</div>"
    )


# -- attention heads -------------------------------------------------------------------------


@_styled
def head_overlap(jaccard: Any) -> str:
    """Layer x head heatmap of the Jaccard overlap of each head's top word pairs."""
    grid = floats(jaccard)
    if grid.ndim != 2:
        grid = grid.reshape(len(grid), -1)
    layers, heads = grid.shape
    figure = _figure(min(9.0, 2.6 + 0.26 * heads), min(7.5, 1.3 + 0.24 * layers))
    ax = figure.subplots()
    cmap = colormaps["viridis"].with_extremes(bad="#d9d9d9")
    image = ax.imshow(
        np.ma.masked_invalid(grid),
        aspect="auto",
        cmap=cmap,
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.grid(False)
    ax.set_xlabel("head")
    ax.set_ylabel("layer")
    _layer_ticks(ax.xaxis)
    _layer_ticks(ax.yaxis)
    bar = figure.colorbar(image, ax=ax, shrink=0.9, pad=0.02)
    bar.set_label("Jaccard overlap (1 = unchanged)")
    return _png(figure)


@_styled
def verb_shares(groups: Sequence[dict[str, Any]]) -> str:
    """Mean share per layer group: instruction verbs vs general verbs, p above each pair."""
    figure = _figure(min(9.0, 2.8 + 1.2 * len(groups)), 3.0)
    ax = figure.subplots()
    x = np.arange(len(groups))
    for offset, kind in ((-0.19, "instruction"), (0.19, "general")):
        means = [_nan(g[kind]["mean"]) for g in groups]
        ax.bar(
            x + offset,
            np.nan_to_num(means),
            width=0.36,
            color=VERB_COLORS[kind],
            label=f"{kind} verbs",
        )
    for i, group in enumerate(groups):
        top = np.nanmax([_nan(group[k]["mean"]) for k in VERB_COLORS] + [0.0])
        ax.text(i, top + 0.03, f"p = {format_p(group.get('p'))}", ha="center", fontsize=7.5)
    ax.axhline(0.5, color="#2d3340", linestyle=":", linewidth=1)
    ax.set_xticks(x, [_span_label(g["layers"]) for g in groups])
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("share of heads where\nthe tuned count is higher")
    figure.legend(loc="outside upper left", ncols=2)
    ax.grid(axis="x", visible=False)
    return _png(figure)


def format_p(p: Any) -> str:
    """p to three decimals, or in scientific notation below 0.001; a dash when missing."""
    value = _nan(p)
    if not np.isfinite(value):
        return "–"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


# -- FFN -------------------------------------------------------------------------------------


@_styled
def concept_bars(concepts: dict[str, Any]) -> str:
    """Stacked concept shares per layer group, base and tuned side by side, task and level."""
    axes_present = [a for a in ("task", "level") if a in concepts["base"]]
    figure = _figure(9, 3.6)
    axes = np.atleast_1d(figure.subplots(1, len(axes_present), squeeze=False)[0])
    for ax, axis in zip(axes, axes_present):
        categories = concepts["tasks" if axis == "task" else "levels"]
        _stacked(ax, concepts, axis, categories)
        ax.set_title(f"by {axis}", loc="left")
    axes[0].set_ylabel("share of components")
    return _png(figure)


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


@_styled
def rotation(layers: Any, mean_angle: Any, max_angle: Any, overlap: Any) -> str:
    """Principal angles (mean and max) and subspace overlap per layer, side by side."""
    x = floats(layers)
    figure = _figure(9, 2.8)
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
        _layer_ticks(ax.xaxis)
    return _png(figure)


@_styled
def variance_shift(layers: Any, base_top: Any, tuned_top: Any) -> str:
    """Variance explained by the top principal components per layer, base vs tuned."""
    x = floats(layers)
    figure = _figure(7, 2.6)
    ax = figure.subplots()
    ax.plot(x, floats(base_top), marker="o", markersize=3.5, color=BASE_COLOR, label="base")
    ax.plot(x, floats(tuned_top), marker="o", markersize=3.5, color=TUNED_COLOR, label="tuned")
    ax.set_xlabel("layer")
    ax.set_ylabel("explained variance\nof top components")
    _layer_ticks(ax.xaxis)
    ax.legend(loc="best")
    return _png(figure)
