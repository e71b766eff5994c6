"""The patching report section: recovery by layer and component per direction, and KL."""

from __future__ import annotations

from interpret_shift.core.method import Json, ReportSection, SectionContext
from interpret_shift.core.render.html import escape, figure, table
from interpret_shift.core.render.numbers import num
from interpret_shift.methods.patching import plots

MAX_TABLE_LAYERS = 48


def _recovery(diff: Json, context: SectionContext) -> str:
    recovery = diff["recovery"]
    base, tuned = (escape(label) for label in context.labels)
    caption = (
        f"Recovered share (log p<sub>patched</sub> − log p<sub>receiver</sub>) / (log "
        f"p<sub>source</sub> − log p<sub>receiver</sub>) of the response tokens when one "
        f"layer's output is taken from the other model: top row {tuned} → {base} (the base "
        f"model run with the tuned activations), bottom row the reverse. Line: median over "
        f"prompts; band: quartiles. 1 (dashed) means that point alone carries the whole "
        f"difference; 0 that it carries none."
    )
    parts = [figure(plots.recovery_grid(recovery), "recovered share by layer", caption)]
    for direction in recovery["directions"]:
        entry = recovery[direction]
        if entry["reason"]:
            title = escape(plots.TITLES.get(direction, direction))
            parts.append(f"<p>{title}: {escape(entry['reason'])}.</p>")
        elif entry["undefined"]:
            parts.append(f"<p>{escape(plots.TITLES.get(direction, direction))}: undefined for "
                         f"{len(entry['undefined'])} prompt(s) (0/0), left out.</p>")  # fmt: skip
    layers = recovery["layers"]
    if len(layers) <= MAX_TABLE_LAYERS:
        rows = []
        for direction in recovery["directions"]:
            entry = recovery[direction]
            for component in recovery["components"]:
                medians = entry[component]["median"]
                rows.append([escape(plots.TITLES.get(direction, direction)), escape(component),
                             *(num(v, 2) for v in medians)])  # fmt: skip
        parts.append(table(["direction", "component", *(f"L{layer}" for layer in layers)], rows, 2))
    if "kl" in diff and "directions" in diff["kl"]:
        caption = ("Mean KL from the source model's next-token distribution to the patched "
                   "run's, over the response positions; dashed: before patching.")  # fmt: skip
        parts.append(figure(plots.kl_lines(diff["kl"]), "KL after patching by layer", caption))
    return "".join(str(part) for part in parts)


SECTIONS = (
    ReportSection(
        explainer="patching",
        id="patching-recovery",
        title="Cross-model patching",
        keys=("recovery",),
        covers=("kl",),
        build=_recovery,
        lede="Which layers carry the change, causally: one model's activations moved into "
        "the other's run, one layer at a time.",
        order=70,
    ),
)
