"""Pair explainers read both models at once: their records go to records/<name>/pair/,
their metrics read those records alone, they resume like any explainer, and `explain`
(one model) and a pair they cannot read are refused before any work."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from interpret_shift import Explainer, Explanation, demo
from interpret_shift.core.method import Bundle, DiffMetric
from interpret_shift.core.prompts import PromptRecord, render_chat
from interpret_shift.core.subject import load_subject
from interpret_shift.errors import InputError, ModelLoadError
from interpret_shift.pipeline import compare, explain
from interpret_shift.plugins.registry import load_registry, register

PROMPTS = [PromptRecord(id=f"p{i}", prompt=text) for i, text in
           enumerate(["Write cat twice.", "Put dog before each word: red sky"])]  # fmt: skip
CALLS: list[str] = []


class LastLogitGap(Explainer):
    """Per prompt: max |logit_tuned - logit_base| at the last prompt position."""

    name = "logit-gap"
    data_kind = "logit_gap"
    needs = frozenset({"prompts", "pair"})

    @dataclasses.dataclass
    class Config:
        pass

    def items(self, pair, prompts):
        return [p.id for p in prompts]

    def explain(self, pair, keys, prompts):
        by_id = {p.id: p for p in prompts}
        for key in keys:
            CALLS.append(key)
            ids = pair.tokenizer(render_chat(pair.tokenizer, by_id[key].prompt),
                                 return_tensors="pt").input_ids  # fmt: skip
            with torch.no_grad():
                a, b = (s.model(ids).logits[0, -1] for s in pair.subjects)
            gap = np.array([float((b - a).abs().max())], dtype=np.float32)
            yield key, Explanation(self.name, self.data_kind, {"gap": gap}, {})


def _largest(records, context):
    return {"largest": max(float(r.arrays["gap"][0]) for r in records.values())}


PLUGIN = Bundle(explainers=[LastLogitGap],
                diff_metrics=[DiffMetric(explainer="logit-gap", name="largest",
                                         compute=_largest)])  # fmt: skip


@pytest.fixture(scope="module")
def pair():
    return load_subject("demo:base"), load_subject("demo:tuned")


@pytest.fixture(scope="module")
def registry():
    registry = load_registry(autoload=False, strict=True)
    register(registry, "logit-gap", lambda: PLUGIN)
    return registry


def test_pair_records_diff_and_resume(pair, registry, tmp_path):
    base, tuned = pair
    CALLS.clear()
    compare(base, tuned, PROMPTS, tmp_path, registry=registry, explainers=["logit-gap"])
    assert sorted(p.name for p in (tmp_path / "records" / "logit-gap" / "pair").glob("*.json"))
    assert not (tmp_path / "records" / "logit-gap" / "base").exists()
    expected = []
    for prompt in PROMPTS:  # the slow way: each model on its own
        ids = tuned.tokenizer(render_chat(tuned.tokenizer, prompt.prompt),
                              return_tensors="pt").input_ids  # fmt: skip
        with torch.no_grad():
            gap = tuned.model(ids).logits[0, -1] - base.model(ids).logits[0, -1]
        expected.append(float(gap.abs().max()))
    diff = json.loads((tmp_path / "diff" / "logit-gap.json").read_text())
    assert diff["largest"]["largest"] == pytest.approx(max(expected), rel=1e-5)
    assert CALLS == ["p0", "p1"]
    compare(base, tuned, PROMPTS, tmp_path, registry=registry, explainers=["logit-gap"])
    assert CALLS == ["p0", "p1"]  # resumed: nothing recomputed


def test_a_record_belongs_to_its_two_models(pair, registry, tmp_path):
    base, tuned = pair
    compare(base, tuned, PROMPTS[:1], tmp_path, registry=registry, explainers=["logit-gap"])
    CALLS.clear()
    with pytest.raises(Exception, match="another model"):
        compare(tuned, base, PROMPTS[:1], tmp_path, registry=registry, explainers=["logit-gap"])
    assert CALLS == []


def test_explain_refuses_a_pair_explainer(pair, registry, tmp_path):
    with pytest.raises(InputError, match="compare"):
        explain(pair[0], PROMPTS, tmp_path, registry=registry, explainers=["logit-gap"])
    assert not any(tmp_path.iterdir())


def test_a_pair_it_cannot_read_is_refused_before_work(pair, registry, tmp_path):
    base, tuned = pair
    tokenizer = AutoTokenizer.from_pretrained(demo.model_dir("tuned"))
    tokenizer.add_tokens(["<extra-token>"])
    other = dataclasses.replace(tuned, tokenizer=tokenizer)
    CALLS.clear()
    with pytest.raises(ModelLoadError, match="different tokenizers"):
        compare(base, other, PROMPTS, tmp_path, registry=registry, explainers=["logit-gap"])
    assert CALLS == [] and not (tmp_path / "records").exists()
