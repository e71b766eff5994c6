"""Token distribution shift (Lin et al. 2023): a pair explainer, one record per prompt.

Both models read the same text: the prompt through the tuned model's chat template, then
the tuned model's response (the given one, or its own greedy one). One forward pass per
model scores every response position at once; at each position the tuned model's greedy
token is ranked under the base model (see :mod:`.analysis`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from interpret_shift.core.explainer import Explainer
from interpret_shift.core.options import at_least
from interpret_shift.core.placement import input_device
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import Explanation
from interpret_shift.core.responses import Chat, encode_chats, respond
from interpret_shift.methods.token_shift.analysis import Shift, token_shift


@torch.no_grad()
def response_logits(model: nn.Module, chat: Chat) -> torch.Tensor:
    """The logits (m, vocab) that predict each of the m response tokens, in one forward."""
    m = len(chat.response)
    vocab = model.get_output_embeddings().weight.shape[0]
    if m == 0:
        return torch.zeros((0, vocab))
    device = input_device(model)
    fed = torch.tensor([chat.full[:-1]], device=device)  # the last token is never fed
    return model(input_ids=fed, logits_to_keep=m, use_cache=False).logits[0].float().cpu()


class TokenShiftExplainer(Explainer):
    """Where the tuned model's response departs from what the base model would say."""

    name = "token-shift"
    data_kind = "token_shift"
    needs = frozenset({"prompts", "pair"})
    description = "rank of each of the tuned model's response tokens under the base model"

    @dataclasses.dataclass
    class Config:
        max_new_tokens: int = dataclasses.field(default=64, metadata=at_least(1))  # generated

    def items(self, pair, prompts: Sequence[PromptRecord]) -> list[str]:
        encode_chats(pair.tuned, prompts, pair.tokenizer)  # an empty or too long prompt fails now
        return [prompt.id for prompt in prompts]

    def explain(
        self, pair, keys: Sequence[str], prompts: Sequence[PromptRecord]
    ) -> Iterator[tuple[str, Explanation]]:
        # Tokenize and check every prompt first, so that a bad one fails before any work.
        chats = encode_chats(pair.tuned, prompts, pair.tokenizer, keys)
        for chat in chats:
            respond(pair.tuned, chat, self.config.max_new_tokens, pair.tokenizer)
            base, tuned = (response_logits(s.model, chat) for s in pair.subjects)
            yield chat.prompt.id, self._record(pair.tokenizer, chat, token_shift(base, tuned))

    def _record(self, tokenizer, chat: Chat, shift: Shift) -> Explanation:
        prompt = chat.prompt

        def words(ids: np.ndarray | list[int]) -> list[str]:
            return [tokenizer.decode([int(token)]) for token in ids]

        arrays = {
            "response_ids": np.asarray(chat.response, dtype=np.int64),
            **{f.name: getattr(shift, f.name) for f in dataclasses.fields(shift)},
        }
        meta: dict[str, Any] = {
            "prompt_id": prompt.id,
            "group": prompt.group,
            "text": chat.text,
            "response": prompt.response
            if chat.source == "given"
            else tokenizer.decode(chat.response),
            "response_source": chat.source,
            "response_tokens": words(chat.response),
            "tuned_tokens": words(shift.tuned_ids),
            "base_top_tokens": words(shift.base_top_ids),
            "warnings": list(chat.warnings),
        }
        return Explanation(self.name, self.data_kind, arrays, meta)
