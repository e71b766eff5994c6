"""The diff engine: compares two models' records of one explainer, by data kind.

A comparison is a :class:`DiffMetric` registered through the
``interpret_shift_diff_metrics`` hook; the engine runs every metric registered for the
records' data kind. It refuses to pair records that do not describe the same thing
(kind, prompts, word lists) and says which field differs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from interpret_shift.errors import InterpretShiftError
from interpret_shift.records import Explanation

Records = Mapping[str, Explanation]


@dataclass(frozen=True)
class DiffMetric:
    """``compute(base, tuned)`` takes two ``{key: record}`` maps, returns JSON-able results."""

    name: str
    data_kind: str
    compute: Callable[[Records, Records], dict[str, Any]]
    description: str = ""


#: Metadata fields that must agree for two records to be comparable.
MUST_MATCH = ("kind", "data_kind", "prompt_ids", "word_list", "config")


def check_pairable(base: Records, tuned: Records) -> None:
    """Raise unless the two record sets describe the same items of the same explainer."""
    if set(base) != set(tuned):
        only = sorted(set(base) ^ set(tuned))[:5]
        raise InterpretShiftError(
            f"The two models' records cover different items (e.g. {only}).",
            "Run the explainer on both models with the same prompts and options.",
        )
    for key in base:
        a, b = base[key], tuned[key]
        for field in MUST_MATCH:
            left = getattr(a, field, None) if field in ("kind", "data_kind") else a.meta.get(field)
            right = getattr(b, field, None) if field in ("kind", "data_kind") else b.meta.get(field)
            if left != right:
                raise InterpretShiftError(
                    f"Records {key!r} differ in {field}: base {_short(left)} vs tuned "
                    f"{_short(right)}; they cannot be compared.",
                    "Explain both models with the same explainer, prompts, word list and "
                    "options (compare does this for you).",
                )


def diff_records(
    base: Records, tuned: Records, metrics: Mapping[str, DiffMetric] | None = None
) -> dict[str, Any]:
    """Run every metric registered for the records' data kind."""
    check_pairable(base, tuned)
    if not base:
        return {}
    data_kind = next(iter(base.values())).data_kind
    if metrics is None:
        from interpret_shift.plugin_manager import plugin_manager

        metrics = plugin_manager().diff_metrics()
    return {
        metric.name: metric.compute(base, tuned)
        for metric in metrics.values()
        if metric.data_kind == data_kind
    }


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."
