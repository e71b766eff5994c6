"""The demo pair's chat template written out by hand: the independent reference for the ids
the pair explainers feed the two demo models."""

from __future__ import annotations

TEMPLATE = "### Instruction:\n{}\n### Response:\n"


def demo_chat_ids(tokenizer, prompt) -> list[int]:
    """The ids the pair reads: demo:tuned's template written out by hand; demo:base has none."""
    if not tokenizer.chat_template:
        return tokenizer(prompt.prompt).input_ids
    return tokenizer(TEMPLATE.format(prompt.prompt), add_special_tokens=False).input_ids
