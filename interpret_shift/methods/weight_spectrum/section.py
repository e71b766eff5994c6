"""The weight-spectrum report section: the effective-rank heatmap and the words written."""

from __future__ import annotations

from interpret_shift.core.method import Json, ReportSection, SectionContext
from interpret_shift.core.render.html import escape, figure, table
from interpret_shift.core.render.numbers import num
from interpret_shift.methods.weight_spectrum import plots

MAX_WORD_ROWS = 12  # the writing matrices with the largest changes


def _spectrum(diff: Json, context: SectionContext) -> str:
    data = diff["spectrum"]
    caption = (
        "Left: the fewest singular directions of ΔW = W<sub>tuned</sub> − W<sub>base</sub> "
        "that hold 90 % of its energy (‖ΔW‖²), per layer and matrix: 0 means unchanged, a "
        "small number a low-rank change (as LoRA makes), near the matrix's full rank a change "
        "spread over every direction. “?” marks ranks beyond the singular values computed. "
        "Right: the size of the change relative to the base weight."
    )
    parts = [figure(plots.rank_heatmaps(data), "effective rank of each weight change", caption)]
    if data.get("source") and "adapter factors" in data["source"]:
        parts.append("<p>Spectra computed exactly from the adapter's low-rank factors.</p>")
    rows = sorted((diff.get("words") or {}).get("rows", []), key=lambda r: -r["relative_norm"])
    cells = []
    for row in rows[:MAX_WORD_ROWS]:
        for j, direction in enumerate(row["directions"][:2]):
            cells.append([
                escape(row["layer"]), escape(row["matrix"]), escape(j + 1),
                num(direction["sigma"], 3),
                escape(" · ".join(direction["promoted"][:6])),
                escape(" · ".join(direction["suppressed"][:6])),
            ])  # fmt: skip
    if cells:
        parts.append(table(["layer", "matrix", "direction", "σ", "writes (+)", "writes (−)"],
                           cells, 3))  # fmt: skip
    elif data.get("identical"):
        parts.append("<p>ΔW = 0 everywhere: no direction writes anything.</p>")
    return "".join(str(part) for part in parts)


SECTIONS = (
    ReportSection(
        explainer="weight-spectrum",
        id="weight-spectrum",
        title="Weight-delta spectrum",
        keys=("spectrum",),
        covers=("angles", "words"),
        build=_spectrum,
        lede="How many directions the tuning changed in each matrix, and which words the "
        "changes write into the residual stream.",
        order=80,
    ),
)
