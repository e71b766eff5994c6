"""The saliency report sections: instruction scores, density by position, heatmaps."""

from __future__ import annotations

from typing import Any

from interpret_shift.core.method import Json, ReportSection, SectionContext
from interpret_shift.core.render.html import escape, figure, image, p_cell, slug, table
from interpret_shift.core.render.numbers import format_p, num
from interpret_shift.core.render.tokens import density_legend, token_spans
from interpret_shift.methods.saliency import plots


def welch_caption(test: Json, what: str = "prompts") -> str:
    """The overall Welch test in words: hypothesis, n per model, means, t and p."""
    return (
        f"One-sided Welch t-test (H1: tuned &gt; base): n = {escape(test['n_base'])} base / "
        f"{escape(test['n_tuned'])} tuned {what}, mean {num(test['mean_base'])} vs "
        f"{num(test['mean_tuned'])}, t = {num(test.get('t'), 2)}, "
        f"p = {format_p(test.get('p'))}."
    )


def _instruction_scores(data: Json, context: SectionContext) -> str:
    scores = data["instruction-score"]
    png = plots.instruction_scores(scores["base"], scores["tuned"], scores.get("groups"))
    caption = (
        "Instruction score of every prompt (importance density on the instruction tokens, "
        "scaled by log₂(2 + their number)); boxes show quartiles, ◇ the mean. "
        + welch_caption(scores["overall"])
    )
    body = figure(png, "box plots of instruction scores, base vs tuned", caption)
    by_group = scores.get("by_group") or {}
    if by_group:
        rows = [_welch_row(escape(g), r) for g, r in sorted(by_group.items())]
        rows.append(_welch_row("<em>all</em>", scores["overall"]))
        headers = ["group", "n base", "n tuned", "mean base", "mean tuned", "t", "p"]
        body += table(headers, rows)
    return body


def _welch_row(name: str, test: Json) -> list[str]:
    return [
        name,
        escape(test["n_base"]),
        escape(test["n_tuned"]),
        num(test["mean_base"]),
        num(test["mean_tuned"]),
        num(test.get("t"), 2),
        p_cell(test.get("p")),
    ]


def _position(data: Json, context: SectionContext) -> str:
    curve = data["position-curve"]
    png = plots.position_curve(curve["base"], curve["tuned"])
    caption = (
        f"Mean importance density of the prompt tokens by relative position in the prompt, "
        f"in {escape(curve.get('bins', len(curve['base'])))} bins. A flat line weighs the whole "
        "prompt alike; a dip in the middle is the “lost in the middle” pattern."
    )
    return figure(png, "line plot of density by relative prompt position", caption)


def _heatmaps(data: Json, context: SectionContext) -> str:
    scores = _score_lookup(data.get("instruction-score") or {})
    labels = context.labels
    parts = [density_legend()]
    for item in data["heatmaps"]:
        parts.append(_heatmap(item, labels, scores.get(str(item["id"]))))
    return "".join(parts)


def _score_lookup(scores: Json) -> dict[str, tuple[Any, Any]]:
    ids = scores.get("prompt_ids") or []
    base, tuned = scores.get("base") or [], scores.get("tuned") or []
    return {str(i): (b, t) for i, b, t in zip(ids, base, tuned)}


def _heatmap(item: Json, labels: tuple[str, str], score: tuple[Any, Any] | None) -> str:
    tokens = [str(t) for t in item["tokens"]]
    ins, ctx = item.get("instruction_mask") or [], item.get("context_mask") or []
    sides = "".join(
        _heatmap_side(
            role, label, tokens, item[f"{role}_density"], ins, ctx, item.get(f"{role}_response", "")
        )
        for role, label in zip(("base", "tuned"), labels)
    )
    png = plots.density_bars(tokens, item["base_density"], item["tuned_density"], ins, ctx)
    caption = (
        f"Prompt <code>{escape(item['id'])}</code>: {len(tokens)} tokens "
        f"({sum(map(bool, ins))} instruction, {sum(map(bool, ctx))} context). Background: "
        "importance density of the token for the model's response (0–1, per model); hover a "
        "token for its value. Bars: the same densities side by side."
    )
    if score is not None:
        caption += f" Instruction score: base {num(score[0])}, tuned {num(score[1])}."
    alt = f"per-token density of prompt {item['id']}, base vs tuned"
    return (
        f'<figure class="heatmap" id="heatmap-{slug(item["id"])}">'
        f'<div class="pair">{sides}</div>{image(png, alt)}<figcaption>{caption}</figcaption>'
        "</figure>"
    )


def _heatmap_side(
    role: str, label: str, tokens: list[str], density: Any, ins: Any, ctx: Any, response: Any
) -> str:
    response = str(response or "")
    shown = escape(response) if response else "<em>(no response recorded)</em>"
    return (
        f'<div class="side {role}"><h3><span class="role {role}">{role}</span>{escape(label)}</h3>'
        f"{token_spans(tokens, density, ins, ctx)}"
        f'<div class="response"><span class="what">response</span>{shown}</div></div>'
    )


SECTIONS = (
    ReportSection(explainer="saliency", id="instruction-scores", title="Instruction scores",
                  keys=("instruction-score",), build=_instruction_scores, order=20,
                  lede="How much of each model's attribution falls on the instruction words "
                       "of a prompt."),
    ReportSection(explainer="saliency", id="position-density", title="Density by prompt position",
                  keys=("position-curve",), build=_position, order=21,
                  lede="Which parts of a prompt each model's answer depends on."),
    ReportSection(explainer="saliency", id="saliency-heatmaps", title="Saliency heatmaps",
                  keys=("heatmaps",), covers=("attribution-shift",), build=_heatmaps, order=22,
                  lede="Which prompt tokens each response depends on (gradient × input), "
                       "token by token."),
)  # fmt: skip
