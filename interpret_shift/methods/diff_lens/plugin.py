"""Registers the activation-difference lens through the same hooks a third-party plugin
implements."""

from __future__ import annotations

from interpret_shift.core.method import Bundle
from interpret_shift.methods.diff_lens.claims import CLAIMS
from interpret_shift.methods.diff_lens.explainer import DiffLensExplainer
from interpret_shift.methods.diff_lens.metrics import DIFF_METRICS
from interpret_shift.methods.diff_lens.section import SECTIONS

PLUGIN = Bundle(
    explainers=[DiffLensExplainer],
    diff_metrics=DIFF_METRICS,
    claims=CLAIMS,
    report_sections=SECTIONS,
)
