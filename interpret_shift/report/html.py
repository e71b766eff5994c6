"""Page assembly for ``report.html``: one self-contained page, no scripts, no network.

Pure functions from the parsed JSON of an output folder to an HTML string. Every text that
comes from the data goes through :func:`html.escape`; numbers go through the formatters
here, so a test is always shown with its n and p.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import numpy as np

from interpret_shift.analysis import layers_label
from interpret_shift.errors import InterpretShiftError
from interpret_shift.report import figures as fig

Json = dict[str, Any]
#: Errors a section builder can raise on data of the wrong shape.
DATA_ERRORS = (KeyError, TypeError, ValueError, IndexError, AttributeError, ZeroDivisionError)


@dataclass(frozen=True)
class Topic:
    """One ``<section>``: drawn from ``keys`` of ``diff/<file>.json`` when any is present."""

    id: str
    title: str
    file: str
    keys: tuple[str, ...]
    lede: str
    build: Callable[[Json, Json], str]


@dataclass
class Page:
    """What the page assembly collects on the way: sections, skips and problems."""

    sections: list[tuple[Topic, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


# -- formatting ------------------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: Any, digits: int = 3) -> str:
    """A number for the page: fixed decimals, scientific when tiny or huge, a dash if missing."""
    if not _finite(value):
        return "–"
    if value != 0 and (abs(value) < 10**-digits or abs(value) >= 10**6):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def stat(n: Any = None, p: Any = None) -> str:
    """``n = 40 · p = 0.019``, leaving out what is missing."""
    parts = []
    if n is not None:
        parts.append(f"n = {_e(n)}")
    if p is not None:
        parts.append(f"p = {fig.format_p(p)}")
    return " · ".join(parts)


def _p_cell(p: Any) -> str:
    text = fig.format_p(p)
    return f"<strong>{text}</strong>" if _finite(p) and p < 0.05 else text


def _slug(text: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _image(png: str, alt: str) -> str:
    """An ``<img>`` shown at 100 CSS px per figure inch, so all figures share one type size."""
    width = int.from_bytes(base64.b64decode(png[:32])[16:20], "big")  # PNG IHDR width
    css_width = round(width * 100 / fig.DPI)
    return f'<img src="data:image/png;base64,{png}" width="{css_width}" alt="{_e(alt)}">'


def _figure(png: str, alt: str, caption: str) -> str:
    """A ``<figure>`` with one image; ``caption`` is HTML built from escaped parts."""
    return f"<figure>{_image(png, alt)}<figcaption>{caption}</figcaption></figure>"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], first_numeric: int = 1) -> str:
    """A compact table; cells are HTML (escape text first); columns from ``first_numeric`` on
    are right-aligned numbers."""

    def cell(tag: str, i: int, content: str) -> str:
        kind = ' class="num"' if i >= first_numeric else ""
        return f"<{tag}{kind}>{content}</{tag}>"

    head = "".join(cell("th", i, _e(h)) for i, h in enumerate(headers))
    body = "".join(
        "<tr>" + "".join(cell("td", i, c) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


# -- sections: model-level -------------------------------------------------------------------


def _weight_change(data: Json, summary: Json) -> str:
    weights = data["weights"]
    matrices = [str(m) for m in weights["matrices"]]
    grid = fig.floats(weights["relative_change"]).reshape(-1, len(matrices))
    png = fig.weight_change(matrices, weights["relative_change"], weights["per_layer"])
    caption = (
        f"Relative change ‖W<sub>tuned</sub> − W<sub>base</sub>‖ / ‖W<sub>base</sub>‖ of each "
        f"weight matrix, {grid.shape[0]} layers × {len(matrices)} matrices (grey: not "
        f"compared); the bars show the change of each whole layer. Input embedding: "
        f"{num(weights.get('embed'))}."
    )
    if np.isfinite(grid).any():
        layer, column = np.unravel_index(int(np.nanargmax(grid)), grid.shape)
        caption += (
            f" Largest: <code>{_e(matrices[column])}</code> in layer {layer} "
            f"({num(grid[layer, column])})."
        )
    return _figure(png, "heatmap of relative weight change per layer and matrix", caption)


def _kl(data: Json, summary: Json) -> str:
    kl = data["kl"]
    values = kl["per_prompt"]
    png = fig.kl_bars(kl["prompt_ids"], values, kl["mean"], kl["median"])
    caption = (
        f"KL divergence between the base and tuned models' next-token distributions after "
        f"each prompt, largest first (n = {len(values)} prompts): mean {num(kl['mean'])}, "
        f"median {num(kl['median'])}."
    )
    return _figure(png, "bar chart of next-token KL divergence per prompt", caption)


# -- sections: saliency ----------------------------------------------------------------------


def welch_caption(test: Json, what: str = "prompts") -> str:
    """The overall Welch test in words: hypothesis, n per model, means, t and p."""
    return (
        f"One-sided Welch t-test (H1: tuned &gt; base): n = {_e(test['n_base'])} base / "
        f"{_e(test['n_tuned'])} tuned {what}, mean {num(test['mean_base'])} vs "
        f"{num(test['mean_tuned'])}, t = {num(test.get('t'), 2)}, "
        f"p = {fig.format_p(test.get('p'))}."
    )


def _instruction_scores(data: Json, summary: Json) -> str:
    scores = data["instruction-score"]
    png = fig.instruction_scores(scores["base"], scores["tuned"], scores.get("groups"))
    caption = (
        "Instruction score of every prompt (importance density on the instruction tokens, "
        "scaled by log₂(2 + their number)); boxes show quartiles, ◇ the mean. "
        + welch_caption(scores["overall"])
    )
    body = _figure(png, "box plots of instruction scores, base vs tuned", caption)
    by_group = scores.get("by_group") or {}
    if by_group:
        rows = [_welch_row(_e(g), r) for g, r in sorted(by_group.items())]
        rows.append(_welch_row("<em>all</em>", scores["overall"]))
        headers = ["group", "n base", "n tuned", "mean base", "mean tuned", "t", "p"]
        body += _table(headers, rows)
    return body


def _welch_row(name: str, test: Json) -> list[str]:
    return [
        name,
        _e(test["n_base"]),
        _e(test["n_tuned"]),
        num(test["mean_base"]),
        num(test["mean_tuned"]),
        num(test.get("t"), 2),
        _p_cell(test.get("p")),
    ]


def _position(data: Json, summary: Json) -> str:
    curve = data["position-curve"]
    png = fig.position_curve(curve["base"], curve["tuned"])
    caption = (
        f"Mean importance density of the prompt tokens by relative position in the prompt, "
        f"in {_e(curve.get('bins', len(curve['base'])))} bins. A flat line weighs the whole "
        "prompt alike; a dip in the middle is the “lost in the middle” pattern."
    )
    return _figure(png, "line plot of density by relative prompt position", caption)


def _heatmaps(data: Json, summary: Json) -> str:
    scores = _score_lookup(data.get("instruction-score") or {})
    labels = _labels(summary)
    parts = [fig.density_legend()]
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
    png = fig.density_bars(tokens, item["base_density"], item["tuned_density"], ins, ctx)
    caption = (
        f"Prompt <code>{_e(item['id'])}</code>: {len(tokens)} tokens "
        f"({sum(map(bool, ins))} instruction, {sum(map(bool, ctx))} context). Background: "
        "importance density of the token for the model's response (0–1, per model); hover a "
        "token for its value. Bars: the same densities side by side."
    )
    if score is not None:
        caption += f" Instruction score: base {num(score[0])}, tuned {num(score[1])}."
    alt = f"per-token density of prompt {item['id']}, base vs tuned"
    return (
        f'<figure class="heatmap" id="heatmap-{_slug(item["id"])}">'
        f'<div class="pair">{sides}</div>{_image(png, alt)}<figcaption>{caption}</figcaption>'
        "</figure>"
    )


def _heatmap_side(
    role: str, label: str, tokens: list[str], density: Any, ins: Any, ctx: Any, response: Any
) -> str:
    response = str(response or "")
    shown = _e(response) if response else "<em>(no response recorded)</em>"
    return (
        f'<div class="side {role}"><h3><span class="role {role}">{role}</span>{_e(label)}</h3>'
        f"{fig.token_spans(tokens, density, ins, ctx)}"
        f'<div class="response"><span class="what">response</span>{shown}</div></div>'
    )


# -- sections: heads -------------------------------------------------------------------------


def _head_overlap(data: Json, summary: Json) -> str:
    overlap = data["head-overlap"]
    grid = fig.floats(overlap["jaccard"])
    png = fig.head_overlap(overlap["jaccard"])
    layers = overlap.get("n_layers", grid.shape[0])
    heads = overlap.get("n_heads", grid.shape[1] if grid.ndim == 2 else 0)
    caption = (
        f"Jaccard overlap of each head's top word pairs (from W<sub>q</sub>, W<sub>k</sub>) in "
        f"the two models, {_e(layers)} layers × {_e(heads)} heads: 1 = the head encodes the "
        f"same word pairs after tuning, 0 = none in common."
    )
    if np.isfinite(grid).any():
        means = [_mean(row) for row in grid]
        low = int(np.nanargmin(means))
        caption += (
            f" Mean over heads {num(_mean(grid), 2)}; least overlap in layer {low} "
            f"(mean {num(means[low], 2)})."
        )
    return _figure(png, "heatmap of attention-head overlap per layer and head", caption)


def _verb_shares(data: Json, summary: Json) -> str:
    groups = data["verb-shares"]["groups"]
    png = fig.verb_shares(groups)
    caption = (
        "For each verb, the share of heads (among those whose count of the verb changed) where "
        "the tuned model's count is higher; the mean over instruction verbs (translate, "
        "summarize, …) and over general verbs, per layer group. Dotted line: 0.5, no "
        "direction. Welch t-test per group, n = verbs per class: p two-sided above the bars; "
        "p (one-sided) for H1: instruction &gt; general."
    )
    rows = [
        [
            _e(layers_label(int(g["layers"][0]), int(g["layers"][-1]))),
            _e(g["instruction"]["n"]),
            num(g["instruction"]["mean"]),
            _e(g["general"]["n"]),
            num(g["general"]["mean"]),
            num(g.get("t"), 2),
            _p_cell(g.get("p")),
            _p_cell(g.get("p_greater")),
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
    return _figure(png, "grouped bars of verb shares per layer group", caption) + _table(
        headers, rows
    )


# -- sections: FFN ---------------------------------------------------------------------------


def _concepts(data: Json, summary: Json) -> str:
    concepts = data["concepts"]
    png = fig.concept_bars(concepts)
    caption = (
        "Share of the principal components of W<sub>down</sub> whose top words name a concept "
        "of each category, per layer group; B = base, T = tuned. Concepts labelled by "
        f"<code>{_e(concepts.get('annotator', 'unknown'))}</code>."
    )
    return _figure(png, "stacked bars of FFN concept shares", caption) + _concept_tests(
        concepts.get("tests") or []
    )


def _concept_tests(tests: list[Json]) -> str:
    if not tests:
        return ""
    ordered = sorted(tests, key=lambda t: t["p"] if _finite(t.get("p")) else math.inf)
    rows = [
        [
            _e(t["axis"]),
            _e(t["category"]),
            _e(t["group"]),  # already a label: "all layers", "layers 0-3"
            num(t["mean_base"]),
            num(t["mean_tuned"]),
            _e(t["n"]),
            _p_cell(t.get("p")),
        ]
        for t in ordered
    ]
    significant = sum(_finite(t.get("p")) and t["p"] < 0.05 for t in tests)
    table = _table(["axis", "category", "layers", "base", "tuned", "n", "p"], rows, 3)
    return (
        f"<details><summary>{len(tests)} tests of base vs tuned share, {significant} with "
        "p &lt; 0.05 (t-test over n annotation runs, two-sided; – where not defined)"
        f"</summary>{table}</details>"
    )


def _rotation(data: Json, summary: Json) -> str:
    parts = []
    if "rotation" in data:
        parts.append(_rotation_figure(data["rotation"]))
    if "variance-shift" in data:
        parts.append(_variance_figure(data["variance-shift"]))
    return "".join(parts)


def _rotation_figure(rot: Json) -> str:
    png = fig.rotation(rot["layers"], rot["mean_angle_deg"], rot["max_angle_deg"], rot["overlap"])
    overall = rot.get("summary") or {}
    caption = (
        "Principal angles between the base and tuned models' top principal directions of "
        "W<sub>down</sub> per layer (0° = same direction, 90° = orthogonal), and their "
        f"subspace overlap (mean squared cosine, 1 = same subspace). Over n = "
        f"{len(rot['layers'])} layers: mean angle {num(overall.get('mean_angle_deg'), 1)}°, "
        f"mean overlap {num(overall.get('mean_overlap'))}."
    )
    return _figure(png, "line plots of principal angles and overlap per layer", caption)


def _variance_figure(shift: Json) -> str:
    base, tuned = fig.floats(shift["base_top"]), fig.floats(shift["tuned_top"])
    png = fig.variance_shift(shift["layers"], shift["base_top"], shift["tuned_top"])
    caption = (
        "Share of W<sub>down</sub>'s variance explained by its top principal components, per "
        f"layer (n = {len(shift['layers'])} layers): mean {num(_mean(base))} base vs "
        f"{num(_mean(tuned))} tuned."
    )
    return _figure(png, "line plot of explained variance per layer", caption)


def _mean(values: np.ndarray) -> float:
    """Mean of the finite values (NaN marks a missing one), NaN when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else math.nan


TOPICS: tuple[Topic, ...] = (
    Topic(
        "weight-change",
        "Weight change",
        "model",
        ("weights",),
        "How far each weight matrix moved, relative to its size.",
        _weight_change,
    ),
    Topic(
        "next-token-kl",
        "Next-token KL",
        "model",
        ("kl",),
        "How differently the two models predict the next token after each prompt.",
        _kl,
    ),
    Topic(
        "instruction-scores",
        "Instruction scores",
        "saliency",
        ("instruction-score",),
        "How much of each model's attribution falls on the instruction words of a prompt.",
        _instruction_scores,
    ),
    Topic(
        "position-density",
        "Density by prompt position",
        "saliency",
        ("position-curve",),
        "Which parts of a prompt each model's answer depends on.",
        _position,
    ),
    Topic(
        "saliency-heatmaps",
        "Saliency heatmaps",
        "saliency",
        ("heatmaps",),
        "Which prompt tokens each response depends on (gradient × input), token by token.",
        _heatmaps,
    ),
    Topic(
        "head-overlap",
        "Attention heads: overlap",
        "heads",
        ("head-overlap",),
        "Whether each attention head still relates the same word pairs after tuning.",
        _head_overlap,
    ),
    Topic(
        "verb-shares",
        "Instruction verbs vs general verbs",
        "heads",
        ("verb-shares",),
        "Whether tuning made heads relate instruction verbs more than other frequent verbs.",
        _verb_shares,
    ),
    Topic(
        "ffn-concepts",
        "FFN concepts",
        "ffn",
        ("concepts",),
        "Which kinds of concept the feed-forward layers' principal components store.",
        _concepts,
    ),
    Topic(
        "knowledge-rotation",
        "Knowledge rotation",
        "ffn",
        ("rotation", "variance-shift"),
        "How far the feed-forward layers' principal directions turned, and how concentrated "
        "their variance is.",
        _rotation,
    ),
)


# -- assembly --------------------------------------------------------------------------------


def collect(summary: Json, diffs: Mapping[str, Json], strict: bool = False) -> Page:
    """Build every topic whose data is present; note skipped explainers and bad data."""
    page = Page()
    for topic in TOPICS:
        data = diffs.get(topic.file)
        if data is None:
            continue
        present = [k for k in topic.keys if k in data]
        skips = [data[k] for k in present if isinstance(data[k], dict) and "skipped" in data[k]]
        if skips:
            page.skipped.append(f"{topic.title}: skipped ({skips[0]['skipped']})")
            data = {k: v for k, v in data.items() if not (isinstance(v, dict) and "skipped" in v)}
            present = [k for k in topic.keys if k in data]
        if not present:
            continue
        page.sections.append((topic, _build(topic, data, summary, page, strict)))
    return page


def _build(topic: Topic, data: Json, summary: Json, page: Page, strict: bool) -> str:
    try:
        return topic.build(data, summary)
    except DATA_ERRORS as error:
        what = (
            f"diff/{topic.file}.json does not have the shape the “{topic.title}” section "
            f"needs ({type(error).__name__}: {error})."
        )
        fix = "Rerun `interpret-shift compare`, or check the file against docs/report.md."
        if strict:
            raise InterpretShiftError(what, fix) from error
        page.problems.append(what)
        return f'<p class="problem">Could not draw this section: {_e(what)}</p>'


def _labels(summary: Json) -> tuple[str, str]:
    return _model_label(summary, "base"), _model_label(summary, "tuned")


def _model_label(summary: Json, role: str) -> str:
    model = summary.get(role) or {}
    return str(model.get("label") or model.get("model") or role)


def build_page(summary: Json, diffs: Mapping[str, Json], *, strict: bool = False) -> str:
    """The whole page as one string."""
    page = collect(summary, diffs, strict)
    base, tuned = _labels(summary)
    sections = "".join(_section(topic, body, summary) for topic, body in page.sections)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>interpret-shift: {_e(base)} → {_e(tuned)}</title>"
        f"<style>{CSS}</style></head><body>"
        f"{_masthead(summary)}{_nav(page)}<main>"
        f"{_summary(summary, page)}{sections}</main>{_footer()}</body></html>\n"
    )


def _masthead(summary: Json) -> str:
    cards = '<div class="arrow" aria-hidden="true">→</div>'.join(
        _model_card(summary, role) for role in ("base", "tuned")
    )
    return (
        '<header class="masthead"><div class="wrap">'
        '<p class="kicker">interpret-shift report</p>'
        "<h1>What instruction tuning changed</h1>"
        f'<div class="models">{cards}</div></div></header>'
    )


def _model_card(summary: Json, role: str) -> str:
    model = summary.get(role) or {}
    fingerprint = str(model.get("fingerprint") or "")
    rows = [
        ("model", f"<code>{_e(model.get('model', '–'))}</code>"),
        ("adapter", _e(model.get("adapter", "–"))),
        ("dtype", _e(model.get("dtype", "–"))),
        ("fingerprint", f'<code title="{_e(fingerprint)}">{_e(fingerprint[:12] or "–")}</code>'),
    ]
    facts = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return (
        f'<div class="model {role}"><span class="role {role}">{role}</span>'
        f'<div class="name">{_e(_model_label(summary, role))}</div><dl>{facts}</dl></div>'
    )


def _nav(page: Page) -> str:
    links = [("summary", "Summary")] + [(t.id, t.title) for t, _ in page.sections]
    items = "".join(f'<a href="#{i}">{_e(title)}</a>' for i, title in links)
    return f'<nav class="toc"><div class="wrap">{items}</div></nav>'


def _section(topic: Topic, body: str, summary: Json) -> str:
    claims = [c for c in summary.get("claims") or [] if _claim_topic(c, [topic]) is topic]
    callout = ""
    if claims:
        items = "".join(f"<li>{_claim_text(c)}</li>" for c in claims)
        callout = f'<ul class="callout">{items}</ul>'
    return (
        f'<section id="{topic.id}"><h2>{_e(topic.title)}</h2>'
        f'<p class="lede">{_e(topic.lede)}</p>{callout}{body}</section>'
    )


def _claim_topic(claim: Json, topics: Sequence[Topic]) -> Topic | None:
    """The shown topic a claim's ``topic`` (else ``section``) names: by id, title, JSON key
    or diff file."""
    wanted = _slug(claim.get("topic") or claim.get("section", ""))
    for topic in topics:
        if wanted in {topic.id, _slug(topic.title), *map(_slug, topic.keys)}:
            return topic
    return next((t for t in topics if wanted == t.file), None)


def _claim_text(claim: Json) -> str:
    numbers = stat(claim.get("n"), claim.get("p"))
    badge = f' <span class="stat">{numbers}</span>' if numbers else ""
    return f"{_e(claim.get('text', ''))}{badge}"


def _summary(summary: Json, page: Page) -> str:
    topics = [t for t, _ in page.sections]
    items = []
    for claim in summary.get("claims") or []:
        topic = _claim_topic(claim, topics)
        tag = (
            f'<a class="tag" href="#{topic.id}">{_e(topic.title)}</a>'
            if topic
            else f'<span class="tag">{_e(claim.get("section", ""))}</span>'
        )
        items.append(f"<li>{tag}{_claim_text(claim)}</li>")
    claims = f'<ul class="claims">{"".join(items)}</ul>' if items else "<p>No claims recorded.</p>"
    return (
        f'<section id="summary"><h2>Summary</h2>{claims}{_facts(summary, page)}'
        f"{_warnings(summary, page)}</section>"
    )


def _facts(summary: Json, page: Page) -> str:
    explainers = ", ".join(map(str, summary.get("explainers") or [])) or "none"
    shown = ", ".join(t.title for t, _ in page.sections) or "none"
    rows = [
        ("Prompts", _e(summary.get("n_prompts", "–"))),
        ("Explainers run", _e(explainers)),
        ("Sections", _e(shown)),
    ]
    if page.skipped:
        rows.append(("Skipped", _e("; ".join(page.skipped))))
    facts = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<dl class="facts">{facts}</dl>'


def _warnings(summary: Json, page: Page) -> str:
    warnings = [str(w) for w in summary.get("warnings") or []] + page.problems
    if not warnings:
        return ""
    items = "".join(f"<li>{_e(w)}</li>" for w in warnings)
    return f'<div class="warnings"><h3>Warnings</h3><ul>{items}</ul></div>'


def _version() -> str:
    try:
        return metadata.version("interpret-shift")
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def _footer() -> str:
    return (
        f'<footer><div class="wrap">Made by interpret-shift {_e(_version())} from '
        "<code>summary.json</code> and <code>diff/*.json</code> in this folder; rebuild with "
        "<code>interpret-shift report DIR</code>. Self-contained: no scripts, no network."
        "</div></footer>"
    )


CSS = f"""
:root {{
  --ink: #1d2330; --muted: #5b6474; --line: #e3e6eb; --paper: #ffffff; --bg: #f4f5f7;
  --base: {fig.BASE_COLOR}; --tuned: {fig.TUNED_COLOR};
  --ins: {fig.INSTRUCTION_COLOR}; --ctx: {fig.CONTEXT_COLOR};
}}
* {{ box-sizing: border-box; }}
html {{ -webkit-text-size-adjust: 100%; }}
body {{
  margin: 0; background: var(--bg); color: var(--ink); line-height: 1.55; font-size: 16px;
  font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "Liberation Sans", sans-serif;
}}
code {{ font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "DejaVu Sans Mono",
  monospace; font-size: 0.88em; }}
.wrap, main {{ max-width: 1040px; margin: 0 auto; padding: 0 24px; }}
.masthead {{ background: linear-gradient(135deg, #1b2538, #2c3e5c); color: #f5f7fa;
  padding: 32px 0 28px; }}
.kicker {{ margin: 0; text-transform: uppercase; letter-spacing: .12em; font-size: 12px;
  color: #a9b6cc; }}
h1 {{ margin: 4px 0 20px; font-size: 30px; font-weight: 650; letter-spacing: -.01em; }}
.models {{ display: grid; grid-template-columns: 1fr auto 1fr; gap: 16px; align-items: stretch; }}
.arrow {{ align-self: center; font-size: 28px; color: #a9b6cc; }}
.model {{ background: rgba(255,255,255,.07); border: 1px solid rgba(255,255,255,.14);
  border-radius: 10px; padding: 14px 16px; min-width: 0; }}
.model.base {{ border-top: 4px solid var(--base); }}
.model.tuned {{ border-top: 4px solid var(--tuned); }}
.model .name {{ font-size: 20px; font-weight: 600; margin: 4px 0 8px; overflow-wrap: anywhere; }}
.model dl {{ display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 0;
  font-size: 13px; }}
.model dt {{ color: #a9b6cc; }}
.model dd {{ margin: 0; overflow-wrap: anywhere; }}
.role {{ display: inline-block; font-size: 11px; font-weight: 700; text-transform: uppercase;
  letter-spacing: .08em; padding: 1px 8px; border-radius: 999px; color: #fff; }}
.role.base {{ background: var(--base); }}
.role.tuned {{ background: var(--tuned); }}
.toc {{ position: sticky; top: 0; z-index: 2; background: rgba(255,255,255,.95);
  border-bottom: 1px solid var(--line); }}
.toc .wrap {{ display: flex; flex-wrap: wrap; gap: 4px 18px; padding-top: 10px;
  padding-bottom: 10px; font-size: 14px; }}
.toc a {{ color: var(--muted); text-decoration: none; }}
.toc a:hover {{ color: var(--ink); text-decoration: underline; }}
main {{ padding-top: 24px; padding-bottom: 24px; }}
section {{ background: var(--paper); border: 1px solid var(--line); border-radius: 12px;
  padding: 22px 26px 18px; margin: 0 0 22px; box-shadow: 0 1px 2px rgba(16,24,40,.04); }}
h2 {{ margin: 0 0 4px; font-size: 21px; font-weight: 650; letter-spacing: -.005em; }}
h3 {{ font-size: 15px; margin: 0 0 8px; }}
.lede {{ margin: 0 0 14px; color: var(--muted); }}
figure {{ margin: 16px 0 6px; }}
figure img {{ display: block; max-width: 100%; height: auto; margin: 0 auto; }}
figcaption {{ font-size: 13.5px; color: var(--muted); margin-top: 8px; }}
ul.claims, ul.callout {{ list-style: none; padding: 0; margin: 8px 0 16px; }}
ul.claims li {{ padding: 9px 0; border-bottom: 1px solid var(--line); }}
ul.claims li:last-child {{ border-bottom: 0; }}
ul.callout li {{ background: #f5f8fc; border-left: 3px solid var(--base); padding: 8px 12px;
  margin: 6px 0; border-radius: 0 6px 6px 0; }}
.tag {{ display: inline-block; font-size: 12px; font-weight: 600; color: var(--muted);
  background: var(--bg); border: 1px solid var(--line); border-radius: 999px; padding: 0 9px;
  margin-right: 10px; text-decoration: none; }}
a.tag:hover {{ color: var(--ink); border-color: var(--muted); }}
.stat {{ white-space: nowrap; font-size: 13px; color: var(--muted);
  font-variant-numeric: tabular-nums; margin-left: 6px; }}
dl.facts {{ display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px;
  font-size: 14px; margin: 8px 0 0; }}
dl.facts dt {{ color: var(--muted); }}
dl.facts dd {{ margin: 0; }}
.warnings {{ margin-top: 16px; background: #fff8e6; border: 1px solid #f3d48a;
  border-radius: 8px; padding: 10px 16px; font-size: 14px; }}
.warnings h3 {{ margin: 0 0 4px; font-size: 14px; color: #8a5a00; }}
.warnings ul {{ margin: 0; padding-left: 18px; }}
.problem {{ background: #fdecec; border: 1px solid #f1b5b5; color: #8c1d1d; padding: 8px 12px;
  border-radius: 8px; font-size: 14px; }}
.table-wrap {{ overflow-x: auto; margin: 12px 0 4px; }}
table {{ border-collapse: collapse; width: 100%; font-size: 13.5px;
  font-variant-numeric: tabular-nums; }}
th, td {{ padding: 5px 10px; border-bottom: 1px solid var(--line); text-align: left; }}
th {{ font-weight: 600; color: var(--muted); border-bottom: 2px solid var(--line); }}
td.num, th.num {{ text-align: right; }}
tbody tr:nth-child(even) {{ background: #fafbfc; }}
details {{ margin-top: 10px; font-size: 14px; }}
details summary {{ cursor: pointer; color: var(--muted); }}
.legend {{ display: flex; flex-wrap: wrap; gap: 8px 22px; align-items: center; font-size: 13px;
  color: var(--muted); margin: 4px 0 10px; }}
.legend .scale {{ display: inline-flex; align-items: center; gap: 6px; }}
.legend .bar {{ display: inline-block; width: 140px; height: 10px; border-radius: 3px;
  border: 1px solid var(--line); }}
figure.heatmap {{ border-top: 1px solid var(--line); padding-top: 14px; }}
.pair {{ display: grid; grid-template-columns: 1fr 1fr; gap: 18px; }}
.side {{ min-width: 0; }}
.side h3 {{ display: flex; gap: 8px; align-items: center; font-weight: 600; }}
.tokens {{ white-space: pre-wrap; overflow-wrap: anywhere; font-size: 14px; line-height: 1.9;
  padding: 10px 12px; border: 1px solid var(--line); border-radius: 8px; background: #fcfcfd; }}
.tok {{ border-radius: 3px; padding: 1px 0; }}
.tok.ins {{ box-shadow: inset 0 -2px 0 var(--ins); }}
.tok.ctx {{ border-bottom: 2px dotted var(--ctx); }}
.legend .tok {{ padding: 1px 4px; color: var(--ink); }}
.tok .empty {{ color: #9aa3b2; }}
.response {{ white-space: pre-wrap; overflow-wrap: anywhere; font-size: 13.5px; margin-top: 8px;
  max-height: 11em; overflow-y: auto; padding: 8px 12px; background: var(--bg);
  border-radius: 8px; }}
.response .what {{ display: block; font-size: 11px; text-transform: uppercase;
  letter-spacing: .08em; color: var(--muted); }}
footer {{ color: var(--muted); font-size: 13px; padding: 8px 0 36px; }}
@media (max-width: 760px) {{
  .models, .pair {{ grid-template-columns: 1fr; }}
  .arrow {{ display: none; }}
  section {{ padding: 18px 16px; }}
}}
"""
