"""A prompt as a chat model reads it, and the model's response: given, or its own greedy one.

Methods that read a response (the token distribution shift, the activation-difference
lens, ...) need the same three steps: the prompt through the chat template as token ids,
the given response as token ids, or else the model's greedy continuation, cut by its
context length. A generated response is cached on the subject (``subject.memo``), so two
methods reading the same model's response generate it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from interpret_shift.core.placement import input_device
from interpret_shift.core.prompts import PromptRecord, render_chat
from interpret_shift.errors import InputError


@dataclass
class Chat:
    """One prompt as token ids (chat template applied when the tokenizer has one) and the
    response's token ids; ``warnings`` say what the record's reader should know."""

    prompt: PromptRecord
    text: str
    ids: list[int]
    response: list[int]
    source: str  # "given" or "generated"
    warnings: list[str] = field(default_factory=list)

    @property
    def full(self) -> list[int]:
        """Prompt then response: what a model reads to score every response token."""
        return [*self.ids, *self.response]


def chat_ids(tokenizer, prompt: PromptRecord) -> tuple[str, list[int]]:
    """The text a chat model reads for ``prompt`` and its token ids.

    A template's text already holds its special tokens, so none are added to it; a raw
    prompt (no template) gets the tokenizer's usual ones (e.g. BOS).
    """
    if not prompt.prompt.strip():
        raise InputError(
            f"Prompt {prompt.id!r} is empty.", "Give every prompt some text, or drop it."
        )
    text = render_chat(tokenizer, prompt.prompt)
    templated = bool(getattr(tokenizer, "chat_template", None))
    return text, list(tokenizer(text, add_special_tokens=not templated).input_ids)


def max_positions(config) -> int | None:
    """The model's context length, when its config states one."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return None


def stop_tokens(model: nn.Module, tokenizer) -> set[int]:
    """The ids that end a generated response: the tokenizer's and the model's EOS."""
    stop = {getattr(tokenizer, "eos_token_id", None)}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    stop.update(configured if isinstance(configured, list) else [configured])
    return {token for token in stop if token is not None}


@torch.no_grad()
def greedy(model: nn.Module, ids: Sequence[int], max_new_tokens: int, stop: set[int]) -> list[int]:
    """The model's own greedy continuation (argmax every step), without the stop token."""
    device = input_device(model)
    step, past, new = torch.tensor([list(ids)], device=device), None, []
    for _ in range(max_new_tokens):
        output = model(input_ids=step, cache=past, use_cache=True)
        past, token = output.cache, int(output.logits[0, -1].argmax())
        if token in stop:
            break
        new.append(token)
        step = torch.tensor([[token]], device=device)
    return new


def encode_chats(
    subject, prompts: Sequence[PromptRecord], tokenizer=None, keys: Sequence[str] | None = None
) -> list[Chat]:
    """Every prompt (or those whose ids are ``keys``, in that order) as token ids, checked
    against the model's context (before any work); responses left empty for
    :func:`respond` to fill."""
    tokenizer = tokenizer or subject.tokenizer
    if keys is not None:
        by_id = {prompt.id: prompt for prompt in prompts}
        prompts = [by_id[key] for key in keys]
    limit = max_positions(subject.model.config)
    chats = []
    for prompt in prompts:
        text, ids = chat_ids(tokenizer, prompt)
        given = prompt.response is not None
        response = (
            list(tokenizer(prompt.response, add_special_tokens=False).input_ids) if given else []
        )
        fed = len(ids) + max(len(response) - 1, 0)  # the last response token is never fed
        if limit is not None and fed > limit:
            what = "prompt and its response" if given else "prompt"
            raise InputError(
                f"Prompt {prompt.id!r}: the {what} take {fed} tokens with the chat template, "
                f"more than the model's {limit} positions.",
                "Shorten the prompt or response, or use a model with a longer context.",
            )
        chats.append(Chat(prompt, text, ids, response, "given" if given else "generated"))
    return chats


def respond(subject, chat: Chat, max_new_tokens: int, tokenizer=None) -> Chat:
    """Fill a prompt without a response with ``subject``'s greedy one (cached per subject),
    cut by the option and by the model's positions (with a warning when cut by these)."""
    if chat.source == "given":
        return chat
    tokenizer = tokenizer or subject.tokenizer
    limit = max_positions(subject.model.config)
    steps = max_new_tokens if limit is None else min(max_new_tokens, limit - len(chat.ids) + 1)
    stop = stop_tokens(subject.model, tokenizer)
    key = ("greedy-response", tuple(chat.ids), steps, tuple(sorted(stop)))
    chat.response = list(subject.memo(key, lambda: greedy(subject.model, chat.ids, steps, stop)))
    if steps < max_new_tokens and len(chat.response) == steps:
        chat.warnings.append(
            f"the generated response was cut at {steps} tokens by the model's {limit} "
            f"positions (max_new_tokens is {max_new_tokens})"
        )
    return chat
