"""Cross-model patching: batched rows equal one hand-hooked forward per patched point, a pair
differing in one layer's MLP is recovered at that layer, a model with itself is 0/0 and
said so, bad pairs are refused before work, and `compare` reports it on the demo pair."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch
from tiny import ALL_TINY, family_model, tiny_config, tiny_tokenizer
from transformers import AutoModelForCausalLM

from interpret_shift import demo
from interpret_shift.core.method import SectionContext
from interpret_shift.core.pair import Pair
from interpret_shift.core.prompts import PromptRecord, read_prompts
from interpret_shift.core.subject import Subject, load_subject
from interpret_shift.errors import InputError
from interpret_shift.methods.patching import plugin
from interpret_shift.methods.patching.claims import patching_claims
from interpret_shift.methods.patching.explainer import CrossModelPatching
from interpret_shift.methods.patching.metrics import kl, recovery
from interpret_shift.methods.patching.patch import (
    COMPONENTS,
    STRATEGIES,
    choose_strategy,
    patched_scores,
)
from interpret_shift.methods.patching.section import SECTIONS
from interpret_shift.pipeline import compare
from interpret_shift.plugins.registry import load_registry

CHANGED = 2  # the layer whose MLP the tuned model changes
PROMPTS = [
    PromptRecord("p0", "please translate the text", response="the water is one day"),
    PromptRecord("p1", "give a word", response="a word for you"),
    PromptRecord("p2", "explain this sentence", response="it has two more"),
]


@pytest.fixture(scope="module")
def pair():
    config = tiny_config("llama")
    config.num_hidden_layers = 4
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        for parameter in tuned.model.layers[CHANGED].mlp.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    tokenizer = tiny_tokenizer()
    return Pair(Subject.from_model(base, tokenizer, source="base"),
                Subject.from_model(tuned, tokenizer, source="tuned"))  # fmt: skip


def _run(pair, prompts=PROMPTS, **options):
    explainer = CrossModelPatching(**options)
    keys = explainer.items(pair, prompts)
    return dict(explainer.explain(pair, keys, prompts))


# -- the slow, obvious way: one forward per patched point, hooks written by hand -----------
def _module(model, component, layer):
    block = model.model.layers[layer]
    return {"resid_post": block, "attn.out": block.self_attn.o_proj, "mlp.out": block.mlp}[
        component
    ]


def _output(output):
    return output[0] if isinstance(output, tuple) else output


def _slow(receiver, source, ids, response, component, layer):
    """log p(response) summed and mean KL(source || patched) with one patched forward."""
    captured = {}
    handle = _module(source, component, layer).register_forward_hook(
        lambda m, i, o: captured.__setitem__("x", _output(o).clone())
    )
    try:
        source_logits = source(ids[None]).logits[0]
    finally:
        handle.remove()

    def replace(module, inputs, output):
        if isinstance(output, tuple):
            return (captured["x"], *output[1:])
        return captured["x"]

    handle = _module(receiver, component, layer).register_forward_hook(replace)
    try:
        logits = receiver(ids[None]).logits[0]
    finally:
        handle.remove()
    m = len(response)
    logp = logits[-m:].log_softmax(-1)
    target = source_logits[-m:].log_softmax(-1)
    chosen = float(logp[torch.arange(m), torch.tensor(response)].sum())
    kl = float((target.exp() * (target - logp)).sum(-1).mean())
    return chosen, kl


def _logp(model, ids, response):
    m = len(response)
    logp = model(ids[None]).logits[0, -m:].log_softmax(-1)
    return float(logp[torch.arange(m), torch.tensor(response)].sum())


def test_batched_rows_equal_one_forward_per_patched_point(pair):
    records = _run(pair, PROMPTS[:1], batch_size=5)  # 12 points a direction: rows 5, 5, 2
    tokenizer = pair.tokenizer
    models = [s.model for s in pair.subjects]
    for prompt in PROMPTS[:1]:
        record = records[prompt.id]
        ids = tokenizer(prompt.prompt).input_ids
        response = tokenizer(prompt.response, add_special_tokens=False).input_ids
        fed = torch.tensor(ids + response[:-1])
        clean = [_logp(model, fed, response) for model in models]
        np.testing.assert_allclose(record.arrays["logp"], clean, rtol=1e-5, atol=1e-5)
        for d, (receiver, source) in enumerate([(0, 1), (1, 0)]):
            for c, component in enumerate(record.meta["components"]):
                for layer in range(4):
                    chosen, kl = _slow(models[receiver], models[source], fed, response,
                                       component, layer)  # fmt: skip
                    share = (chosen - clean[receiver]) / (clean[source] - clean[receiver])
                    assert record.arrays["logp_patched"][d, c, layer] == pytest.approx(
                        chosen, abs=1e-4
                    )
                    assert record.arrays["kl_patched"][d, c, layer] == pytest.approx(kl, abs=1e-5)
                    assert record.arrays["recovery"][d, c, layer] == pytest.approx(share, abs=1e-4)


def test_a_change_in_one_mlp_is_recovered_at_that_layer(pair):
    records = _run(pair)
    diff = recovery(records, None)
    for direction in ("into_base", "into_tuned"):
        entry = diff[direction]
        assert entry["n"] == len(PROMPTS) and entry["reason"] is None
        mlp, resid = entry["mlp.out"]["median"], entry["resid_post"]["median"]
        assert int(np.argmax(mlp)) == CHANGED and mlp[CHANGED] == pytest.approx(1, abs=1e-4)
        # before the changed layer the two residual streams are the same: nothing moves
        assert resid[:CHANGED] == pytest.approx([0] * CHANGED, abs=1e-5)
        assert resid[CHANGED:] == pytest.approx([1] * (4 - CHANGED), abs=1e-4)
        assert entry["attn.out"]["median"][: CHANGED + 1] == pytest.approx([0] * 3, abs=1e-5)
    claims = patching_claims({"recovery": diff})
    assert claims[0].extra["half_recovered_from_layer"] == CHANGED
    assert claims[0].extra["best_component"] == "mlp.out"
    assert claims[0].extra["best_layer"] == CHANGED


def test_a_model_with_itself_is_undefined_not_a_number(pair):
    same = Pair(pair.base, pair.base)
    records = _run(same)
    for record in records.values():
        assert np.isnan(record.arrays["recovery"]).all()
        assert all("0/0" in reason for reason in record.meta["undefined"].values())
        assert record.arrays["kl_patched"].max() < 1e-6
        assert record.arrays["logp"][0] == record.arrays["logp"][1]
    diff = recovery(records, None)
    for direction in ("into_base", "into_tuned"):
        assert diff[direction]["n"] == 0 and "0/0" in diff[direction]["reason"]
        assert diff[direction]["resid_post"]["median"] == [None] * 4
    claims = patching_claims({"recovery": diff})
    assert len(claims) == 2 and all(c.extra["undefined"] for c in claims)
    assert all("undefined" in c.text for c in claims)
    context = SectionContext("patching", "cross_model_patching", {}, ("base", "base"))
    page = SECTIONS[0].build({"recovery": diff, "kl": kl(records, None)}, context)
    assert "<p>tuned → base: undefined for every prompt" in page and "&lt;p&gt;" not in page


def test_the_tuned_models_greedy_response_through_its_chat_template(pair):
    tokenizer = copy.deepcopy(pair.tokenizer)
    tokenizer.chat_template = (
        "{% for m in messages %}{{ m['content'] }} {% endfor %}"
        "{% if add_generation_prompt %}answer {% endif %}"
    )
    tuned = dataclasses.replace(pair.tuned, tokenizer=tokenizer)
    base = dataclasses.replace(pair.base, tokenizer=tokenizer)
    prompt = PromptRecord("g", "give a word")
    record = _run(Pair(base, tuned), [prompt], max_new_tokens=5)["g"]
    ids = tokenizer("give a word answer ", add_special_tokens=False).input_ids
    expected = []
    for _ in range(5):  # argmax of a full forward every step, no cache
        token = int(tuned.model(torch.tensor([ids + expected])).logits[0, -1].argmax())
        if token == tokenizer.eos_token_id:
            break
        expected.append(token)
    assert record.arrays["response_ids"].tolist() == expected
    assert record.meta["response_source"] == "generated"
    assert record.meta["text"] == "give a word answer "
    # chat_template=false: the raw prompt, the tokenizer itself keeps its template
    raw = _run(Pair(base, tuned), PROMPTS[1:2], chat_template=False)["p1"]
    assert raw.meta["text"] == PROMPTS[1].prompt and tokenizer.chat_template is not None
    response = tokenizer(PROMPTS[1].response, add_special_tokens=False).input_ids
    fed = torch.tensor(tokenizer(PROMPTS[1].prompt).input_ids + response[:-1])
    assert raw.arrays["logp"][1] == pytest.approx(_logp(tuned.model, fed, response), abs=1e-4)


def test_pairs_and_options_it_cannot_use_are_refused_before_work(pair):
    tokenizer = copy.deepcopy(pair.tokenizer)
    tokenizer.add_tokens(["<extra-token>"])
    other = Pair(pair.base, dataclasses.replace(pair.tuned, tokenizer=tokenizer))
    with pytest.raises(InputError, match="one tokenizer"):
        CrossModelPatching().items(other, PROMPTS)
    shallow = AutoModelForCausalLM.from_config(tiny_config("llama")).eval()  # 2 layers, not 4
    deeper = Pair(pair.base, Subject.from_model(shallow, pair.base.tokenizer, source="shallow"))
    with pytest.raises(InputError, match=r"one architecture and shape: base \('llama', 4"):
        CrossModelPatching().items(deeper, PROMPTS)
    with pytest.raises(InputError, match="unknown component"):
        CrossModelPatching(components=["mlp.in"])
    with pytest.raises(InputError, match="layer 9"):
        CrossModelPatching(layers=[9]).items(pair, PROMPTS)
    long = PromptRecord("long", "the " * 70)
    with pytest.raises(InputError, match="positions"):
        CrossModelPatching().items(pair, [long])


def _hooks(model):
    return {name: (list(m._forward_hooks), list(m._forward_pre_hooks))
            for name, m in model.named_modules()}  # fmt: skip


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("point", ["layers.1.mlp.out", "layers.1.resid_post"])
def test_hooks_are_removed_after_an_exception(pair, strategy, point):
    receiver = pair.base
    ids, tokens = torch.tensor([5, 6, 7, 8]), torch.tensor([7, 8])
    target = torch.zeros(2, 96).log_softmax(-1)
    receiver.model(ids[None])  # transformers installs its own capturing hooks once
    before = _hooks(receiver.model)
    wrong = torch.zeros(1, 3, 32)  # three positions for a four-token input
    with pytest.raises(RuntimeError):
        patched_scores(receiver, ids, tokens, target, [(point, wrong)], 4, strategy)
    assert _hooks(receiver.model) == before


# -- the growing batch (shared prefix) and its fallback, across families ------------------
def _family_subject(family: str) -> Subject:
    return Subject.from_model(family_model(family), tiny_tokenizer(), source=family)


def _one_forward_per_point(subject, ids, tokens, target, patches):
    """Batch 1, the whole activation replaced, one forward per point: no row bookkeeping."""
    found = []
    for name, source in patches:
        with subject.hooks.scope(forward={name: lambda activation, _, s=source: s}):
            logits = subject.model(ids[None], use_cache=False).logits[0, -len(tokens) :]
        logp = logits.log_softmax(-1)
        kl = (target.exp() * (target - logp)).sum(-1).mean()
        found.append((float(logp[torch.arange(len(tokens)), tokens].sum()), float(kl)))
    return np.array(found)


def _family_patches(subject, seed=0):
    """Every point of the tiny model, each a different random activation."""
    ids = torch.tensor([1, 5, 9, 14, 20, 27, 33])
    names = [f"layers.{layer}.{c}" for c in COMPONENTS for layer in range(2)]
    _, cache = subject.hooks.run_with_cache(ids[None], names=names, stop_early=False)
    generator = torch.Generator().manual_seed(seed)
    patches = [(n, cache[n] + torch.randn(cache[n].shape, generator=generator)) for n in names]
    target = torch.randn(3, 96, generator=generator).log_softmax(-1)
    return ids, ids[-3:], target, patches


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma2"])
def test_every_batching_equals_one_forward_per_point(family):
    subject = _family_subject(family)
    assert choose_strategy(subject, COMPONENTS) == "lean"
    ids, tokens, target, patches = _family_patches(subject)
    expected = _one_forward_per_point(subject, ids, tokens, target, patches)
    for strategy in STRATEGIES:
        for batch_size in (len(patches), 4):  # one forward, and chunks of 4 rows
            logp, kl = patched_scores(subject, ids, tokens, target, patches, batch_size, strategy)
            np.testing.assert_allclose(logp.numpy(), expected[:, 0], rtol=1e-5, atol=1e-4)
            np.testing.assert_allclose(kl.numpy(), expected[:, 1], rtol=1e-5, atol=1e-5)


#: The way each family is expected to batch, by its block structure (else ``lean``).
GROWING = {  # parallel blocks, post-norm blocks, or OPT's flat MLP: no separate normed MLP input
    "codegen", "cohere", "cohere2", "exaone4", "falcon", "gptj", "olmo2", "olmo3", "opt", "phi",
}  # fmt: skip
COPIES = {"bloom", "gpt_bigcode", "gpt_bigcode_mha"}  # per-row tensors built before the layers


@pytest.mark.parametrize("family", sorted(ALL_TINY))
def test_every_family_batches_the_cheapest_exact_way(family):
    subject = _family_subject(family)
    expected_way = "copies" if family in COPIES else "growing" if family in GROWING else "lean"
    way = choose_strategy(subject, COMPONENTS)
    assert way == expected_way
    ids, tokens, target, patches = _family_patches(subject)
    expected = _one_forward_per_point(subject, ids, tokens, target, patches)
    logp, kl = patched_scores(subject, ids, tokens, target, patches, len(patches), way)
    np.testing.assert_allclose(logp.numpy(), expected[:, 0], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(kl.numpy(), expected[:, 1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seed", range(6))
def test_any_points_in_any_chunks_equal_one_forward_per_point(pair, seed):
    """Random subsets of the points of a 4-layer model, in random chunk sizes: the first
    patched layer, layers without patches and the last layer all move."""
    subject, generator = pair.base, torch.Generator().manual_seed(seed)
    names = [f"layers.{layer}.{c}" for layer in range(4) for c in COMPONENTS]
    chosen = [
        n for n, keep in zip(names, torch.rand(len(names), generator=generator)) if keep < 0.4
    ]
    chosen = chosen or names[-1:]
    ids = torch.randint(3, 96, (9,), generator=generator)
    _, cache = subject.hooks.run_with_cache(ids[None], names=chosen, stop_early=False)
    patches = [(n, cache[n] + torch.randn(cache[n].shape, generator=generator)) for n in chosen]
    m = int(torch.randint(1, 6, (), generator=generator))
    target = torch.randn(m, 96, generator=generator).log_softmax(-1)
    expected = _one_forward_per_point(subject, ids, ids[-m:], target, patches)
    batch_size = int(torch.randint(1, len(patches) + 1, (), generator=generator))
    for way in STRATEGIES:
        logp, kl = patched_scores(subject, ids, ids[-m:], target, patches, batch_size, way)
        np.testing.assert_allclose(logp.numpy(), expected[:, 0], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(kl.numpy(), expected[:, 1], rtol=1e-5, atol=1e-5)


def test_a_model_the_growing_batch_breaks_falls_back_to_copies():
    # BLOOM's ALiBi bias is built per batch row before the layers: a grown batch cannot use it
    base = _family_subject("bloom")
    model = copy.deepcopy(base.model)
    with torch.no_grad():
        for parameter in model.transformer.h[1].mlp.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.5)
    tuned = Subject.from_model(model, base.tokenizer, source="tuned")
    base.model(torch.tensor([[5, 6]]))
    before = _hooks(base.model)
    assert choose_strategy(base, COMPONENTS) == "copies"
    assert _hooks(base.model) == before  # the refused try left no hook behind
    assert base.memo_store[("patching-batching", tuple(sorted(COMPONENTS)))] == "copies"
    ids, tokens, target, patches = _family_patches(base)
    with pytest.raises(RuntimeError):
        patched_scores(base, ids, tokens, target, patches, len(patches), "growing")

    record = _run(Pair(base, tuned), PROMPTS[:1])["p0"]
    assert record.meta["batching"] == {"into_base": "copies", "into_tuned": "copies"}
    tokenizer, prompt = base.tokenizer, PROMPTS[0]
    response = tokenizer(prompt.response, add_special_tokens=False).input_ids
    fed = torch.tensor(tokenizer(prompt.prompt).input_ids + response[:-1])
    names = [name for name, _ in patches]  # components x layers, the record's order
    for d, (receiver, source) in enumerate([(base, tuned), (tuned, base)]):
        _, cache = source.hooks.run_with_cache(fed[None], names=names, stop_early=False)
        source_logp = source.model(fed[None]).logits[0, -len(response) :].log_softmax(-1)
        expected = _one_forward_per_point(receiver, fed, torch.tensor(response), source_logp,
                                          [(name, cache[name]) for name in names])  # fmt: skip
        found = record.arrays["logp_patched"][d].reshape(-1)
        np.testing.assert_allclose(found, expected[:, 0], rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(record.arrays["kl_patched"][d].reshape(-1), expected[:, 1],
                                   rtol=1e-4, atol=1e-5)  # fmt: skip


def test_lean_is_chosen_and_recorded_and_copies_can_be_forced(pair):
    auto = _run(pair, PROMPTS[:1])["p0"]
    forced = _run(pair, PROMPTS[:1], batching="copies")["p0"]
    assert auto.meta["batching"] == {"into_base": "lean", "into_tuned": "lean"}
    assert forced.meta["batching"] == {"into_base": "copies", "into_tuned": "copies"}
    for name in ("logp_patched", "kl_patched"):
        np.testing.assert_allclose(auto.arrays[name], forced.arrays[name], atol=1e-4)
    with pytest.raises(InputError, match="batching"):
        CrossModelPatching(batching="sideways")


@pytest.mark.xdist_group("demo")
def test_compare_on_the_demo_pair_writes_the_diff_and_the_section(tmp_path):
    registry = load_registry(autoload=False, strict=True)
    assert registry.explainers()["patching"] is plugin.PLUGIN.provides["explainers"][0]
    base, tuned = load_subject("demo:base"), load_subject("demo:tuned")
    prompts = read_prompts(demo.prompts_path())[:2]
    compare(base, tuned, prompts, tmp_path, registry=registry, explainers=["patching"])
    assert len(list((tmp_path / "records" / "patching" / "pair").glob("*.json"))) == 2
    diff = json.loads((tmp_path / "diff" / "patching.json").read_text())
    layers = diff["recovery"]["layers"]
    assert layers == [0, 1, 2, 3] and diff["recovery"]["into_base"]["n"] == 2
    for direction in ("into_base", "into_tuned"):
        assert diff["recovery"][direction]["reason"] is None  # the demo pair differs
        assert all(v is not None for v in diff["recovery"][direction]["mlp.out"]["median"])
    page = (tmp_path / "report.html").read_text()
    assert 'id="patching-recovery"' in page and "data:image/png;base64," in page
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert any(c["section"] == "patching" for c in summary["claims"])
