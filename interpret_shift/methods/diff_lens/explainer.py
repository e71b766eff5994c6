"""Activation-difference lens: a pair explainer, one record per prompt.

Both models read the same tokens: the prompt through the tuned model's chat template, then
the first ``response_positions`` tokens of the tuned model's response (given, or its own
greedy one). The residual stream after every layer is read through the hook points
(``layers.*.resid_post``), one forward pass per model; the differences and their logit
lens are computed as in :mod:`.analysis`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from interpret_shift.core.explainer import Explainer
from interpret_shift.core.options import at_least
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import Explanation
from interpret_shift.core.responses import Chat, encode_chats, respond
from interpret_shift.methods.diff_lens.analysis import (
    GROUPS,
    READOUTS,
    Difference,
    difference,
    lens,
)


def residuals(subject, ids: list[int]) -> torch.Tensor:
    """The residual stream after every layer (layers, positions, d), float32 on the CPU."""
    fed = torch.tensor([ids], device=subject.device)
    _, cache = subject.hooks.run_with_cache(
        fed, names="layers.*.resid_post", offload=True, logits_to_keep=1, use_cache=False
    )
    return cache.stack("resid_post")[:, 0].float()


def readout(subject):
    """The model's own last step: final norm, then unembedding (float32 out)."""
    model, layout = subject.model, subject.layout
    final_norm = model.get_submodule(layout.module_path("final_norm"))
    unembed = model.get_submodule(layout.module_path("unembed"))

    # with a device map, the norm and the unembedding may live on different devices
    devices = [next(m.parameters(), torch.empty(0, device=subject.device)).device
               for m in (final_norm, unembed)]  # fmt: skip

    def read(vectors: torch.Tensor) -> torch.Tensor:
        x = final_norm(vectors.to(device=devices[0], dtype=subject.dtype))
        return unembed(x.to(devices[1])).float().cpu()

    return read


class DiffLensExplainer(Explainer):
    """Which layers the two models' residual streams differ at, and the words the
    difference writes."""

    name = "diff-lens"
    data_kind = "diff_lens"
    needs = frozenset({"prompts", "pair", "hook_points"})
    description = "per-layer residual difference of the two models and its logit lens"

    @dataclasses.dataclass
    class Config:
        response_positions: int = dataclasses.field(default=8, metadata=at_least(0))
        top_k: int = dataclasses.field(default=10, metadata=at_least(1))  # tokens per layer
        # layers whose mean difference is below this fraction of the base activation's norm
        # are not read (a difference of float noise has no words)
        min_relative: float = dataclasses.field(default=1e-4, metadata=at_least(0))
        skip_bos: bool = True  # leave a leading BOS token out of the prompt positions

    def items(self, pair, prompts: Sequence[PromptRecord]) -> list[str]:
        encode_chats(pair.tuned, prompts, pair.tokenizer)  # an empty or too long prompt fails now
        return [prompt.id for prompt in prompts]

    def explain(
        self, pair, keys: Sequence[str], prompts: Sequence[PromptRecord]
    ) -> Iterator[tuple[str, Explanation]]:
        chats = encode_chats(pair.tuned, prompts, pair.tokenizer, keys)
        readouts = [readout(subject) for subject in pair.subjects]
        k = self.config.response_positions
        for chat in chats:
            if k:
                respond(pair.tuned, chat, k, pair.tokenizer)
            response = chat.response[:k]
            ids = [*chat.ids, *response]
            start = int(self.config.skip_bos and len(chat.ids) > 1
                        and chat.ids[0] == getattr(pair.tokenizer, "bos_token_id", None))  # fmt: skip
            n = len(chat.ids)
            groups = [slice(start, n), slice(n, n + len(response))]
            base, tuned = (residuals(subject, ids) for subject in pair.subjects)
            diff = difference(base, tuned, groups)
            yield chat.prompt.id, self._record(pair.tokenizer, chat, response, diff, readouts)

    def _record(self, tokenizer, chat: Chat, response, diff: Difference, readouts) -> Explanation:
        readable = (diff.positions[:, None] > 0) & (
            diff.mean_norm > self.config.min_relative * diff.base_norm
        )
        found = [[lens(read, torch.from_numpy(diff.delta_mean[g]), self.config.top_k, readable[g])
                  for read in readouts] for g in range(len(GROUPS))]  # fmt: skip
        names = ("promoted_ids", "promoted_values", "suppressed_ids", "suppressed_values")
        # each (groups, readouts, layers, k)
        stacked = {name: np.stack([np.stack([r[i] for r in per_group]) for per_group in found])
                   for i, name in enumerate(names)}  # fmt: skip
        arrays = {
            "response_ids": np.asarray(response, dtype=np.int64),
            **{f.name: getattr(diff, f.name) for f in dataclasses.fields(diff)},
            **stacked,
        }

        def words(ids: np.ndarray) -> Any:
            if ids.ndim > 1:
                return [words(row) for row in ids]
            return [tokenizer.decode([int(t)]) if t >= 0 else None for t in ids]

        meta: dict[str, Any] = {
            "prompt_id": chat.prompt.id,
            "group": chat.prompt.group,
            "groups": list(GROUPS),
            "readouts": list(READOUTS),
            "layers": [f"layers.{i}" for i in range(diff.delta_norm.shape[1])],
            "response_source": chat.source,
            "response_tokens": [tokenizer.decode([t]) for t in response],
            "promoted_tokens": words(stacked["promoted_ids"]),
            "suppressed_tokens": words(stacked["suppressed_ids"]),
            "warnings": list(chat.warnings),
        }
        return Explanation(self.name, self.data_kind, arrays, meta)
