"""Registers the ffn method through the same hooks a third-party plugin implements."""

from __future__ import annotations

from interpret_shift.core.method import Bundle
from interpret_shift.methods.ffn.annotators import builtin_annotators
from interpret_shift.methods.ffn.claims import CLAIMS
from interpret_shift.methods.ffn.explainer import FFNConcepts
from interpret_shift.methods.ffn.metrics import DIFF_METRICS
from interpret_shift.methods.ffn.section import SECTIONS

PLUGIN = Bundle(
    explainers=[FFNConcepts],
    diff_metrics=DIFF_METRICS,
    claims=CLAIMS,
    report_sections=SECTIONS,
    annotators=builtin_annotators(),
)
