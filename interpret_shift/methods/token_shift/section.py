"""The token shift's report section: the class shares by position, the tokens most often
shifted, and a few responses coloured token by token."""

from __future__ import annotations

from interpret_shift.core.method import Json, ReportSection, SectionContext
from interpret_shift.core.render.html import escape, figure, table
from interpret_shift.core.render.numbers import num
from interpret_shift.methods.token_shift import plots
from interpret_shift.methods.token_shift.analysis import CLASSES

_TEXT_COLORS = {"unshifted": "#1b1f24", "marginal": "#1b1f24", "shifted": "#ffffff"}


def _percent(value) -> str:
    return "–" if value is None else f"{100 * value:.1f} %"


def _section(diff: Json, context: SectionContext) -> str:
    overall = diff["shift-ratio"]["overall"]
    parts = [
        table(["tokens", "prompts", "unshifted (rank 1)", "marginal (rank 2–3)",
               "shifted (rank > 3)", "mean KL(tuned ‖ base)"],
              [[escape(overall["n_tokens"]), escape(overall["n_prompts"]),
                _percent(overall["unshifted"]), _percent(overall["marginal"]),
                _percent(overall["shifted"]), num(overall["mean_kl"])]], first_numeric=0)
    ]  # fmt: skip
    curve = diff.get("shift-by-position") or {}
    if curve.get("positions"):
        png = plots.position_curve(curve["positions"], curve["unshifted"], curve["marginal"],
                                   curve["shifted"], curve["n"])  # fmt: skip
        caption = (
            "Share of the tuned model's tokens in each class by response position: its greedy "
            "token ranked under the base model fed the same prefix (unshifted: rank 1, "
            "marginal: 2–3, shifted: &gt; 3). Beneath: how many prompts reach the position. "
            "Shifted tokens early and unshifted ones later is the pattern of “superficial "
            "alignment”: tuning changes the style of the start, the base model carries on."
        )
        parts.append(figure(png, "share of shifted tokens by response position", caption))
    parts.append(_top_tokens(diff.get("top-shifted") or {}))
    parts.append(_examples(diff.get("shift-examples") or [], context))
    return "".join(str(part) for part in parts)


def _top_tokens(top: Json) -> str:
    tokens = top.get("tokens") or []
    if not tokens:
        return "<p>No token is shifted.</p>"
    rows = [[f"<code>{escape(repr(t['token']))}</code>", escape(t["shifted"]), escape(t["chosen"]),
             escape(t["prompts"]), num(t["median_base_rank"], 0)] for t in tokens]  # fmt: skip
    headers = ["token", "times shifted", "times chosen", "prompts", "median base rank"]
    return (f"<p>The tuned model's tokens most often shifted ({escape(top['n_shifted'])} shifted "
            "tokens in all):</p>" + str(table(headers, rows)))  # fmt: skip


def _legend() -> str:
    spans = "".join(
        f'<span class="tok" style="background:{plots.CLASS_COLORS[c]};color:{_TEXT_COLORS[c]}">'
        f"{c}</span>"
        for c in CLASSES
    )
    return f'<div class="legend">{spans}</div>'


def _span(item: Json, j: int) -> str:
    cls = CLASSES[item["classes"][j]]
    token = str(item["tokens"][j])
    title = (f"{cls} · base rank {item['base_rank'][j]} · p tuned {item['p_tuned'][j]:.3f}, "
             f"p base {item['p_base'][j]:.3f} · KL {item['kl'][j]:.3f}")  # fmt: skip
    if item["tuned_tokens"][j] != token:
        title += f" · the tuned model's own choice: {item['tuned_tokens'][j]!r}"
    if item["base_top_tokens"][j] != item["tuned_tokens"][j]:
        title += f" · the base model's choice: {item['base_top_tokens'][j]!r}"
    shown = escape(token.replace("\n", "↵\n")) if token else "∅"
    style = f"background:{plots.CLASS_COLORS[cls]};color:{_TEXT_COLORS[cls]}"
    return f'<span class="tok {cls}" style="{style}" title="{escape(title)}">{shown}</span>'


def _examples(items: list, context: SectionContext) -> str:
    if not items:
        return ""
    blocks = []
    for item in items:
        spans = "".join(_span(item, j) for j in range(len(item["tokens"])))
        source = "given" if item.get("source") == "given" else "generated greedily"
        blocks.append(f"<h3>Prompt <code>{escape(item['id'])}</code> ({escape(source)} "
                      f"response)</h3><div class=\"tokens\">{spans or '<em>(empty)</em>'}</div>")  # fmt: skip
    caption = (
        f"The tuned model's ({escape(context.labels[1])}) responses, each token coloured by "
        "the class of the tuned model's choice at that position under the base model "
        f"({escape(context.labels[0])}); hover a token for its ranks and probabilities."
    )
    return (f'<figure class="token-shift-text">{_legend()}{"".join(blocks)}'
            f"<figcaption>{caption}</figcaption></figure>")  # fmt: skip


SECTIONS = (
    ReportSection(explainer="token-shift", id="token-shift", title="Token distribution shift",
                  keys=("shift-ratio",), build=_section, order=45,
                  lede="Which of the tuned model's tokens the base model would not have said "
                       "itself (Lin et al. 2023)."),
)  # fmt: skip
