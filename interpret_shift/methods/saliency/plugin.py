"""Registers the saliency method through the same hooks a third-party plugin implements."""

from __future__ import annotations

from interpret_shift.core.method import Bundle
from interpret_shift.methods.saliency.claims import CLAIMS
from interpret_shift.methods.saliency.explainer import SaliencyExplainer
from interpret_shift.methods.saliency.metrics import DIFF_METRICS
from interpret_shift.methods.saliency.section import SECTIONS

PLUGIN = Bundle(
    explainers=[SaliencyExplainer],
    diff_metrics=DIFF_METRICS,
    claims=CLAIMS,
    report_sections=SECTIONS,
)
