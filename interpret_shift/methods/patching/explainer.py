"""Cross-model activation patching (DESIGN, issue 17 method 3).

For each prompt and the tuned model's response y (given, or generated greedily through
the tuned chat template) and each patchable point (layer x component):

* ``into_base``: the base model reads prompt + y while the point's activation at every
  position is replaced by the tuned model's there. Recovered share
  ``(log p_patched(y) - log p_base(y)) / (log p_tuned(y) - log p_base(y))`` with log p the
  sum over the response tokens, and the mean KL(tuned || patched) over the positions.
* ``into_tuned``: the reverse, the tuned model with the base model's activation; recovery
  of the base behaviour and KL(base || patched).

When the two models give y the same log-probability the share is 0/0: it is stored as NaN
with the reason in ``meta["undefined"]``, never as a number.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from interpret_shift.core.explainer import Explainer
from interpret_shift.core.options import at_least, chosen_layers
from interpret_shift.core.pair import shape
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import Explanation
from interpret_shift.core.responses import Chat, encode_chats, respond
from interpret_shift.errors import InputError
from interpret_shift.methods.patching.encode import fed, reader
from interpret_shift.methods.patching.patch import (
    COMPONENTS,
    choose_strategy,
    clean_run,
    patched_scores,
)

#: direction -> (receiving side, source side); 0 = base, 1 = tuned.
DIRECTIONS = {"into_base": (0, 1), "into_tuned": (1, 0)}
BATCHING = ("auto", "copies")


class CrossModelPatching(Explainer):
    """Which layers carry the change: one model's activations patched into the other's run.

    Options: ``components`` to patch (resid_post, attn.out, mlp.out), ``layers`` (None:
    all), ``batch_size`` patched rows per forward, ``batching`` (``auto``: the cheapest
    way the model allows, a batch that grows from the clean run layer by layer and skips
    the work a patch replaces; ``copies``: always the input copied once per point; see
    ``patch.py``), ``chat_template``,
    ``max_new_tokens`` (greedy response when a prompt has none), ``min_gap`` (nats: below
    it the two models give the response the same probability and the share is undefined).
    """

    name = "patching"
    data_kind = "cross_model_patching"
    needs = frozenset({"prompts", "pair", "hook_points"})
    description = "cross-model activation patching: the share of the change each layer recovers"

    @dataclasses.dataclass
    class Config:
        components: list[str] = dataclasses.field(default_factory=lambda: list(COMPONENTS))
        layers: list[int] | None = None
        batch_size: int = dataclasses.field(default=64, metadata=at_least(1))
        batching: str = "auto"
        chat_template: bool = True
        max_new_tokens: int = dataclasses.field(default=32, metadata=at_least(1))
        min_gap: float = dataclasses.field(default=1e-4, metadata=at_least(0))

        def __post_init__(self) -> None:
            unknown = [c for c in self.components if c not in COMPONENTS]
            if unknown or not self.components:
                raise InputError(
                    f"patching.components={self.components!r}: "
                    + (f"unknown component {unknown[0]!r}." if unknown else "nothing to patch."),
                    f"Choose among {', '.join(COMPONENTS)}.",
                )
            if self.batching not in BATCHING:
                raise InputError(
                    f"patching.batching={self.batching!r} is not a way to batch.",
                    f"Choose {' or '.join(BATCHING)}.",
                )

    def items(self, pair, prompts: Sequence[PromptRecord]) -> list[str]:
        """The prompts; refuses, before any work, a pair whose activations cannot be swapped."""
        base, tuned = pair.subjects
        _check_pair(base, tuned)
        self._layers(base.layout.n_layers)  # a layer that does not exist fails now
        for component in self.config.components:
            for subject in (base, tuned):
                if subject.layout.entry(component, 0) is None:
                    raise InputError(
                        f"This {subject.adapter.name} model has no {component!r} point to patch.",
                        "Leave it out of patching.components.",
                    )
        # an empty or too long prompt fails now, before any work
        encode_chats(pair.tuned, prompts, self._reader(pair))
        return [prompt.id for prompt in prompts]

    def _reader(self, pair):
        return reader(pair.tokenizer, self.config.chat_template)

    def _layers(self, n_layers: int) -> list[int]:
        return chosen_layers(self.name, self.config.layers, n_layers, pair=True)

    def explain(
        self, pair, keys: Sequence[str], prompts: Sequence[PromptRecord]
    ) -> Iterator[tuple[str, Explanation]]:
        tokenizer = self._reader(pair)
        for chat in encode_chats(pair.tuned, prompts, tokenizer, keys):
            respond(pair.tuned, chat, self.config.max_new_tokens, tokenizer)
            yield chat.prompt.id, self._patch(pair, chat)

    def _patch(self, pair, chat: Chat) -> Explanation:
        config, subjects = self.config, pair.subjects
        layers = self._layers(subjects[0].layout.n_layers)
        points = [(c, layer) for c in config.components for layer in layers]
        names = [f"layers.{layer}.{c}" for c, layer in points]
        shape = (len(DIRECTIONS), len(config.components), len(layers))
        arrays = {
            "logp": np.zeros(2, np.float64),  # base, tuned: log p(response), summed
            "kl_clean": np.zeros(2, np.float64),  # KL(tuned || base), KL(base || tuned)
            "logp_patched": np.full(shape, np.nan),
            "kl_patched": np.full(shape, np.nan),
            "recovery": np.full(shape, np.nan),
            "response_ids": np.asarray(chat.response, dtype=np.int64),
        }
        undefined: dict[str, str | None] = dict.fromkeys(DIRECTIONS)
        batching: dict[str, str | None] = dict.fromkeys(DIRECTIONS)
        m = len(chat.response)
        if m == 0:
            undefined = dict.fromkeys(DIRECTIONS, "the response is empty: nothing to recover")
        else:
            ids, tokens = fed(chat), torch.tensor(chat.response, dtype=torch.long)
            runs = [clean_run(subject, ids, m, names) for subject in subjects]
            chosen = [float(logp.gather(-1, tokens[:, None].to(logp.device)).sum())
                      for logp, _ in runs]  # fmt: skip
            arrays["logp"][:] = chosen
            for d, (receiver, source) in enumerate(DIRECTIONS.values()):
                target = runs[source][0]
                own = runs[receiver][0].to(target.device)
                kl = (target.exp() * (target - own)).sum(-1).clamp_min(0).mean()
                arrays["kl_clean"][d] = float(kl)
                patches = [(name, runs[source][1][name]) for name in names]
                strategy = self._strategy(subjects[receiver])
                batching[list(DIRECTIONS)[d]] = strategy
                logp, kls = patched_scores(subjects[receiver], ids, tokens, target, patches,
                                           config.batch_size, strategy, runs[receiver][1])  # fmt: skip
                arrays["logp_patched"][d] = logp.double().numpy().reshape(shape[1:])
                arrays["kl_patched"][d] = kls.double().numpy().reshape(shape[1:])
                gap = chosen[source] - chosen[receiver]
                if not math.isfinite(gap) or abs(gap) <= config.min_gap:
                    undefined[list(DIRECTIONS)[d]] = (
                        f"the two models give the response the same log-probability (gap "
                        f"{abs(gap):.2g} nats): the recovered share is 0/0"
                    )
                else:
                    arrays["recovery"][d] = (arrays["logp_patched"][d] - chosen[receiver]) / gap
        arrays = {k: v.astype(np.float32) if v.dtype == np.float64 else v
                  for k, v in arrays.items()}  # fmt: skip
        meta = self._meta(pair, chat, layers, undefined, batching)
        return Explanation(self.name, self.data_kind, arrays, meta)

    def _strategy(self, receiver) -> str:
        """How the patched rows are batched: the growing batch unless refused (see patch.py)."""
        if self.config.batching == "copies":
            return "copies"
        return choose_strategy(receiver, self.config.components)

    def _meta(
        self, pair, chat: Chat, layers: list[int], undefined: dict, batching: dict
    ) -> dict[str, Any]:
        tokenizer, prompt = pair.tokenizer, chat.prompt
        given = prompt.response is not None
        return {
            "prompt_id": prompt.id,
            "group": prompt.group,
            "text": chat.text,
            "directions": list(DIRECTIONS),
            "components": list(self.config.components),
            "layers": layers,
            "undefined": undefined,
            "batching": batching,  # per direction: "lean", "growing" or "copies" (None: none ran)
            "response": prompt.response if given else tokenizer.decode(chat.response),
            "response_source": "given" if given else "generated",
            "n_response_tokens": len(chat.response),
            "warnings": list(chat.warnings),
        }


def _check_pair(base, tuned) -> None:
    """One vocabulary, one architecture and shape: activations must mean the same thing."""
    if base.tokenizer.get_vocab() != tuned.tokenizer.get_vocab():
        raise InputError(
            "Cross-model patching needs one tokenizer, but the two models' vocabularies differ.",
            "Compare a model with its own tuned version, or leave patching out of --explainers.",
        )
    shapes = [shape(base), shape(tuned)]
    if shapes[0] != shapes[1]:
        raise InputError(
            f"Cross-model patching needs one architecture and shape: base {shapes[0]}, tuned "
            f"{shapes[1]} (adapter, layers, width).",
            "Compare a model with its own tuned version, or leave patching out of --explainers.",
        )
