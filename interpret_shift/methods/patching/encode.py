"""What the two models read, on top of :mod:`interpret_shift.core.responses` (the prompt
through the tuned model's chat template, the given or greedy response)."""

from __future__ import annotations

import copy

import torch

from interpret_shift.core.responses import Chat


def reader(tokenizer, chat_template: bool):
    """The tokenizer the prompts are read with: as it is, or without its chat template when
    the ``chat_template`` option is off (the raw prompt, with the usual special tokens)."""
    if chat_template or not getattr(tokenizer, "chat_template", None):
        return tokenizer
    plain = copy.copy(tokenizer)  # shallow: the vocabulary is shared, the template dropped
    plain.chat_template = None
    return plain


def fed(chat: Chat) -> torch.Tensor:
    """What the models read: the prompt and every response token but the last (T,)."""
    return torch.tensor([*chat.ids, *chat.response[:-1]], dtype=torch.long)
