"""The pipeline: ``explain`` one model, ``compare`` a pair (validate, run, diff, report)."""

from interpret_shift.pipeline.checks import check_output, check_pair, check_prompts
from interpret_shift.pipeline.compare import (
    Comparison,
    align_templates,
    compare,
    explain,
    load_prompt_set,
    plan,
)
from interpret_shift.pipeline.presets import PRESETS, preset_options

__all__ = [
    "PRESETS",
    "Comparison",
    "align_templates",
    "check_output",
    "check_pair",
    "check_prompts",
    "compare",
    "explain",
    "load_prompt_set",
    "plan",
    "preset_options",
]
