"""A PEFT LoRA adapter as the tuned model: `compare --tuned BASE+ADAPTER` writes what
`compare` against the merged model saved as a full checkpoint writes; the adapter's
factors give the weight deltas exactly; bad adapters fail clearly before any work."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
import torch
from peft import LoraConfig, get_peft_model
from tiny import tiny_model, tiny_tokenizer

from interpret_shift.cli import main
from interpret_shift.core.records import RecordStore
from interpret_shift.core.subject import load_subject
from interpret_shift.core.weights import Weights
from interpret_shift.errors import ModelLoadError

TARGETS = ["q_proj", "v_proj", "down_proj"]
EXPLAINERS = ("saliency", "heads", "ffn")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """A base checkpoint, a LoRA adapter over it (random nonzero B) and the merged model."""
    root = tmp_path_factory.mktemp("lora")
    base = root / "base"
    tiny_model("llama").save_pretrained(base)
    tiny_tokenizer().save_pretrained(base)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, init_lora_weights=False)
    wrapped = get_peft_model(model, config)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, parameter in wrapped.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.2)  # PEFT starts B at zero: make the adapter matter
    wrapped.save_pretrained(root / "adapter")
    merged = wrapped.merge_and_unload()
    merged.save_pretrained(root / "merged")
    tiny_tokenizer().save_pretrained(root / "merged")
    words = root / "words.txt"
    words.write_text("\n".join(tiny_tokenizer().get_vocab()))
    prompts = root / "prompts.jsonl"
    lines = [{"id": "p0", "prompt": "please translate the text", "instruction_spans": [[0, 6]]},
             {"id": "p1", "prompt": "what is the word", "response": "the water day"}]  # fmt: skip
    prompts.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return {"root": root, "base": base, "adapter": root / "adapter", "merged": root / "merged",
            "words": words, "prompts": prompts}  # fmt: skip


def run_compare(folders, tuned: list[str], out) -> None:
    code = main(["compare", "--base", str(folders["base"]), *tuned, "--out", str(out),
                 "--prompts", str(folders["prompts"]), "--explainers", ",".join(EXPLAINERS),
                 "--set", "saliency.max_new_tokens=3",
                 "--set", "heads.words=file", "--set", f"heads.words_path={folders['words']}",
                 "--set", "heads.top_k=10", "--set", "ffn.components=3",
                 "--set", f"ffn.words_path={folders['words']}", "--set", "ffn.words=file"])  # fmt: skip
    assert code == 0


@pytest.fixture(scope="module")
def both_runs(folders, tmp_path_factory):
    adapter_out = tmp_path_factory.mktemp("with-adapter")
    merged_out = tmp_path_factory.mktemp("with-merged")
    run_compare(folders, ["--tuned", f"{folders['base']}+{folders['adapter']}"], adapter_out)
    run_compare(folders, ["--tuned", str(folders["merged"])], merged_out)
    return adapter_out, merged_out


def close(a, b, path=""):
    """Two JSON values equal, floats to 1e-5 relative."""
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for key in a:
            close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-7), path
    else:
        assert a == b, path


def test_adapter_compare_writes_the_merged_checkpoints_records(both_runs):
    adapter_out, merged_out = both_runs
    for name in EXPLAINERS:
        for side in ("base", "tuned"):
            found = dict(iter(RecordStore(adapter_out / "records" / name / side)))
            expected = dict(iter(RecordStore(merged_out / "records" / name / side)))
            assert sorted(found) == sorted(expected) and found
            for key, record in expected.items():
                for array, value in record.arrays.items():
                    np.testing.assert_allclose(found[key].arrays[array], value, rtol=1e-5,
                                               atol=1e-6, err_msg=f"{name}/{side}/{key}")  # fmt: skip
                # the same weights: the merged model's fingerprint, loaded either way
                mine, theirs = found[key].meta["subject"], record.meta["subject"]
                assert mine["fingerprint"] == theirs["fingerprint"]
        close(json.loads((adapter_out / "diff" / f"{name}.json").read_text()),
              json.loads((merged_out / "diff" / f"{name}.json").read_text()), name)  # fmt: skip


def test_weight_deltas_come_from_the_adapter_factors(both_runs):
    adapter_out, merged_out = both_runs
    found = json.loads((adapter_out / "diff" / "model.json").read_text())
    expected = json.loads((merged_out / "diff" / "model.json").read_text())
    assert found["weights"].pop("from_adapter") == ["attn.q", "attn.v", "mlp.down"]
    assert "from_adapter" not in expected["weights"]
    close(found["weights"], expected["weights"], "weights")
    close(found["kl"], expected["kl"], "kl")
    changes = np.array(found["weights"]["relative_change"])
    columns = found["weights"]["matrices"]
    assert changes[:, columns.index("attn.q")].min() > 1e-3  # the adapter changed them
    assert np.all(changes[:, columns.index("attn.k")] == 0)  # untouched ones exactly not


def test_delta_factors_give_the_merged_minus_base_rows(folders):
    tuned = load_subject(f"{folders['base']}+{folders['adapter']}")
    base = Weights.from_folder(folders["base"])
    merged = Weights.from_folder(folders["merged"])
    for role in ("attn.q", "attn.v", "mlp.down_in"):
        for layer in (0, 1):
            b, a = tuned.delta_factors(role, layer)
            assert b.shape[1] == a.shape[0] == 4
            expected = merged.rows(role, layer) - base.rows(role, layer)
            torch.testing.assert_close(b @ a, expected, rtol=1e-4, atol=1e-6)
    assert tuned.delta_factors("attn.k", 0) is None and tuned.delta_factors("mlp.up", 1) is None
    assert tuned.provenance()["lora"]["folder"] == str(folders["adapter"])
    plain = load_subject(folders["base"])
    assert plain.delta_factors("attn.q", 0) is None and "lora" not in plain.provenance()


def test_tuned_adapter_option_is_the_same_as_the_plus_form(folders, both_runs, tmp_path):
    adapter_out, _ = both_runs
    copy = tmp_path / "copy"
    shutil.copytree(adapter_out, copy)
    code = main(["compare", "--base", str(folders["base"]), "--tuned", str(folders["base"]),
                 "--tuned-adapter", str(folders["adapter"]), "--out", str(copy),
                 "--prompts", str(folders["prompts"]), "--explainers", "ffn",
                 "--set", "ffn.components=3", "--set", f"ffn.words_path={folders['words']}",
                 "--set", "ffn.words=file"])  # fmt: skip
    assert code == 0
    stamps = {p: p.stat().st_mtime_ns for p in (adapter_out / "records" / "ffn").rglob("*.json")}
    again = {adapter_out / p.relative_to(copy): p.stat().st_mtime_ns
             for p in (copy / "records" / "ffn").rglob("*.json")}  # fmt: skip
    assert again == stamps  # every record reused: the same model, the same identity


def test_an_adapter_for_another_base_is_applied_with_a_warning(folders, tmp_path, capsys):
    other = tmp_path / "renamed-base"
    shutil.copytree(folders["base"], other)
    subject = load_subject(f"{other}+{folders['adapter']}")
    (warning,) = subject.lora.warnings
    assert "trained on" in warning and "renamed-base" in warning


@pytest.mark.parametrize("damage", ["no-folder", "no-config", "bin-only", "not-lora", "shape"])
def test_bad_adapters_fail_clearly_before_any_work(folders, tmp_path, damage, capsys):
    adapter = tmp_path / "adapter"
    if damage != "no-folder":
        shutil.copytree(folders["adapter"], adapter)
    if damage == "no-config":
        (adapter / "adapter_config.json").unlink()
    if damage == "bin-only":
        (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    if damage == "not-lora":
        config = json.loads((adapter / "adapter_config.json").read_text())
        (adapter / "adapter_config.json").write_text(json.dumps(config | {"peft_type": "IA3"}))
    if damage == "shape":  # an adapter for a wider model
        from safetensors.torch import load_file, save_file

        tensors = load_file(adapter / "adapter_model.safetensors")
        save_file({k: torch.zeros(v.shape[0] * 2, v.shape[1] * 2) for k, v in tensors.items()},
                  adapter / "adapter_model.safetensors")  # fmt: skip
    code = main(["compare", "--base", str(folders["base"]), "--tuned",
                 f"{folders['base']}+{adapter}", "--out", str(tmp_path / "out"),
                 "--prompts", str(folders["prompts"]), "--explainers", "ffn"])  # fmt: skip
    error = capsys.readouterr().err
    assert code == 2 and "error:" in error and "Traceback" not in error
    expected = {"no-folder": "does not exist", "no-config": "adapter_config.json",
                "bin-only": "pickled", "not-lora": "only LoRA", "shape": "does not fit"}  # fmt: skip
    assert expected[damage] in " ".join(error.split())
    assert not (tmp_path / "out" / "records").exists()


def test_missing_peft_is_named(folders, monkeypatch):
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ModelLoadError, match="interpret-shift\\[lora\\]"):
        load_subject(f"{folders['base']}+{folders['adapter']}")
