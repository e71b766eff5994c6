"""An annotator that asks a local instruction-tuned model (any HF causal LM with a chat template).

The prompt is the shared few-shot chat (``chat_messages``); each seed samples one reply
with its own seeded RNG state, so a seed always gives the same reply and several seeds
give the spread the paper averaged over.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from functools import cached_property

import torch

from interpret_shift.errors import InterpretShiftError
from interpret_shift.methods.ffn.annotators import Annotation, chat_messages, parse_reply

MODEL_ENV = "INTERPRET_SHIFT_ANNOTATOR_MODEL"


class LocalLLMAnnotator:
    """Few-shot prompts a local chat model; ``model`` is a path, GGUF file, hub id or Subject
    (default: ``$INTERPRET_SHIFT_ANNOTATOR_MODEL``), loaded when first needed."""

    name = "local-llm"
    description = "a local instruction-tuned model, prompted few-shot, sampled per seed"

    def __init__(
        self,
        model=None,
        *,
        max_new_tokens: int = 40,
        temperature: float = 0.7,
        top_p: float = 0.9,
        words: int = 30,
        dtype: str = "float32",
    ) -> None:
        self.model, self.dtype = model, dtype
        self.max_new_tokens, self.temperature, self.top_p = max_new_tokens, temperature, top_p
        self.words = words

    @cached_property
    def subject(self):
        """The chat model, loaded on first use (so the registered instance costs nothing)."""
        from interpret_shift.core.subject import Subject, load_subject

        model = self.model or os.environ.get(MODEL_ENV)
        if not model:
            raise InterpretShiftError(
                "The local-llm annotator needs a model.",
                f"Pass model=PATH (a folder, .gguf file or hub id) or set {MODEL_ENV}.",
            )
        subject = model if isinstance(model, Subject) else load_subject(model, dtype=self.dtype)
        if not getattr(subject.tokenizer, "chat_template", None):
            raise InterpretShiftError(
                f"{subject.source} has no chat template, so it cannot be prompted as a chat.",
                "Use an instruction-tuned model (its tokenizer carries a chat template).",
            )
        return subject

    def prompt_ids(self, words: Sequence[str]) -> torch.Tensor:
        """The chat rendered by the model's own template, ready for generation (1 x n)."""
        text = self.subject.tokenizer.apply_chat_template(
            chat_messages(words, self.words), tokenize=False, add_generation_prompt=True
        )
        encoded = self.subject.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        return encoded.input_ids.to(self.subject.device)

    def reply(self, words: Sequence[str], seed: int = 0) -> str:
        ids = self.prompt_ids(words)
        tokenizer = self.subject.tokenizer
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            output = self.subject.model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                do_sample=True,
                temperature=self.temperature,
                top_p=self.top_p,
                max_new_tokens=self.max_new_tokens,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        return tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True)

    def annotate(self, words: Sequence[str], seed: int = 0) -> Annotation:
        return parse_reply(self.reply(words, seed), seed)
