"""Reuse only what this run would write: input digests, injective names, damaged records."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json

import numpy as np
import pytest
import torch
from rich.console import Console
from rich.progress import Progress
from tiny import tiny_model, tiny_tokenizer

from interpret_shift.core.explainer import Explainer, inputs_digest, run_explainer
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import Explanation, RecordStore, record_files, record_name
from interpret_shift.core.subject import Subject
from interpret_shift.errors import RecordError
from interpret_shift.methods.layer_explainer import LayerExplainer


class NextToken(Explainer):
    """Per prompt: the model's next-token probabilities of the first four tokens."""

    name = "next-token"
    data_kind = "unit_scalars"
    needs = frozenset({"prompts"})
    calls: list[str] = []

    @dataclasses.dataclass
    class Config:
        top: int = 4

    def items(self, subject, prompts):
        return [p.id for p in prompts]

    def explain(self, subject, keys, prompts):
        by_id = {p.id: p for p in prompts}
        for key in keys:
            NextToken.calls.append(key)
            text = by_id[key].prompt
            ids = subject.tokenizer(text, return_tensors="pt").input_ids
            with torch.no_grad():
                probs = subject.model(ids).logits[0, -1].softmax(-1)[: self.config.top]
            arrays = {"values": probs.numpy(), "input_ids": ids[0].numpy()}
            yield key, Explanation(self.name, self.data_kind, arrays, {"text": text})


def expected_values(subject, text: str) -> np.ndarray:
    """Computed here, not by the explainer: softmax of the last position's logits."""
    ids = torch.tensor([subject.tokenizer.convert_tokens_to_ids(text.split())])
    with torch.no_grad():
        logits = subject.model(ids).logits[0, -1].double()
    return (logits.exp() / logits.exp().sum())[:4].numpy()


def make_subject(seed: int = 0) -> Subject:
    return Subject.from_model(tiny_model("llama", seed), tiny_tokenizer(), source="tiny-llama")


PROMPTS = [
    PromptRecord("p1", "please translate the text"),
    PromptRecord("p2", "give a word", group="synonym"),
    PromptRecord("p3", "list all the water"),
]


def stamps(store: RecordStore, keys) -> dict[str, int]:
    return {key: record_files(store.path(key))[0].stat().st_mtime_ns for key in keys}


def run(subject, prompts, store, **kwargs):
    notices: list[str] = []
    NextToken.calls = []
    results = run_explainer(NextToken(), subject, prompts, store, notify=notices.append, **kwargs)
    return results, notices


# -- edited inputs -------------------------------------------------------------------------
def test_an_edited_prompt_is_recomputed_and_the_others_reused(tmp_path):
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, PROMPTS, store)
    before = stamps(store, ["p1", "p3"])
    edited = [PROMPTS[0], PromptRecord("p2", "answer the question"), PROMPTS[2]]

    results, notices = run(subject, edited, store)

    assert NextToken.calls == ["p2"]
    assert notices == [
        "next-token · tiny-llama · p2: inputs changed since the record was written; recomputing"
    ]
    assert stamps(store, ["p1", "p3"]) == before
    record = store.load("p2")
    assert record.meta["text"] == "answer the question"
    np.testing.assert_allclose(
        record.arrays["values"], expected_values(subject, "answer the question"), rtol=1e-5
    )
    np.testing.assert_array_equal(results["p2"].arrays["values"], record.arrays["values"])
    old = expected_values(subject, "give a word")
    assert not np.allclose(record.arrays["values"], old)


def test_a_changed_field_besides_the_text_also_counts(tmp_path):
    """The group is written into records by the paper's explainer: it is an input too."""
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, PROMPTS, store)
    regrouped = [PROMPTS[0], dataclasses.replace(PROMPTS[1], group="antonym"), PROMPTS[2]]
    _, notices = run(subject, regrouped, store)
    assert NextToken.calls == ["p2"] and len(notices) == 1
    _, notices = run(subject, regrouped, store)  # now up to date: nothing to do
    assert NextToken.calls == [] and notices == []


def test_a_new_chat_template_changes_what_every_prompt_reads(tmp_path):
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, PROMPTS, store)
    subject.tokenizer.chat_template = "{% for m in messages %}the {{ m['content'] }}{% endfor %}"
    _, notices = run(subject, PROMPTS, store)
    assert NextToken.calls == ["p1", "p2", "p3"]
    assert all("inputs changed" in line for line in notices) and len(notices) == 3


def test_the_digest_covers_each_input_and_nothing_else(tmp_path):
    subject = make_subject()
    explainer = NextToken()
    digest = inputs_digest(explainer, subject, "p1", PROMPTS)
    assert digest == inputs_digest(explainer, subject, "p1", list(PROMPTS))
    assert digest != inputs_digest(explainer, subject, "p2", PROMPTS)
    assert digest != inputs_digest(NextToken(top=3), subject, "p1", PROMPTS)
    assert digest != inputs_digest(explainer, make_subject(seed=1), "p1", PROMPTS)
    edited = [dataclasses.replace(PROMPTS[0], response="ok"), *PROMPTS[1:]]
    assert digest != inputs_digest(explainer, subject, "p1", edited)
    subject.model.to(torch.float64)  # another dtype (and so another fingerprint)
    del subject.__dict__["fingerprint"], subject.__dict__["weights_identity"]
    assert digest != inputs_digest(explainer, subject, "p1", PROMPTS)


def test_a_record_without_a_digest_is_recomputed(tmp_path):
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, PROMPTS, store)
    json_path = record_files(store.path("p3"))[0]
    header = json.loads(json_path.read_text())
    del header["meta"]["inputs_sha256"]  # as written before digests existed
    json_path.write_text(json.dumps(header))
    _, notices = run(subject, PROMPTS, store)
    assert NextToken.calls == ["p3"]
    assert notices == ["next-token · tiny-llama · p3: record written before input digests; "
                       "recomputing"]  # fmt: skip
    assert "inputs_sha256" in json.loads(json_path.read_text())["meta"]


def test_the_stored_digest_is_the_runs(tmp_path):
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, PROMPTS, store)
    meta = json.loads(record_files(store.path("p1"))[0].read_text())["meta"]
    assert meta["inputs_sha256"] == inputs_digest(NextToken(), subject, "p1", PROMPTS)
    assert len(meta["inputs_sha256"]) == 64 and meta["key"] == "p1"


# -- another run in the same folder ---------------------------------------------------------
def test_records_of_another_model_still_refuse(tmp_path):
    store = RecordStore(tmp_path)
    run(make_subject(seed=0), PROMPTS, store)
    before = stamps(store, ["p1", "p2", "p3"])
    with pytest.raises(RecordError, match=r"subject\.fingerprint"):
        run(make_subject(seed=1), PROMPTS, store)
    assert NextToken.calls == [] and stamps(store, ["p1", "p2", "p3"]) == before


def test_records_of_another_config_still_refuse(tmp_path):
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, PROMPTS, store)
    with pytest.raises(RecordError, match="different config"):
        run_explainer(NextToken(top=3), subject, PROMPTS, store)


# -- names -----------------------------------------------------------------------------------
def test_record_names_are_injective_and_readable():
    assert record_name("q_1") == "q_1"
    assert record_name("layer.3") == "layer.3"
    assert record_name("q/1") == "q_1~" + hashlib.sha256(b"q/1").hexdigest()[:8]
    assert record_name("q 1") == "q_1~" + hashlib.sha256(b"q 1").hexdigest()[:8]
    assert record_name("Q_1") == "Q_1~" + hashlib.sha256(b"Q_1").hexdigest()[:8]  # case-folding
    assert record_name("a.json").startswith("a.json~")  # would lose its suffix otherwise
    assert record_name("../x").startswith("_x~") and "/" not in record_name("../x")
    assert len(record_name("x" * 500)) <= 110


def test_keys_that_sanitise_alike_get_records_of_their_own(tmp_path):
    subject, store = make_subject(), RecordStore(tmp_path)
    prompts = [
        PromptRecord("q/1", "please translate the text"),
        PromptRecord("q_1", "give a word"),
        PromptRecord("q 1", "list all the water"),
    ]
    results, _ = run(subject, prompts, store)
    assert len(list(tmp_path.glob("*.json"))) == 3
    assert len(list(tmp_path.glob("*.safetensors"))) == 3
    assert store.keys() == ["q 1", "q/1", "q_1"]
    for prompt in prompts:
        values = store.load(prompt.id).arrays["values"]
        np.testing.assert_allclose(values, expected_values(subject, prompt.prompt), rtol=1e-5)
        assert store.load(prompt.id).meta["text"] == prompt.prompt
    assert [key for key, _ in store] == ["q 1", "q/1", "q_1"]
    _, notices = run(subject, prompts, store)  # all three reused
    assert NextToken.calls == [] and notices == []


def test_a_record_under_a_name_that_is_not_its_keys_is_not_taken_for_it(tmp_path):
    """Older versions wrote the key 'q/1' to q_1.json; that file is not the record of 'q_1'."""
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, [PromptRecord("q/1", "give a word")], store)
    old = record_files(store.path("q/1"))
    new = record_files(tmp_path / "q_1")
    for a, b in zip(old, new):
        a.rename(b)
    assert store.keys() == []  # a stray: its name is not its key's
    with pytest.raises(RecordError, match="holds the record of key 'q/1'"):
        store.load("q_1")
    _, notices = run(subject, [PromptRecord("q_1", "list all the water")], store)
    assert NextToken.calls == ["q_1"] and "holds the record of key" in notices[0]
    assert store.load("q_1").meta["text"] == "list all the water"


# -- damaged records ---------------------------------------------------------------------------
def damage_truncated(store):
    path = record_files(store.path("p2"))[0]
    path.write_text(path.read_text()[:40])


def damage_checksum(store):
    mine, other = record_files(store.path("p2"))[1], record_files(store.path("p1"))[1]
    mine.write_bytes(other.read_bytes())


def damage_no_arrays(store):
    record_files(store.path("p2"))[1].unlink()


def damage_no_json(store):
    record_files(store.path("p2"))[0].unlink()


def damage_no_fields(store):
    record_files(store.path("p2"))[0].write_text('{"format_version": 2, "meta": {}}')


def damage_no_identity(store):
    path = record_files(store.path("p2"))[0]
    header = json.loads(path.read_text())
    del header["meta"]["subject"]
    path.write_text(json.dumps(header))


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        (damage_truncated, "not valid JSON"),
        (damage_checksum, "checksum differs"),
        (damage_no_arrays, "No explanation record"),
        (damage_no_json, "p2.json missing"),
        (damage_no_fields, "lacks the record field"),
        (damage_no_identity, "lacks the run's identity"),
    ],
)
def test_a_damaged_record_is_recomputed_alone_with_a_notice(tmp_path, damage, said):
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, PROMPTS, store)
    before = stamps(store, ["p1", "p3"])
    damage(store)

    results, notices = run(subject, PROMPTS, store)

    assert NextToken.calls == ["p2"]
    assert len(notices) == 1 and notices[0].startswith("next-token · tiny-llama · p2: ")
    assert said in notices[0] and notices[0].endswith("; recomputing")
    assert stamps(store, ["p1", "p3"]) == before
    record = store.load("p2")  # whole again
    np.testing.assert_allclose(
        record.arrays["values"], expected_values(subject, "give a word"), rtol=1e-5
    )
    assert store.keys() == ["p1", "p2", "p3"] and list(results) == ["p1", "p2", "p3"]


def test_a_damaged_record_still_fails_to_load_on_its_own(tmp_path):
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, PROMPTS, store)
    damage_no_fields(store)
    with pytest.raises(RecordError, match="lacks the record field 'explainer'"):
        store.load("p2")
    json_path = record_files(store.path("p1"))[0]
    json_path.write_text("[1, 2]")
    with pytest.raises(RecordError, match="not a record"):
        store.load("p1")


def test_notices_go_to_the_progress_console_or_stderr(tmp_path, capsys):
    subject, store = make_subject(), RecordStore(tmp_path)
    run(subject, PROMPTS, store)
    damage_truncated(store)
    buffer = io.StringIO()
    with Progress(console=Console(file=buffer, width=300)) as progress:
        run_explainer(NextToken(), subject, PROMPTS, store, progress=progress)
    assert "p2: record unreadable" in buffer.getvalue()

    damage_checksum(store)
    run_explainer(NextToken(), subject, PROMPTS, store)
    captured = capsys.readouterr()
    assert "p2: record unreadable" in captured.err and "checksum" in captured.err
    assert "recomputing" not in captured.out


# -- weight-only explainers ----------------------------------------------------------------------
class WordCount(LayerExplainer):
    """Per layer: how many words of the word file, and the layer's number."""

    name = "word-count"
    data_kind = "unit_scalars"
    calls: list[str] = []

    @dataclasses.dataclass
    class Config:
        words: str = "file"
        words_path: str | None = None
        layers: list[int] | None = None

    def explain(self, subject, keys, prompts=()):
        with open(self.config.words_path, encoding="utf-8") as handle:
            n = len(handle.read().split())
        for key in keys:
            WordCount.calls.append(key)
            values = np.array([n, int(key.split(".")[1])], np.float32)
            yield key, Explanation(self.name, self.data_kind, {"values": values})


def test_an_edited_word_file_recomputes_the_layers(tmp_path):
    subject = Subject.from_model(tiny_model("gpt2"), source="tiny")
    words = tmp_path / "words.txt"
    words.write_text("the\nof\nand\n")
    store = RecordStore(tmp_path / "records")
    explainer = WordCount(words_path=str(words))
    notices: list[str] = []

    WordCount.calls = []
    run_explainer(explainer, subject, store=store, notify=notices.append)
    assert WordCount.calls == ["layer.0", "layer.1"]
    before = stamps(store, ["layer.0", "layer.1"])
    WordCount.calls = []
    run_explainer(explainer, subject, store=store, notify=notices.append)
    assert WordCount.calls == [] and notices == []
    assert stamps(store, ["layer.0", "layer.1"]) == before

    words.write_text("the\nof\nand\nto\n")
    run_explainer(explainer, subject, store=store, notify=notices.append)
    assert WordCount.calls == ["layer.0", "layer.1"] and len(notices) == 2
    assert store.load("layer.1").arrays["values"].tolist() == [4.0, 1.0]


def test_a_word_list_object_is_identified_by_its_words(tmp_path):
    from interpret_shift.lexicon.words import WordList

    subject = Subject.from_model(tiny_model("gpt2"), source="tiny")
    a = WordCount(word_list=WordList(["the", "of"], name="mine"))
    b = WordCount(word_list=WordList(["the", "and"], name="mine"))
    same = WordCount(word_list=WordList(["the", "of"], name="mine"))
    assert a.item_inputs(subject, "layer.0", None) == same.item_inputs(subject, "layer.0", None)
    assert a.item_inputs(subject, "layer.0", None) != b.item_inputs(subject, "layer.0", None)
    assert a.item_inputs(subject, "layer.0", None)["words"]["name"] == "mine"
