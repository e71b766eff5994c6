"""The difference lens's report section: the relative norm by layer, and per layer the
tokens the difference promotes and suppresses."""

from __future__ import annotations

from interpret_shift.core.method import Json, ReportSection, SectionContext
from interpret_shift.core.render.html import escape, figure, table
from interpret_shift.core.render.numbers import num
from interpret_shift.methods.diff_lens import plots
from interpret_shift.methods.diff_lens.claims import WHERE


def _tokens(items: list) -> str:
    if not items:
        return "–"
    return ", ".join(f"<code>{escape(repr(t['token']))}</code>&nbsp;×{escape(t['prompts'])}"
                     for t in items)  # fmt: skip


def _section(diff: Json, context: SectionContext) -> str:
    norms = diff["norm-by-layer"]
    groups = [g for g in WHERE if (norms.get(g) or {}).get("positions")]
    if not groups:
        return "<p>No positions were read.</p>"
    png = plots.norm_by_layer({g: norms[g]["relative"] for g in groups})
    caption = (
        "Size of the difference of the two models' residual streams after each layer, on the "
        "same tokens (the prompt through the tuned model's chat template, then the first "
        "tokens of the tuned model's response): mean over positions of |h_tuned − h_base| "
        "divided by the mean |h_base|, averaged over prompts; the band spans the prompts. "
        "A jump marks the layer where the tuning's change enters the stream; zero means the "
        "models agree up to there."
    )
    parts = [str(figure(png, "relative residual difference by layer", caption))]
    tokens = diff.get("lens-tokens")
    if tokens:
        tuned, base = tokens["readouts"].index("tuned"), tokens["readouts"].index("base")
        for g in groups:
            gi = tokens["groups"].index(g)
            promoted, suppressed = tokens["promoted"][gi], tokens["suppressed"][gi]
            rows = [[escape(layer), _tokens(promoted[tuned][i]), _tokens(suppressed[tuned][i]),
                     _tokens(promoted[base][i]), _tokens(suppressed[base][i]),
                     num(norms[g]["relative"]["mean"][i])]
                    for i, layer in enumerate(tokens["layers"])]  # fmt: skip
            parts.append(f"<h3>{escape(WHERE[g].capitalize())} "
                         f"({escape(norms[g]['positions'])} positions)</h3>")  # fmt: skip
            headers = [
                "layer",
                "promoted (tuned readout)",
                "suppressed (tuned readout)",
                "promoted (base readout)",
                "suppressed (base readout)",
                "|Δh| / |h_base|",
            ]
            parts.append(str(table(headers, rows, first_numeric=5)))
        parts.append(
            "<p>Tokens: the mean difference of each prompt read through each model's final "
            "norm and unembedding (logit lens); listed are the tokens among the most prompts' "
            f"top {escape('/')} bottom lists, ×&nbsp;how many prompts. Layers whose difference "
            "is below the noise threshold have none.</p>"
        )
    return "".join(parts)


SECTIONS = (
    ReportSection(explainer="diff-lens", id="diff-lens", title="Activation-difference lens",
                  keys=("norm-by-layer",), build=_section, order=46,
                  lede="Where in the layers the two models' residual streams part, and the "
                       "words the difference writes."),
)  # fmt: skip
