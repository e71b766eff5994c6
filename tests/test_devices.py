"""A model dispatched across "cpu" and "disk" by accelerate (weights offloaded, on 'meta'
between forward passes) gives the plain model's values: hooks, run_with_cache, saliency,
canonical weights and the fingerprint; and bad placements fail clearly before loading."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from interpret_shift.cli import main
from interpret_shift.core.explainer import run_explainer
from interpret_shift.core.memory import parse_size
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import RecordStore
from interpret_shift.core.subject import load_subject
from interpret_shift.errors import InputError
from interpret_shift.methods.saliency.explainer import SaliencyExplainer

MAPS = {
    "layer-on-disk": {"model.embed_tokens": "cpu", "model.layers.0": "cpu",
                      "model.layers.1": "disk", "model.norm": "disk",
                      "model.rotary_emb": "cpu", "lm_head": "disk"},
    "embedding-on-disk": {"model.embed_tokens": "disk", "model.layers.0": "disk",
                          "model.layers.1": "cpu", "model.norm": "cpu",
                          "model.rotary_emb": "cpu", "lm_head": "disk"},
}  # fmt: skip
PROMPTS = [
    PromptRecord(id="gen", prompt="please translate the text"),
    PromptRecord(id="given", prompt="what is the word", response="the water day"),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("llama")
    model = tiny_model("llama")
    with torch.no_grad():  # large embeddings and logits: values far from zero
        model.get_input_embeddings().weight.mul_(20)
        model.get_output_embeddings().weight.mul_(100)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def plain(folder):
    return load_subject(folder, attn_implementation="eager")


@pytest.fixture(scope="module", params=sorted(MAPS))
def offloaded(request, folder, tmp_path_factory):
    subject = load_subject(folder, attn_implementation="eager", device_map=MAPS[request.param],
                           offload_folder=tmp_path_factory.mktemp("offload"))  # fmt: skip
    meta = [n for n, p in subject.model.named_parameters() if p.device.type == "meta"]
    assert any(".layers." in n for n in meta)  # really offloaded, not just loaded on the CPU
    return subject


def ids() -> torch.Tensor:
    return torch.tensor([[1, 5, 9, 14, 22, 31, 40]])


def test_run_with_cache_gives_the_plain_values_at_every_point(plain, offloaded):
    out_a, cache_a = plain.hooks.run_with_cache(ids(), stop_early=False)
    out_b, cache_b = offloaded.hooks.run_with_cache(ids(), stop_early=False)
    assert sorted(cache_a) == sorted(cache_b) and len(cache_a) > 20
    for name in cache_a:
        torch.testing.assert_close(cache_b[name], cache_a[name], rtol=0, atol=1e-6, msg=name)
    torch.testing.assert_close(out_b.logits, out_a.logits, rtol=0, atol=1e-6)
    # stopping early after layer 0 captures the same values too
    _, early = offloaded.hooks.run_with_cache(ids(), names="layers.0.*")
    for name, value in early.items():
        torch.testing.assert_close(value, cache_a[name], rtol=0, atol=1e-6)


def test_hooks_that_patch_and_read_gradients_act_the_same(plain, offloaded):
    def patch(tensor, _name):
        return tensor * 10

    results = []
    for subject in (plain, offloaded):
        grads = {}
        embeds = subject.model.get_input_embeddings()
        with subject.hooks.scope(
            forward={"layers.0.mlp.out": patch},
            backward={
                "layers.1.resid_pre": lambda g, name, seen=grads: seen.setdefault(name, g.clone())
            },
        ):
            with torch.enable_grad():
                x = embeds(ids()).detach().requires_grad_(True)
                logits = subject.model(inputs_embeds=x).logits
                logits[0, -1].logsumexp(-1).backward()
        results.append((logits.detach(), grads["layers.1.resid_pre"], x.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-6)
    # the patch really acted: without it the logits differ
    assert (plain.model(ids()).logits - results[0][0]).abs().max() > 1e-3


def test_saliency_equals_the_plain_model(plain, offloaded):
    explainer = SaliencyExplainer(max_new_tokens=4, chat_template=False, target="logit")
    expected = run_explainer(explainer, plain, PROMPTS)
    found = run_explainer(explainer, offloaded, PROMPTS)
    for key in expected:
        np.testing.assert_array_equal(found[key].arrays["response_ids"],
                                      expected[key].arrays["response_ids"])  # fmt: skip
        for name in ("attribution", "target_values"):
            a, b = found[key].arrays[name], expected[key].arrays[name]
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-6)
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-9)  # small values too
        assert np.abs(expected[key].arrays["attribution"]).max() > 1e-3  # not trivially zero


def test_weights_fingerprint_and_device_read_through_the_offload(plain, offloaded):
    assert offloaded.fingerprint == plain.fingerprint  # the same weights, wherever they sit
    assert offloaded.device == torch.device("cpu")  # where inputs go, not 'meta'
    for role in ("attn.q", "attn.k", "attn.out", "mlp.down_in", "ln1"):
        for layer in (0, 1):
            torch.testing.assert_close(offloaded.weights.rows(role, layer),
                                       plain.weights.rows(role, layer), rtol=0, atol=0)  # fmt: skip
    torch.testing.assert_close(offloaded.weights.unembed(), plain.weights.unembed())
    torch.testing.assert_close(offloaded.weights.W_q(1), plain.weights.W_q(1))


def test_cli_explain_with_an_explicit_map_and_offload_folder(folder, plain, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p", "prompt": "give the answer"}) + "\n")
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps(MAPS["embedding-on-disk"]))
    code = main(["explain", str(folder), "--prompts", str(prompts), "--out", str(tmp_path / "o"),
                 "--explainers", "saliency", "--set", "saliency.max_new_tokens=3",
                 "--set", "saliency.chat_template=false", "--attn", "eager",
                 "--device-map", str(mapping), "--offload-folder", str(tmp_path / "off"),
                 "--max-memory", "3GiB"])  # fmt: skip
    assert code == 0
    record = RecordStore(tmp_path / "o" / "records" / "saliency" / folder.name).load("p")
    explainer = SaliencyExplainer(max_new_tokens=3, chat_template=False)
    expected = run_explainer(explainer, plain, [PromptRecord(id="p", prompt="give the answer")])
    np.testing.assert_allclose(record.arrays["attribution"], expected["p"].arrays["attribution"],
                               rtol=0, atol=1e-6)  # fmt: skip


def test_max_memory_is_the_memory_budget(folder):
    subject = load_subject(folder, max_memory="3GiB")
    assert subject.memory_budget == parse_size("3GiB") == 3 * 2**30
    pinned = load_subject(folder, device_map="cpu", max_memory="cpu=2GiB")
    assert pinned.memory_budget == 2 * 2**30


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"device_map": {"model.layers.1": "disk"}}, "offload-folder"),
        ({"device_map": "{not json"}, "not valid JSON"),
        ({"device_map": '{"model.layers.0": [0, 1]}'}, "maps module names"),
        ({"device_map": "missing.json"}, "does not exist"),
        ({"offload_folder": "somewhere"}, "device map"),
        ({"max_memory": "lots"}, "not a memory size"),
        ({"max_memory": "0=1GiB,=2GiB"}, "DEVICE=SIZE"),
    ],
)
def test_bad_placements_fail_before_loading(folder, options, message):
    with pytest.raises(InputError, match=message):
        load_subject(folder, **options)
