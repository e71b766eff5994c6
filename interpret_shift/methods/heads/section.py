"""The attention-head report sections: overlap per head, instruction vs general verbs."""

from __future__ import annotations

import math

import numpy as np

from interpret_shift.core.method import Json, ReportSection, SectionContext
from interpret_shift.core.render.html import escape, figure, p_cell, table
from interpret_shift.core.render.numbers import num
from interpret_shift.core.render.plots import floats
from interpret_shift.core.stats import layers_label
from interpret_shift.methods.heads import plots


def _head_overlap(data: Json, context: SectionContext) -> str:
    overlap = data["head-overlap"]
    grid = floats(overlap["jaccard"])
    png = plots.head_overlap(overlap["jaccard"])
    layers = overlap.get("n_layers", grid.shape[0])
    heads = overlap.get("n_heads", grid.shape[1] if grid.ndim == 2 else 0)
    caption = (
        f"Jaccard overlap of each head's top word pairs (from W<sub>q</sub>, W<sub>k</sub>) in "
        f"the two models, {escape(layers)} layers × {escape(heads)} heads: 1 = the head encodes the "
        f"same word pairs after tuning, 0 = none in common."
    )
    if np.isfinite(grid).any():
        means = [_mean(row) for row in grid]
        low = int(np.nanargmin(means))
        caption += (
            f" Mean over heads {num(_mean(grid), 2)}; least overlap in layer {low} "
            f"(mean {num(means[low], 2)})."
        )
    return figure(png, "heatmap of attention-head overlap per layer and head", caption)


def _verb_shares(data: Json, context: SectionContext) -> str:
    groups = data["verb-shares"]["groups"]
    png = plots.verb_shares(groups)
    caption = (
        "For each verb, the share of heads (among those whose count of the verb changed) where "
        "the tuned model's count is higher; the mean over instruction verbs (translate, "
        "summarize, …) and over general verbs, per layer group. Dotted line: 0.5, no "
        "direction. Welch t-test per group, n = verbs per class: p two-sided above the bars; "
        "p (one-sided) for H1: instruction &gt; general."
    )
    rows = [
        [
            escape(layers_label(int(g["layers"][0]), int(g["layers"][-1]))),
            escape(g["instruction"]["n"]),
            num(g["instruction"]["mean"]),
            escape(g["general"]["n"]),
            num(g["general"]["mean"]),
            num(g.get("t"), 2),
            p_cell(g.get("p")),
            p_cell(g.get("p_greater")),
        ]
        for g in groups
    ]
    headers = [
        "layers",
        "n instr.",
        "instr. mean",
        "n general",
        "general mean",
        "t",
        "p",
        "p (one-sided)",
    ]
    return figure(png, "grouped bars of verb shares per layer group", caption) + table(
        headers, rows
    )


def _mean(values: np.ndarray) -> float:
    """Mean of the finite values (NaN marks a missing one), NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


SECTIONS = (
    ReportSection(explainer="heads", id="head-overlap", title="Attention heads: overlap",
                  keys=("head-overlap",), covers=("pair-overlap",), build=_head_overlap, order=30,
                  lede="Whether each attention head still relates the same word pairs after "
                       "tuning."),
    ReportSection(explainer="heads", id="verb-shares", title="Instruction verbs vs general verbs",
                  keys=("verb-shares",), build=_verb_shares, order=31,
                  lede="Whether tuning made heads relate instruction verbs more than other "
                       "frequent verbs."),
)  # fmt: skip
