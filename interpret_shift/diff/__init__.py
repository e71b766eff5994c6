"""The diff engine: compares two models' records of one explainer with the metrics given.

It names no method: the caller (the pipeline, or your code) passes the
:class:`~interpret_shift.core.method.DiffMetric` objects that apply, usually
``registry.diff_metrics_for(explainer)``; without them, the generic metrics of the records'
data kind run. It refuses to pair records that do not describe the same thing (explainer,
prompts, word lists, options) and says which field differs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from interpret_shift.core.method import DiffContext, DiffMetric, Records
from interpret_shift.diff.generic import GENERIC_DIFF_METRICS
from interpret_shift.errors import RecordError

__all__ = [
    "DiffContext",
    "DiffMetric",
    "Records",
    "analyse_pair",
    "check_pairable",
    "diff_records",
]

#: Metadata fields that must agree for two records to be comparable.
MUST_MATCH = ("explainer", "data_kind", "prompt_ids", "word_list", "config")


def check_pairable(base: Records, tuned: Records) -> None:
    """Raise unless the two record sets describe the same items of the same explainer."""
    if set(base) != set(tuned):
        only = sorted(set(base) ^ set(tuned))[:5]
        raise RecordError(
            f"The two models' records cover different items (e.g. {only}).",
            "Run the explainer on both models with the same prompts and options.",
        )
    for key in base:
        a, b = base[key], tuned[key]
        for field in MUST_MATCH:
            left, right = _field(a, field), _field(b, field)
            if left != right:
                raise RecordError(
                    f"Records {key!r} differ in {field}: base {_short(left)} vs tuned "
                    f"{_short(right)}; they cannot be compared.",
                    "Explain both models with the same explainer, prompts, word list and "
                    "options (compare does this for you).",
                )


def diff_records(
    base: Records,
    tuned: Records,
    metrics: Iterable[DiffMetric] | None = None,
    context: DiffContext | None = None,
) -> dict[str, Any]:
    """Run each metric on the two record sets; ``{metric name: its result}``."""
    check_pairable(base, tuned)
    if not base:
        return {}
    first = next(iter(base.values()))
    if metrics is None:
        metrics = [m for m in GENERIC_DIFF_METRICS if m.data_kind == first.data_kind]
    context = context or DiffContext(first.explainer)
    return {metric.name: metric.compute(base, tuned, context) for metric in metrics}


def analyse_pair(
    records: Records, metrics: Iterable[DiffMetric], context: DiffContext
) -> dict[str, Any]:
    """A pair explainer's records already hold both models: each metric reads them alone,
    ``compute(records, context)``; ``{metric name: its result}``."""
    return {metric.name: metric.compute(records, context) for metric in metrics}


def _field(record, field: str) -> Any:
    return getattr(record, field) if field in ("explainer", "data_kind") else record.meta.get(field)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
