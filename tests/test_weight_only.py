"""Weight-only runs from the command line: when every chosen explainer reads weights only,
no model is built with values (a meta skeleton, every weight streamed from the
checkpoint), the next-token KL is skipped with its reason, and everything written equals
(and is reused by) a run on the loaded models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import transformers
from tiny import tiny_model, tiny_tokenizer

from interpret_shift.cli import main
from interpret_shift.core.records import RecordStore
from interpret_shift.core.subject import load_subject
from interpret_shift.errors import ModelLoadError

SETS = ["--set", "heads.top_k=10", "--set", "ffn.components=3"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("pair")
    for side, seed in (("base", 0), ("tuned", 1)):
        model = tiny_model("llama", seed=seed)
        model.config.tie_word_embeddings = side == "tuned"  # one pair member ties, one not
        if side == "tuned":
            model.tie_weights()
        model.save_pretrained(root / side)
        tiny_tokenizer().save_pretrained(root / side)
    words = root / "words.txt"
    words.write_text("\n".join(tiny_tokenizer().get_vocab()))
    prompts = root / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p0", "prompt": "please translate the text"}) + "\n")
    return root


def args(root, out, explainers: str, *extra: str) -> list[str]:
    return ["compare", "--base", str(root / "base"), "--tuned", str(root / "tuned"),
            "--out", str(out), "--prompts", str(root / "prompts.jsonl"),
            "--explainers", explainers, "--set", "heads.words=file",
            "--set", f"heads.words_path={root / 'words.txt'}", "--set", "ffn.words=file",
            "--set", f"ffn.words_path={root / 'words.txt'}", *SETS, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def weight_only_run(folders, tmp_path_factory):
    """`compare --explainers heads,ffn` with every way of building a model with weights
    disabled: it must not need one."""
    out = tmp_path_factory.mktemp("weight-only")
    with pytest.MonkeyPatch.context() as patch:

        def refuse(*_args, **_kwargs):
            raise AssertionError("a model was loaded with its weights")

        patch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", refuse)
        assert main(args(folders, out, "heads,ffn")) == 0
    return out


def test_weight_only_compare_builds_no_model_and_skips_kl_with_a_reason(weight_only_run):
    model = json.loads((weight_only_run / "diff" / "model.json").read_text())
    assert "weight-only" in model["kl"]["skipped"]
    assert len(model["weights"]["per_layer"]) == 2 and min(model["weights"]["per_layer"]) > 0
    summary = json.loads((weight_only_run / "summary.json").read_text())
    for side in ("base", "tuned"):
        assert summary[side]["weights"]["source"] == "loaded model"  # as a loaded model's


def test_a_full_run_equals_and_reuses_the_weight_only_records(folders, weight_only_run, tmp_path):
    # an independent full run: the models loaded with their weights, nothing streamed
    full = tmp_path / "full"
    assert main(args(folders, full, "heads,ffn,saliency", "--set",
                     "saliency.max_new_tokens=2")) == 0  # fmt: skip
    for name in ("heads", "ffn"):
        for side in ("base", "tuned"):
            expected = dict(iter(RecordStore(full / "records" / name / side)))
            found = dict(iter(RecordStore(weight_only_run / "records" / name / side)))
            assert sorted(found) == sorted(expected) == ["layer.0", "layer.1"]
            for key, record in expected.items():
                assert found[key].meta["subject"] == record.meta["subject"]
                assert found[key].meta["inputs_sha256"] == record.meta["inputs_sha256"]
                for array, value in record.arrays.items():
                    np.testing.assert_array_equal(found[key].arrays[array], value)
        assert (full / "diff" / f"{name}.json").read_text() == (
            weight_only_run / "diff" / f"{name}.json"
        ).read_text()
    weights = json.loads((full / "diff" / "model.json").read_text())["weights"]
    streamed = json.loads((weight_only_run / "diff" / "model.json").read_text())["weights"]
    assert weights == streamed
    # the full run into the weight-only run's folder reuses every heads/ffn record
    stamps = {p: p.stat().st_mtime_ns for p in (weight_only_run / "records").rglob("*.json")}
    assert main(args(folders, weight_only_run, "heads,ffn,saliency", "--set",
                     "saliency.max_new_tokens=2")) == 0  # fmt: skip
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_skeleton_is_identified_and_read_like_the_loaded_model(folders, dtype):
    for side in ("base", "tuned"):
        skeleton = load_subject(folders / side, dtype=dtype, weights_only=True)
        loaded = load_subject(folders / side, dtype=dtype)
        assert skeleton.weights_only and not loaded.weights_only
        assert all(p.device.type == "meta" for p in skeleton.model.parameters())
        assert skeleton.provenance() == loaded.provenance()
        assert skeleton.fingerprint == loaded.fingerprint
        for role in ("attn.q", "attn.k", "mlp.down_in", "ln1", "ln2"):
            torch.testing.assert_close(skeleton.weights.rows(role, 1),
                                       loaded.weights.rows(role, 1), rtol=0, atol=0)  # fmt: skip
        torch.testing.assert_close(skeleton.weights.unembed(), loaded.weights.unembed())
        torch.testing.assert_close(skeleton.weights.W_down(0), loaded.weights.W_down(0))


def test_explain_is_weight_only_too(folders, tmp_path, monkeypatch):
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", None)
    code = main(["explain", str(folders / "base"), "--out", str(tmp_path), "--explainers",
                 "ffn", "--set", "ffn.components=3", "--set", "ffn.words=file",
                 "--set", f"ffn.words_path={folders / 'words.txt'}"])  # fmt: skip
    assert code == 0
    assert sorted(RecordStore(tmp_path / "records" / "ffn" / "base").keys()) == [
        "layer.0",
        "layer.1",
    ]


def test_streaming_another_models_checkpoint_is_refused_before_any_work(folders, tmp_path):
    wrong = load_subject(folders / "base", weights_from=folders / "tuned", weights_only=True)
    assert wrong.weights_identity["source"] == str(folders / "tuned")
    with pytest.raises(ModelLoadError, match="not those of"):
        wrong.check_weights()
    code = main(args(folders, tmp_path / "out", "ffn", "--base-weights", str(folders / "tuned")))
    assert code == 2 and not (tmp_path / "out" / "records").exists()
