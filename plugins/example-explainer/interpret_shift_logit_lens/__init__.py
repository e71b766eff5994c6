"""A logit-lens explainer, as a separately installed plugin."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from interpret_shift.explainers import Explainer
from interpret_shift.hookspecs import hookimpl
from interpret_shift.records import Explanation


class LogitLens(Explainer):
    """Per layer: probability of the model's final next-token prediction, read early."""

    name = "logit-lens"
    data_kind = "unit_scalars"
    needs = frozenset({"prompts", "hook_points"})
    description = "probability of the final prediction when each layer's residual is decoded"

    @dataclasses.dataclass
    class Config:
        max_tokens: int = 256

    def items(self, subject, prompts):
        return [prompt.id for prompt in prompts]

    def explain(self, subject, keys, prompts):
        by_id = {prompt.id: prompt for prompt in prompts}
        final_norm = subject.model.get_submodule(subject.layout.module_path("final_norm"))
        unembed = subject.model.get_submodule(subject.layout.module_path("unembed"))
        for key in keys:
            ids = subject.tokenizer(by_id[key].prompt, return_tensors="pt").input_ids
            ids = ids[:, -self.config.max_tokens :].to(subject.device)
            output, cache = subject.hooks.run_with_cache(
                ids, names="layers.*.resid_post", stop_early=False
            )
            with torch.no_grad():
                last = cache.stack("resid_post")[:, 0, -1]  # (layers, d_model)
                probs = unembed(final_norm(last)).float().softmax(-1)
                target = int(output.logits[0, -1].argmax())
            yield (
                key,
                Explanation(
                    kind=self.name,
                    data_kind=self.data_kind,
                    arrays={"values": probs[:, target].cpu().numpy().astype(np.float32)},
                    meta={
                        "units": [f"layers.{i}" for i in range(probs.shape[0])],
                        "target_token": subject.tokenizer.decode([target]),
                    },
                ),
            )


@hookimpl
def interpret_shift_explainers():
    return [LogitLens]
