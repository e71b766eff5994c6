"""The FFN concept report section."""

from __future__ import annotations

import math

from interpret_shift.core.method import Json, ReportSection, SectionContext
from interpret_shift.core.render.html import escape, figure, p_cell, table
from interpret_shift.core.render.numbers import finite, num
from interpret_shift.methods.ffn import plots


def _concepts(data: Json, context: SectionContext) -> str:
    concepts = data["concepts"]
    png = plots.concept_bars(concepts)
    caption = (
        "Share of the principal components of W<sub>down</sub> whose top words name a concept "
        "of each category, per layer group; B = base, T = tuned. Concepts labelled by "
        f"<code>{escape(concepts.get('annotator', 'unknown'))}</code>."
    )
    return figure(png, "stacked bars of FFN concept shares", caption) + _concept_tests(
        concepts.get("tests") or []
    )


def _concept_tests(tests: list[Json]) -> str:
    if not tests:
        return ""
    ordered = sorted(tests, key=lambda t: t["p"] if finite(t.get("p")) else math.inf)
    rows = [
        [
            escape(t["axis"]),
            escape(t["category"]),
            escape(t["group"]),  # already a label: "all layers", "layers 0-3"
            num(t["mean_base"]),
            num(t["mean_tuned"]),
            escape(t["n"]),
            p_cell(t.get("p")),
        ]
        for t in ordered
    ]
    significant = sum(finite(t.get("p")) and t["p"] < 0.05 for t in tests)
    rows_html = table(["axis", "category", "layers", "base", "tuned", "n", "p"], rows, 3)
    return (
        f"<details><summary>{len(tests)} tests of base vs tuned share, {significant} with "
        "p &lt; 0.05 (t-test over n annotation runs, two-sided; – where not defined)"
        f"</summary>{rows_html}</details>"
    )


SECTIONS = (
    ReportSection(explainer="ffn", id="ffn-concepts", title="FFN concepts", keys=("concepts",),
                  build=_concepts, order=40,
                  lede="Which kinds of concept the feed-forward layers' principal components "
                       "store."),
)  # fmt: skip
