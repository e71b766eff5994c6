"""Registers the heads method through the same hooks a third-party plugin implements."""

from __future__ import annotations

from interpret_shift.core.method import Bundle
from interpret_shift.methods.heads.claims import CLAIMS
from interpret_shift.methods.heads.explainer import HeadPatterns
from interpret_shift.methods.heads.metrics import DIFF_METRICS
from interpret_shift.methods.heads.section import SECTIONS

PLUGIN = Bundle(
    explainers=[HeadPatterns],
    diff_metrics=DIFF_METRICS,
    claims=CLAIMS,
    report_sections=SECTIONS,
)
