"""Registers the token distribution shift through the same hooks a third-party plugin
implements."""

from __future__ import annotations

from interpret_shift.core.method import Bundle
from interpret_shift.methods.token_shift.claims import CLAIMS
from interpret_shift.methods.token_shift.explainer import TokenShiftExplainer
from interpret_shift.methods.token_shift.metrics import DIFF_METRICS
from interpret_shift.methods.token_shift.section import SECTIONS

PLUGIN = Bundle(
    explainers=[TokenShiftExplainer],
    diff_metrics=DIFF_METRICS,
    claims=CLAIMS,
    report_sections=SECTIONS,
)
