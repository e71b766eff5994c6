"""Sections every report can have: model-level ones and one generic section per data kind."""

from __future__ import annotations

import math

import numpy as np

from interpret_shift.core.method import MODEL, Json, ReportSection, SectionContext
from interpret_shift.core.render import plots
from interpret_shift.core.render.html import escape, figure, p_cell, table
from interpret_shift.core.render.numbers import num
from interpret_shift.core.render.plots import floats
from interpret_shift.core.render.tokens import density_legend, token_spans


def _weight_change(data: Json, context: SectionContext) -> str:
    weights = data["weights"]
    matrices = [str(m) for m in weights["matrices"]]
    grid = floats(weights["relative_change"]).reshape(-1, len(matrices))
    png = plots.weight_change(matrices, weights["relative_change"], weights["per_layer"])
    caption = (
        f"Relative change ‖W<sub>tuned</sub> − W<sub>base</sub>‖ / ‖W<sub>base</sub>‖ of each "
        f"weight matrix, {grid.shape[0]} layers × {len(matrices)} matrices (grey: not "
        f"compared); the bars show the change of each whole layer. Input embedding: "
        f"{num(weights.get('embed'))}."
    )
    if np.isfinite(grid).any():
        layer, column = np.unravel_index(int(np.nanargmax(grid)), grid.shape)
        caption += (
            f" Largest: <code>{escape(matrices[column])}</code> in layer {layer} "
            f"({num(grid[layer, column])})."
        )
    return figure(png, "heatmap of relative weight change per layer and matrix", caption)


def _kl(data: Json, context: SectionContext) -> str:
    kl = data["kl"]
    values = kl["per_prompt"]
    png = plots.kl_bars(kl["prompt_ids"], values, kl["mean"], kl["median"])
    caption = (
        f"KL divergence between the base and tuned models' next-token distributions after "
        f"each prompt, largest first (n = {len(values)} prompts): mean {num(kl['mean'])}, "
        f"median {num(kl['median'])}."
    )
    return figure(png, "bar chart of next-token KL divergence per prompt", caption)


def _rotation(data: Json, context: SectionContext) -> str:
    parts = []
    if "rotation" in data:
        parts.append(_rotation_figure(data["rotation"]))
    if "variance-shift" in data:
        parts.append(_variance_figure(data["variance-shift"]))
    return "".join(parts)


def _rotation_figure(rot: Json) -> str:
    png = plots.rotation(rot["layers"], rot["mean_angle_deg"], rot["max_angle_deg"], rot["overlap"])
    overall = rot.get("summary") or {}
    caption = (
        "Principal angles between the base and tuned models' top principal directions of "
        "W<sub>down</sub> per layer (0° = same direction, 90° = orthogonal), and their "
        f"subspace overlap (mean squared cosine, 1 = same subspace). Over n = "
        f"{len(rot['layers'])} layers: mean angle {num(overall.get('mean_angle_deg'), 1)}°, "
        f"mean overlap {num(overall.get('mean_overlap'))}."
    )
    return figure(png, "line plots of principal angles and overlap per layer", caption)


def _variance_figure(shift: Json) -> str:
    base, tuned = floats(shift["base_top"]), floats(shift["tuned_top"])
    png = plots.variance_shift(shift["layers"], shift["base_top"], shift["tuned_top"])
    caption = (
        "Share of W<sub>down</sub>'s variance explained by its top principal components, per "
        f"layer (n = {len(shift['layers'])} layers): mean {num(_mean(base))} base vs "
        f"{num(_mean(tuned))} tuned."
    )
    return figure(png, "line plot of explained variance per layer", caption)


def _mean(values: np.ndarray) -> float:
    """Mean of the finite values (NaN marks a missing one), NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


# -- one generic section per data kind ---------------------------------------------------------


def _attribution(data: Json, context: SectionContext) -> str:
    shift = data["attribution-shift"]
    parts = [density_legend()]
    for item in shift.get("examples") or []:
        sides = "".join(
            f'<div class="side {role}"><h3><span class="role {role}">{role}</span>'
            f"{escape(label)}</h3>{token_spans(item['tokens'], item[role], [], [])}"
            f'<div class="response"><span class="what">response</span>'
            f"{escape(item.get(f'{role}_response') or '')}</div></div>"
            for role, label in zip(("base", "tuned"), context.labels)
        )
        parts.append(f'<figure class="heatmap"><div class="pair">{sides}</div><figcaption>'
                     f"Item <code>{escape(item['id'])}</code>: summed |attribution| of each prompt "
                     "token over the targets, scaled to 1 per model.</figcaption></figure>")  # fmt: skip
    rows = [[escape(key), num(c)] for key, c in zip(shift["items"], shift["cosine"])]
    parts.append(table(["item", "cosine (base, tuned)"], rows))
    return "".join(parts)


def _pair_overlap(data: Json, context: SectionContext) -> str:
    overlap = data["pair-overlap"]
    png = plots.overlap_grid(overlap["jaccard"], "unit", "item",
                             "Jaccard overlap (1 = unchanged)")  # fmt: skip
    caption = (f"Jaccard overlap of each unit's word pairs in the two models, per item "
               f"({len(overlap['items'])} items × {len(overlap['units'])} units); mean "
               f"{num(overlap.get('mean'))}.")  # fmt: skip
    return figure(png, "heatmap of word-pair overlap per item and unit", caption)


def _paired_units(data: Json, context: SectionContext) -> str:
    tests = data["paired-units"]["units"]
    labels = [t["unit"] for t in tests]
    png = plots.paired_values(labels, [t["mean_base"] for t in tests],
                              [t["mean_tuned"] for t in tests], "mean over items")  # fmt: skip
    caption = (f"Mean value of each unit over the items, base vs tuned ({len(tests)} units); "
               "two-sided paired t-test per unit in the table.")  # fmt: skip
    rows = [[escape(t["unit"]), escape(t["n"]), num(t["mean_base"]), num(t["mean_tuned"]),
             num(t.get("t"), 2), p_cell(t.get("p"))] for t in tests]  # fmt: skip
    return figure(png, "line plot of per-unit means, base vs tuned", caption) + table(
        ["unit", "n", "base", "tuned", "t", "p"], rows
    )


GENERIC_SECTIONS = (
    ReportSection(explainer=MODEL, id="weight-change", title="Weight change", keys=("weights",),
                  build=_weight_change, order=10,
                  lede="How far each weight matrix moved, relative to its size."),
    ReportSection(explainer=MODEL, id="next-token-kl", title="Next-token KL", keys=("kl",),
                  build=_kl, order=11,
                  lede="How differently the two models predict the next token after each prompt."),
    ReportSection(data_kind="token_attribution", id="attribution", title="Token attributions",
                  keys=("attribution-shift",), build=_attribution, order=60,
                  lede="Which prompt tokens each model's outputs depend on, side by side."),
    ReportSection(data_kind="ranked_words", id="pair-overlap", title="Word-pair overlap",
                  keys=("pair-overlap",), build=_pair_overlap, order=61,
                  lede="Whether each unit still links the same words after tuning."),
    ReportSection(data_kind="subspace", id="rotation", title="Knowledge rotation",
                  keys=("rotation", "variance-shift"), build=_rotation, order=62,
                  lede="How far the top directions turned, and how concentrated their variance "
                       "is."),
    ReportSection(data_kind="unit_scalars", id="paired-units", title="Per-unit values",
                  keys=("paired-units",), build=_paired_units, order=63,
                  lede="One number per unit, base vs tuned, with a paired test per unit."),
)  # fmt: skip
