"""Registers the patching method through the same hooks a third-party plugin implements."""

from __future__ import annotations

from interpret_shift.core.method import Bundle
from interpret_shift.methods.patching.claims import CLAIMS
from interpret_shift.methods.patching.explainer import CrossModelPatching
from interpret_shift.methods.patching.metrics import DIFF_METRICS
from interpret_shift.methods.patching.section import SECTIONS

PLUGIN = Bundle(
    explainers=[CrossModelPatching],
    diff_metrics=DIFF_METRICS,
    claims=CLAIMS,
    report_sections=SECTIONS,
)
