"""Loading subjects: folders, GGUF, hub ids, and a clear error for every bad input."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import smollm2_gguf
from tiny import tiny_model, tiny_tokenizer, tokens
from transformers import AutoConfig

from interpret_shift.cli import main
from interpret_shift.core.subject import load_subject
from interpret_shift.errors import InterpretShiftError


@pytest.fixture
def saved_llama(tmp_path):
    tiny_model("llama").save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    return tmp_path


def test_loads_a_local_folder_with_options(saved_llama):
    subject = load_subject(saved_llama, dtype="bfloat16", attn_implementation="eager")
    assert subject.adapter.name == "llama" and subject.dtype == torch.bfloat16
    assert not any(p.requires_grad for p in subject.model.parameters())
    provenance = subject.provenance()
    assert provenance["adapter"] == "llama" and len(provenance["fingerprint"]) == 16
    same = load_subject(saved_llama)
    assert same.fingerprint != subject.fingerprint  # bfloat16 values differ from float32


def test_fingerprint_tracks_the_weights(saved_llama):
    first, second = load_subject(saved_llama), load_subject(saved_llama)
    assert first.fingerprint == second.fingerprint
    with torch.no_grad():
        second.model.model.layers[0].mlp.down_proj.weight.mul_(1.01)
    del second.__dict__["fingerprint"]
    assert first.fingerprint != second.fingerprint


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p / "missing", "does not exist"),
        (lambda p: p, "no config.json"),
    ],
)
def test_bad_paths_say_what_is_wrong(tmp_path, make, message):
    with pytest.raises(InterpretShiftError, match=message):
        load_subject(str(make(tmp_path)))


def test_a_model_that_is_not_a_causal_lm(tmp_path):
    AutoConfig.for_model("t5", d_model=16, num_layers=1, num_heads=2).save_pretrained(tmp_path)
    with pytest.raises(InterpretShiftError, match="not a causal language model"):
        load_subject(tmp_path)


def test_an_architecture_without_a_table_is_not_refused(tmp_path):
    # no table matches (adapters=()), so an adapter is inferred from the module tree and
    # loading goes on to the next check; refusals of untreeable models: test_inferred_adapters
    AutoConfig.for_model("bloom", hidden_size=16, n_layer=1, n_head=2).save_pretrained(tmp_path)
    with pytest.raises(InterpretShiftError, match="No tokenizer"):
        load_subject(tmp_path, adapters=())


def test_corrupt_weights(saved_llama):
    weights = saved_llama / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(InterpretShiftError, match="could not be read"):
        load_subject(saved_llama)


def test_hub_ids_use_the_real_path_and_fail_clearly_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InterpretShiftError) as error:
        load_subject("HuggingFaceTB/SmolLM2-135M")
    assert "hub" in error.value.what.lower() and "local folder" in error.value.fix


def test_smollm2_from_gguf_through_hookpoints_and_a_cache(smollm2, capsys):
    assert main(["hookpoints", str(smollm2_gguf()), "--json"]) == 0
    names = json.loads(capsys.readouterr().out)
    assert len(names) == 1 + 30 * 16 + 2 and "layers.29.mlp.gate" in names
    assert smollm2.adapter.name == "llama" and smollm2.layout.n_kv == 3
    ids = smollm2.tokenizer("Translate to French: good morning", return_tensors="pt").input_ids
    output, cache = smollm2.hooks.run_with_cache(ids, names=["layers.3.attn.[qkv]", "unembed"])
    assert cache["layers.3.attn.k"].shape == (1, ids.shape[1], 3 * 64)
    assert torch.equal(cache["unembed"], output.logits)


def test_hookpoints_lists_a_table_without_reading_weights(saved_llama, capsys):
    (saved_llama / "model.safetensors").unlink()  # the layout needs the config only
    assert main(["hookpoints", str(saved_llama)]) == 0
    assert "layers.1.mlp.down_in" in capsys.readouterr().out


def test_cli_errors_are_one_clear_paragraph(tmp_path, capsys):
    assert main(["hookpoints", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_tiny_tokens_helper_stays_in_vocab():
    assert int(tokens().max()) < 96


def test_demo_names_resolve_to_the_package_folder_or_say_what_is_missing(tmp_path, monkeypatch):
    from interpret_shift import demo
    from interpret_shift.core.subject import _demo_dir

    with pytest.raises(InterpretShiftError, match="demo:base or demo:tuned"):
        _demo_dir("large")
    assert (_demo_dir("tuned") / "config.json").exists()
    monkeypatch.setattr(demo, "DEMO_DIR", tmp_path)
    with pytest.raises(InterpretShiftError) as error:
        _demo_dir("base")
    assert "not installed" in error.value.what and "train_demo_pair" in error.value.fix
