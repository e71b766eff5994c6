"""The pipeline: ``explain`` one model, ``compare`` a pair (validate, run, diff, report)."""

from interpret_shift.pipeline.compare import align_templates, compare, explain, load_prompt_set

__all__ = ["align_templates", "compare", "explain", "load_prompt_set"]
