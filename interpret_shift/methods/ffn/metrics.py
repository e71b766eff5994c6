"""The FFN method's comparison: concept shares per category and layer group, base vs tuned
(the paper's Table 5 and Figure 3). Rotation and variance come from the generic subspace
metrics (``interpret_shift.diff.generic``)."""

from __future__ import annotations

from typing import Any

from interpret_shift.core.method import DiffContext, DiffMetric, Records
from interpret_shift.methods.ffn.analysis import compare_proportions, label_records, proportions
from interpret_shift.methods.ffn.annotators import builtin_annotators

SIDES = ("base", "tuned")


def concept_table(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    """Label every component with the annotator; proportions per layer group and tests."""
    name = context.options.get("annotator", "lexical")
    annotator = context.resources.get("annotators", name, builtin_annotators(), "annotator")
    records = {"base": base, "tuned": tuned}
    labels = [
        label for side in SIDES for label in label_records(records[side].values(), annotator, side)
    ]
    table: dict[str, Any] = {"annotator": name}
    tests = []
    for axis in ("task", "level"):
        found = proportions(labels, axis)
        table.setdefault("groups", list(found.groups[1:]))
        table[f"{axis}s"] = list(found.categories)
        for side in SIDES:
            mean = found.shares[side][1:].mean(axis=1)  # per group, mean over seeds
            table.setdefault(side, {})[axis] = [[float(v) for v in row] for row in mean]
        for test in compare_proportions(found, "base", "tuned"):
            if test.group != found.groups[0]:
                tests.append({"axis": axis, "category": test.category, "group": test.group,
                              "mean_base": float(test.mean_base),
                              "mean_tuned": float(test.mean_tuned),
                              "n": test.n_base, "p": float(test.p)})  # fmt: skip
    table["tests"] = tests
    return table


def check_annotator(options, resources) -> None:
    """The annotator must exist before any model runs."""
    resources.get("annotators", options["annotator"], builtin_annotators(), "annotator")


DIFF_METRICS = (
    DiffMetric(explainer="ffn", name="concepts", compute=concept_table,
               options={"annotator": "lexical"}, check=check_annotator,
               description="concept shares per category and layer group (the paper's Table 5)"),
)  # fmt: skip
