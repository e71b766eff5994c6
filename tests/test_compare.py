"""The diff engine and `compare`: identical models differ nowhere; bad pairs are refused."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tiny import tiny_model, tiny_tokenizer

from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import Explanation
from interpret_shift.core.subject import Subject
from interpret_shift.diff import diff_records
from interpret_shift.errors import InterpretShiftError
from interpret_shift.pipeline.compare import compare

TEXTS = ["translate the text to a word", "summarize this sentence for you",
         "explain what the word is", "list some of the water day"]  # fmt: skip


@pytest.fixture(scope="module")
def self_comparison(tmp_path_factory):
    """A tiny model compared with an identical copy of itself, all three explainers."""
    out = tmp_path_factory.mktemp("self")
    words = out / "words.txt"
    words.write_text("\n".join(tiny_tokenizer().get_vocab()))
    model = tiny_model("llama")
    base = Subject.from_model(model, tiny_tokenizer(), source="tiny", label="base")
    tuned = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="tiny", label="tuned")
    prompts = [
        PromptRecord(id=f"p{i}", prompt=text, group="g",
                     instruction_spans=((0, len(text.split()[0])),))
        for i, text in enumerate(TEXTS)
    ]  # fmt: skip
    options = {"saliency": {"max_new_tokens": 4},
               "heads": {"words": "file", "words_path": str(words), "top_k": 10}}  # fmt: skip
    summary = compare(base, tuned, prompts, out, options=options).summary
    return out, summary


def read(out, name):
    return json.loads((out / "diff" / f"{name}.json").read_text())


def test_a_model_compared_with_itself_differs_nowhere(self_comparison):
    out, summary = self_comparison
    model = read(out, "model")
    assert model["kl"]["per_prompt"] == [0.0] * len(TEXTS)
    assert np.all(np.array(model["weights"]["relative_change"]) == 0)
    heads = read(out, "heads")["head-overlap"]["jaccard"]
    assert np.all(np.array(heads) == 1.0)
    rotation = read(out, "ffn")["rotation"]
    assert max(rotation["max_angle_deg"]) < 1e-5 and min(rotation["overlap"]) > 1 - 1e-9
    scores = read(out, "saliency")["instruction-score"]
    assert scores["base"] == scores["tuned"]
    p = scores["overall"]["p"]
    assert p is None or p > 0.05
    saliency_claim = next(c for c in summary["claims"] if c["section"] == "saliency")
    assert not saliency_claim["shift_found"] and "No significant" in saliency_claim["text"]
    assert (out / "report.html").exists()


def test_output_folder_is_plain_json_and_safetensors(self_comparison):
    out, _ = self_comparison
    suffixes = {p.suffix for p in out.rglob("*") if p.is_file()}
    assert suffixes <= {".json", ".safetensors", ".html", ".txt"}
    for path in out.rglob("*.json"):
        json.loads(path.read_text())  # strict JSON: no NaN


def test_a_rerun_reuses_every_record(self_comparison, capsys):
    out, _ = self_comparison
    stamps = {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")}
    base = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="tiny", label="base")
    prompts = [PromptRecord(id=f"p{i}", prompt=t, group="g",
                            instruction_spans=((0, len(t.split()[0])),))
               for i, t in enumerate(TEXTS)]  # fmt: skip
    options = {
        "saliency": {"max_new_tokens": 4},
        "heads": {"words": "file", "words_path": str(out / "words.txt"), "top_k": 10},
    }
    compare(base, base, prompts, out, options=options)
    assert {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")} == stamps


def record(prompt_ids, explainer="saliency"):
    return Explanation(explainer, "token_attribution", {}, {"prompt_ids": prompt_ids})


def test_records_of_different_prompts_or_kinds_are_refused():
    with pytest.raises(InterpretShiftError, match="prompt_ids"):
        diff_records({"a": record(["a"])}, {"a": record(["b"])})
    with pytest.raises(InterpretShiftError, match="explainer"):
        diff_records({"a": record(["a"])}, {"a": record(["a"], explainer="other")})
    with pytest.raises(InterpretShiftError, match="different items"):
        diff_records({"a": record(["a"])}, {"b": record(["a"])})
    words = [Explanation("heads", "ranked_words", {}, {"word_list": {"sha256": s}}) for s in "xy"]
    with pytest.raises(InterpretShiftError, match="word_list"):
        diff_records({"layer.0": words[0]}, {"layer.0": words[1]})


def test_template_and_tokenizer_differences_are_recorded():
    from interpret_shift.pipeline.compare import align_templates

    base = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="a")
    tuned = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="b")
    tuned.tokenizer.chat_template = "{{ messages[0]['content'] }} answer"
    warnings = align_templates(base, tuned)
    assert base.tokenizer.chat_template == tuned.tokenizer.chat_template
    assert any("tuned model's template" in w for w in warnings)


def test_a_comparison_and_a_record_show_themselves_in_a_notebook(self_comparison):
    from interpret_shift.core.records import RecordStore
    from interpret_shift.pipeline.compare import Comparison
    from interpret_shift.plugins import load_registry

    out, summary = self_comparison
    shown = Comparison(out, summary, tuple(load_registry(autoload=False).sections()))
    html = shown._repr_html_()
    assert "No significant increase" in html  # the saliency claim
    for section in ("instruction-scores", "head-overlap", "ffn-concepts", "next-token-kl"):
        assert f'<section id="{section}">' in html
    record = RecordStore(out / "records" / "heads" / "base").load("layer.0")
    view = record._repr_html_()
    assert "<strong>heads</strong>" in view and "<code>pairs</code>" in view


def test_an_unknown_option_or_explainer_is_refused_before_any_work(tmp_path):
    from interpret_shift.errors import InputError, PluginError

    base = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="a")
    with pytest.raises(PluginError, match="nosuch"):
        compare(base, base, [], tmp_path, explainers=["nosuch"])
    with pytest.raises(InputError, match="topk"):
        compare(base, base, [], tmp_path, explainers=["heads"], options={"heads": {"topk": 3}})
    with pytest.raises(InputError, match="not among the explainers"):
        compare(base, base, [], tmp_path, explainers=["heads"], options={"ffn": {"top_k": 3}})
    assert not any(tmp_path.iterdir())


def test_a_damaged_model_diff_is_recomputed(tmp_path):
    base = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="a", label="base")
    prompts = [PromptRecord(id="p0", prompt=TEXTS[0])]
    options = {"ffn": {"components": 2, "top_k": 2}}
    compare(base, base, prompts, tmp_path, explainers=["ffn"], options=options)
    path = tmp_path / "diff" / "model.json"
    whole = json.loads(path.read_text())
    path.write_text(path.read_text()[:40])  # truncated, as by a crash mid-write elsewhere
    compare(base, base, prompts, tmp_path, explainers=["ffn"], options=options)
    assert json.loads(path.read_text()) == whole
