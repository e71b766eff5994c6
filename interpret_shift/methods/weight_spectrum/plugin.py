"""Registers the weight-spectrum method through the same hooks a third-party plugin
implements."""

from __future__ import annotations

from interpret_shift.core.method import Bundle
from interpret_shift.methods.weight_spectrum.claims import CLAIMS
from interpret_shift.methods.weight_spectrum.explainer import WeightSpectrum
from interpret_shift.methods.weight_spectrum.metrics import DIFF_METRICS
from interpret_shift.methods.weight_spectrum.section import SECTIONS

PLUGIN = Bundle(
    explainers=[WeightSpectrum],
    diff_metrics=DIFF_METRICS,
    claims=CLAIMS,
    report_sections=SECTIONS,
)
