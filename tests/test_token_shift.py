"""Token distribution shift: a model against itself shifts nothing, a planted token is the
top shifted one, every number equals a slow one-prefix-at-a-time computation, and
`compare` on the demo pair writes its diff and its report section."""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
import torch
from demo_chat import demo_chat_ids

from interpret_shift import demo
from interpret_shift.core.method import DiffContext
from interpret_shift.core.pair import Pair
from interpret_shift.core.prompts import PromptRecord, read_prompts
from interpret_shift.core.subject import Subject, load_subject
from interpret_shift.errors import InputError
from interpret_shift.methods.token_shift.claims import shift_claims
from interpret_shift.methods.token_shift.explainer import TokenShiftExplainer
from interpret_shift.methods.token_shift.metrics import DIFF_METRICS
from interpret_shift.pipeline import compare
from interpret_shift.plugins.registry import load_registry

HELDOUT = read_prompts(demo.prompts_path())
GIVEN = HELDOUT[:2]  # with the demo's own responses
ASKED = [PromptRecord(id=f"ask-{p.id}", prompt=p.prompt) for p in HELDOUT[40:42]]  # generated


@pytest.fixture(scope="module")
def models():
    return load_subject("demo:base"), load_subject("demo:tuned")


def run(pair, prompts, **options):
    explainer = TokenShiftExplainer(**options)
    return dict(explainer.explain(pair, [p.id for p in prompts], prompts))


def analyse(records, **options):
    return {m.name: m.compute(records, DiffContext("token-shift", {**m.options, **options}))
            for m in DIFF_METRICS}  # fmt: skip


@torch.no_grad()
def last_logits(model, ids):
    return model(torch.tensor([ids])).logits[0, -1].float()


def test_a_model_against_itself_shifts_nothing(models):
    base = models[0]
    twin = load_subject("demo:base")  # a second copy, as `compare base base` loads it
    records = run(Pair(base, twin), GIVEN + ASKED, max_new_tokens=6)
    for record in records.values():
        assert len(record.arrays["base_rank"]) > 0
        assert (record.arrays["base_rank"] == 1).all()
        assert (record.arrays["kl"] == 0).all()
        assert (record.arrays["p_base"] == record.arrays["p_tuned"]).all()
    diff = analyse(records)
    overall = diff["shift-ratio"]["overall"]
    assert overall["unshifted"] == 1.0 and overall["shifted"] == 0.0 and overall["mean_kl"] == 0
    assert diff["top-shifted"]["tokens"] == [] and diff["top-shifted"]["n_shifted"] == 0
    assert set(diff["shift-by-position"]["shifted"]) == {0.0}
    assert "No token" in shift_claims(diff)[0].text


def test_equals_one_prefix_at_a_time(models):
    base, tuned = models
    records = run(Pair(base, tuned), GIVEN[:1] + ASKED[:1], max_new_tokens=5)
    for prompt in GIVEN[:1] + ASKED[:1]:
        record, ids = records[prompt.id], demo_chat_ids(tuned.tokenizer, prompt)
        if prompt.response is None:  # the slow greedy: a full forward per new token
            response = []
            for _ in range(5):
                token = int(last_logits(tuned.model, ids + response).argmax())
                if token == tuned.tokenizer.eos_token_id:
                    break
                response.append(token)
        else:
            response = tuned.tokenizer(prompt.response, add_special_tokens=False).input_ids
        assert record.arrays["response_ids"].tolist() == response
        for j in range(len(response)):
            lb = last_logits(base.model, ids + response[:j])
            lt = last_logits(tuned.model, ids + response[:j])
            token = int(lt.argmax())
            order = sorted(range(len(lb)), key=lambda v: -float(lb[v]))
            pb, pt = lb.softmax(-1), lt.softmax(-1)
            kl = sum(float(pt[v]) * math.log(float(pt[v]) / float(pb[v])) for v in range(len(pt))
                     if pt[v] > 0)  # fmt: skip
            assert record.arrays["tuned_ids"][j] == token
            assert record.arrays["base_top_ids"][j] == order[0]
            assert record.arrays["base_rank"][j] == order.index(token) + 1
            assert record.arrays["p_base"][j] == pytest.approx(float(pb[token]), rel=1e-4, abs=1e-7)
            assert record.arrays["p_tuned"][j] == pytest.approx(float(pt[token]), rel=1e-4)
            assert record.arrays["kl"][j] == pytest.approx(kl, rel=1e-3, abs=1e-5)
    diff = analyse(records)
    ranks = [r for rec in records.values() for r in rec.arrays["base_rank"].tolist()]
    overall = diff["shift-ratio"]["overall"]
    assert overall["n_tokens"] == len(ranks)
    assert overall["shifted"] == pytest.approx(sum(r > 3 for r in ranks) / len(ranks))
    assert overall["marginal"] == pytest.approx(sum(1 < r <= 3 for r in ranks) / len(ranks))
    first = [rec.arrays["base_rank"][0] for rec in records.values()]
    assert diff["shift-by-position"]["shifted"][0] == pytest.approx(sum(r > 3 for r in first) / 2)


def planted(base, token: int, prompts, scale: float = 20.0) -> Subject:
    """The base model with ``token``'s unembedding row pushed along the direction its final
    hidden states share, so the copy says ``token`` everywhere. The demo ties the
    unembedding to the embedding: the row is also what the copy reads for ``token``."""
    model = copy.deepcopy(base.model)
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with torch.no_grad():
        states = torch.cat([base.model.model(torch.tensor([demo_chat_ids(base.tokenizer, p)]))
                            .last_hidden_state[0] for p in prompts])  # fmt: skip
        direction = states.mean(0) / states.mean(0).norm()
        row = model.lm_head.weight[token]
        row += scale * row.norm() * direction
    return Subject.from_model(model, base.tokenizer, source="planted")


def test_a_planted_token_is_the_top_shifted_token(models):
    base = models[0]
    token = base.tokenizer("banana", add_special_tokens=False).input_ids[0]
    prompts = [PromptRecord(id=p.id, prompt=p.prompt) for p in HELDOUT[::25]]
    records = run(Pair(base, planted(base, token, prompts)), prompts, max_new_tokens=6)
    diff = analyse(records)
    top = diff["top-shifted"]["tokens"][0]
    assert top["id"] == token and top["token"] == base.tokenizer.decode([token])
    total = sum(len(r.arrays["tuned_ids"]) for r in records.values())
    said = sum(int((r.arrays["tuned_ids"] == token).sum()) for r in records.values())
    assert said > total / 2 and top["chosen"] == said  # the copy says it, the base would not
    assert top["shifted"] == sum(
        int(((r.arrays["tuned_ids"] == token) & (r.arrays["base_rank"] > 3)).sum())
        for r in records.values()
    )
    assert top["prompts"] == len(prompts)
    assert f"“{top['token']}”" in shift_claims(diff)[1].text


def test_bad_input_is_refused_before_work(models, tmp_path):
    with pytest.raises(InputError, match="max_new_tokens"):
        TokenShiftExplainer(max_new_tokens=0)
    long = PromptRecord(id="long", prompt="word " * 300)  # the demo models have 256 positions
    with pytest.raises(InputError, match="more than the model's 256 positions"):
        compare(*models, [*GIVEN, long], tmp_path, registry=load_registry(autoload=False),
                explainers=["token-shift"])  # fmt: skip
    assert not (tmp_path / "records").exists()


def test_compare_on_the_demo_pair(models, tmp_path):
    base, tuned = models
    registry = load_registry(autoload=False)
    compare(base, tuned, HELDOUT[:3] + ASKED[:1], tmp_path, registry=registry,
            explainers=["token-shift"], options={"token-shift": {"max_new_tokens": 4}})  # fmt: skip
    assert len(list((tmp_path / "records" / "token-shift" / "pair").glob("*.json"))) == 4
    diff = json.loads((tmp_path / "diff" / "token-shift.json").read_text())
    assert set(diff) >= {"shift-ratio", "shift-by-position", "top-shifted", "shift-examples"}
    assert diff["shift-ratio"]["overall"]["n_prompts"] == 4
    page = (tmp_path / "report.html").read_text()
    section = re.search(r'<section id="token-shift">(.*?)</section>', page, flags=re.S)
    assert section and "<figure" in section.group(1) and 'class="tok' in section.group(1)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert any(c["section"] == "token-shift" for c in summary["claims"])
