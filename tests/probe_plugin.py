"""A test-only plugin of another data kind (token attribution) that brings no claims and no
report section of its own: it must still reach summary.json and report.html."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from interpret_shift import Explainer, Explanation, hookimpl


class EmbeddingNorm(Explainer):
    """Per prompt token, the norm of its residual stream after the last layer."""

    name = "probe-norm"
    data_kind = "token_attribution"
    needs = frozenset({"prompts", "hook_points"})

    @dataclasses.dataclass
    class Config:
        pass

    def items(self, subject, prompts):
        return [p.id for p in prompts]

    def explain(self, subject, keys, prompts):
        by_id = {p.id: p for p in prompts}
        for key in keys:
            encoded = subject.tokenizer(by_id[key].prompt, return_tensors="pt")
            last = f"layers.{subject.layout.n_layers - 1}.resid_post"
            with torch.no_grad():
                _, cache = subject.hooks.run_with_cache(encoded.input_ids, names=last)
            norms = cache[last][0].norm(dim=-1).float().numpy()
            ids = encoded.input_ids[0].tolist()
            yield key, Explanation(
                self.name,
                self.data_kind,
                {"attribution": norms[:, None].astype(np.float32),
                 "prompt_mask": np.ones(len(ids), dtype=bool)},
                {"tokens": subject.tokenizer.convert_ids_to_tokens(ids)},
            )  # fmt: skip


@hookimpl
def interpret_shift_explainers():
    return [EmbeddingNorm]
