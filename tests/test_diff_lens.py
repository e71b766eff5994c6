"""Activation-difference lens: a model against itself differs nowhere, a change in one
layer's MLP starts the difference at that layer, a planted token tops the lens, every number
equals a slow computation from the model's own hidden states, and `compare` on the demo
pair writes its diff and its report section."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pytest
import torch
from demo_chat import demo_chat_ids
from tiny import tiny_model, tiny_tokenizer

from interpret_shift import demo
from interpret_shift.core.method import DiffContext
from interpret_shift.core.pair import Pair
from interpret_shift.core.prompts import PromptRecord, read_prompts
from interpret_shift.core.subject import Subject, load_subject
from interpret_shift.methods.diff_lens.claims import lens_claims
from interpret_shift.methods.diff_lens.explainer import DiffLensExplainer
from interpret_shift.methods.diff_lens.metrics import DIFF_METRICS
from interpret_shift.pipeline import compare
from interpret_shift.plugins.registry import load_registry

HELDOUT = read_prompts(demo.prompts_path())
GIVEN = HELDOUT[:2]  # with the demo's own responses
ASKED = [PromptRecord(id=f"ask-{p.id}", prompt=p.prompt) for p in HELDOUT[40:42]]  # generated
PROMPT, RESPONSE = 0, 1  # the groups of positions
BASE, TUNED = 0, 1  # the readouts


@pytest.fixture(scope="module")
def models():
    return load_subject("demo:base"), load_subject("demo:tuned")


def run(pair, prompts, **options):
    explainer = DiffLensExplainer(**options)
    return dict(explainer.explain(pair, [p.id for p in prompts], prompts))


def analyse(records, **options):
    return {m.name: m.compute(records, DiffContext("diff-lens", {**m.options, **options}))
            for m in DIFF_METRICS}  # fmt: skip


@torch.no_grad()
def hidden(model, ids):
    """The residual after every layer from HF's own hidden states (the last one of which is
    after the final norm, so the final norm is swapped out for that one)."""
    states = model(torch.tensor([ids]), output_hidden_states=True).hidden_states
    norm, model.model.norm = model.model.norm, torch.nn.Identity()
    try:
        last = model(torch.tensor([ids]), output_hidden_states=True).hidden_states[-1]
    finally:
        model.model.norm = norm
    return torch.stack([*states[1:-1], last])[:, 0]  # (layers, positions, d)


def mlp_changed(base, layer: int) -> Subject:
    model = copy.deepcopy(base.model)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        weight = model.model.layers[layer].mlp.down_proj.weight
        weight += 0.5 * weight.std() * torch.randn(weight.shape, generator=generator)
    return Subject.from_model(model, base.tokenizer, source=f"mlp{layer}")


def test_a_model_against_itself_differs_nowhere(models):
    base = models[0]
    twin = load_subject("demo:base")
    records = run(Pair(base, twin), GIVEN + ASKED[:1], response_positions=4)
    for record in records.values():
        assert (record.arrays["positions"] > 0).all()
        assert (record.arrays["delta_norm"] == 0).all() and (record.arrays["delta_mean"] == 0).all()
        assert (record.arrays["promoted_ids"] == -1).all()
        assert (record.arrays["suppressed_ids"] == -1).all()
    diff = analyse(records)
    for group in ("prompt", "response"):
        assert diff["norm-by-layer"][group]["first_layer"] is None
        assert set(diff["norm-by-layer"][group]["relative"]["mean"]) == {0.0}
    assert all(not cell for grid in diff["lens-tokens"]["promoted"] for row in grid for cell in row)
    assert "identical" in lens_claims(diff)[0].text


def test_equals_the_hidden_states(models):
    base, tuned = models
    k, top = 3, 6
    prompts = GIVEN[:1] + ASKED[:1]
    records = run(Pair(base, tuned), prompts, response_positions=k, top_k=top)
    for prompt in prompts:
        record, ids = records[prompt.id], demo_chat_ids(tuned.tokenizer, prompt)
        assert ids[0] != tuned.tokenizer.bos_token_id  # no BOS to skip: all prompt positions
        if prompt.response is None:  # the slow greedy: a full forward per new token
            response = []
            for _ in range(k):
                with torch.no_grad():
                    token = int(tuned.model(torch.tensor([ids + response])).logits[0, -1].argmax())
                if token == tuned.tokenizer.eos_token_id:
                    break
                response.append(token)
        else:
            response = tuned.tokenizer(prompt.response, add_special_tokens=False).input_ids[:k]
        assert record.arrays["response_ids"].tolist() == response
        hb, ht = hidden(base.model, ids + response), hidden(tuned.model, ids + response)
        n = len(ids)
        for g, where in ((PROMPT, slice(0, n)), (RESPONSE, slice(n, n + k))):
            delta = ht[:, where] - hb[:, where]
            np.testing.assert_allclose(record.arrays["delta_mean"][g], delta.mean(1), atol=1e-4)
            np.testing.assert_allclose(record.arrays["delta_norm"][g],
                                       delta.norm(dim=-1).mean(1), rtol=1e-4)  # fmt: skip
            np.testing.assert_allclose(record.arrays["base_norm"][g],
                                       hb[:, where].norm(dim=-1).mean(1), rtol=1e-4)  # fmt: skip
            for r, subject in ((BASE, base), (TUNED, tuned)):
                model = subject.model
                with torch.no_grad():
                    logits = model.model.norm(delta.mean(1)) @ model.lm_head.weight.T
                for layer in range(len(logits)):
                    order = sorted(range(logits.shape[1]), key=lambda v: -float(logits[layer, v]))
                    got = record.arrays["promoted_ids"][g, r, layer]
                    assert got.tolist() == order[:top]
                    assert (
                        record.arrays["suppressed_ids"][g, r, layer].tolist() == order[::-1][:top]
                    )
                    np.testing.assert_allclose(record.arrays["promoted_values"][g, r, layer],
                                               logits[layer, order[:top]], rtol=1e-4, atol=1e-4)  # fmt: skip


def test_one_changed_mlp_starts_the_difference_at_its_layer(models):
    base = models[0]
    records = run(Pair(base, mlp_changed(base, 2)), GIVEN + ASKED[:1], response_positions=4)
    diff = analyse(records)
    for group in ("prompt", "response"):
        norms = diff["norm-by-layer"][group]
        assert norms["first_layer"] == 2
        assert norms["relative"]["max"][:2] == [0.0, 0.0]  # exactly nothing before it
        assert norms["relative"]["min"][2] > 0.05  # and a jump at it in every prompt
    for record in records.values():
        assert (record.arrays["promoted_ids"][:, :, :2] == -1).all()
        assert (record.arrays["promoted_ids"][:, :, 2:] >= 0).all()
    assert "first differ after layers.2" in lens_claims(diff)[0].text


def planted(base, token: int, prompts, scale: float = 20.0) -> Subject:
    """The base model with ``token``'s unembedding row pushed along the direction its final
    hidden states share, so the copy says ``token`` everywhere. The demo ties the
    unembedding to the embedding: the row is also what the copy reads for ``token``, so the
    residual streams differ exactly where ``token`` is read."""
    model = copy.deepcopy(base.model)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with torch.no_grad():
        states = torch.cat([base.model.model(torch.tensor([demo_chat_ids(base.tokenizer, p)]))
                            .last_hidden_state[0] for p in prompts])  # fmt: skip
        direction = states.mean(0) / states.mean(0).norm()
        row = model.lm_head.weight[token]
        row += scale * row.norm() * direction
    return Subject.from_model(model, base.tokenizer, source="planted")


def test_a_planted_token_tops_the_lens(models):
    base = models[0]
    token = base.tokenizer("banana", add_special_tokens=False).input_ids[0]
    prompts = [PromptRecord(id=p.id, prompt=p.prompt) for p in HELDOUT[::25]]
    records = run(Pair(base, planted(base, token, prompts)), prompts, response_positions=4)
    diff = analyse(records)
    assert diff["norm-by-layer"]["prompt"]["first_layer"] is None  # the prompts never read it
    promoted = diff["lens-tokens"]["promoted"][RESPONSE][TUNED]
    for layer in promoted:
        assert layer[0]["id"] == token and layer[0]["prompts"] == len(prompts)
    assert f"“{base.tokenizer.decode([token])}”" in lens_claims(diff)[-1].text


def test_compare_on_the_demo_pair(models, tmp_path):
    base, tuned = models
    registry = load_registry(autoload=False)
    compare(base, tuned, HELDOUT[:3] + ASKED[:1], tmp_path, registry=registry,
            explainers=["diff-lens"], options={"diff-lens": {"response_positions": 3}})  # fmt: skip
    assert len(list((tmp_path / "records" / "diff-lens" / "pair").glob("*.json"))) == 4
    diff = json.loads((tmp_path / "diff" / "diff-lens.json").read_text())
    assert set(diff) == {"norm-by-layer", "lens-tokens"}
    assert len(diff["norm-by-layer"]["layers"]) == base.layout.n_layers
    page = (tmp_path / "report.html").read_text()
    section = re.search(r'<section id="diff-lens">(.*?)</section>', page, flags=re.S)
    assert (
        section and "<figure" in section.group(1) and "promoted (tuned readout)" in section.group(1)
    )
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert any(c["section"] == "diff-lens" for c in summary["claims"])


@pytest.mark.parametrize("family", ["gpt2", "gemma2", "opt", "phi", "falcon"])
def test_other_families(family):
    """Other layouts of the residual stream, final norm and unembedding: against itself
    nothing; against another seed, layer 0 equals HF's first hidden state."""
    tokenizer = tiny_tokenizer()
    prompts = [PromptRecord(id="a", prompt="please translate the text"),
               PromptRecord(id="b", prompt="write a word", response="the water")]  # fmt: skip
    one, same, other = (
        Subject.from_model(tiny_model(family, seed), tokenizer) for seed in (0, 0, 1)
    )
    for record in run(Pair(one, same), prompts, response_positions=2).values():
        assert (record.arrays["delta_norm"] == 0).all() and (
            record.arrays["promoted_ids"] == -1
        ).all()
    records = run(Pair(one, other), prompts, response_positions=2)
    for prompt in prompts:
        record = records[prompt.id]
        ids = [*tokenizer(prompt.prompt).input_ids, *record.arrays["response_ids"].tolist()]
        with torch.no_grad():
            first = [m.model(torch.tensor([ids]), output_hidden_states=True).hidden_states[1][0]
                     for m in (one, other)]  # fmt: skip
        n = len(ids) - len(record.arrays["response_ids"])
        delta = (first[1] - first[0])[:n]
        np.testing.assert_allclose(record.arrays["delta_mean"][PROMPT, 0], delta.mean(0), atol=1e-5)
