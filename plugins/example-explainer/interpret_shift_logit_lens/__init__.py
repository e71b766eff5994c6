"""A logit-lens explainer with its own claims and report section, as a separately
installed plugin: the whole of a method in one file (docs/writing-a-plugin.md)."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from interpret_shift import Claim, Claims, Explainer, Explanation, ReportSection, hookimpl
from interpret_shift.core.render import plots
from interpret_shift.core.render.html import escape, figure, p_cell, table
from interpret_shift.core.render.numbers import num


class LogitLens(Explainer):
    """Per layer: probability of the model's final next-token prediction, read early."""

    name = "logit-lens"
    data_kind = "unit_scalars"  # compared by the generic per-unit metric ("paired-units")
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
                    explainer=self.name,
                    data_kind=self.data_kind,
                    arrays={"values": probs[:, target].cpu().numpy().astype(np.float32)},
                    meta={
                        "units": [f"layers.{i}" for i in range(probs.shape[0])],
                        "target_token": subject.tokenizer.decode([target]),
                    },
                ),
            )


def first_confident_layer(means: list, level: float = 0.5) -> int | None:
    """The first layer whose mean read-out probability reaches ``level``."""
    return next((i for i, m in enumerate(means) if m is not None and m >= level), None)


def lens_claims(diff: dict) -> list[Claim]:
    tests = (diff.get("paired-units") or {}).get("units") or []
    if not tests:
        return []
    base = first_confident_layer([t["mean_base"] for t in tests])
    tuned = first_confident_layer([t["mean_tuned"] for t in tests])
    text = (
        f"The final prediction becomes likely (p ≥ 0.5 on average) at layer "
        f"{'never' if base is None else base} in the base model and "
        f"{'never' if tuned is None else tuned} in the tuned model."
    )
    return [Claim(text, "logit-lens-layers", n=tests[0]["n"])]


def lens_section(diff: dict, context) -> str:
    tests = diff["paired-units"]["units"]
    png = plots.paired_values(
        [t["unit"] for t in tests],
        [t["mean_base"] for t in tests],
        [t["mean_tuned"] for t in tests],
        "p(final prediction)",
    )
    caption = (
        f"Mean probability, over {escape(tests[0]['n'])} prompts, of each model's final "
        "next-token prediction when the residual stream after each layer is decoded."
    )
    rows = [
        [escape(t["unit"]), num(t["mean_base"]), num(t["mean_tuned"]), p_cell(t["p"])]
        for t in tests
    ]
    return figure(png, "logit lens per layer, base vs tuned", caption) + table(
        ["layer", "base", "tuned", "p (paired t-test)"], rows
    )


@hookimpl
def interpret_shift_explainers():
    return [LogitLens]


@hookimpl
def interpret_shift_claims():
    return [Claims(explainer="logit-lens", name="logit-lens-claims", make=lens_claims)]


@hookimpl
def interpret_shift_report_sections():
    return [
        ReportSection(
            explainer="logit-lens",
            id="logit-lens-layers",
            title="Logit lens",
            keys=("paired-units",),
            build=lens_section,
            lede="How early in the layers each model settles on its answer.",
        )
    ]
