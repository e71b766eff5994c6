"""Prompt sets: JSONL reading and writing, row errors, and span -> token mapping."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from interpret_shift.core.prompts import PromptRecord, read_prompts, token_mask, write_prompts
from interpret_shift.errors import InterpretShiftError

EXAMPLE = {
    "id": "syn-0007",
    "prompt": "Give a synonym of the word: glad",
    "reference": "happy",
    "group": "synonym",
    "instruction_spans": [[0, 26]],
    "context_spans": [[28, 32]],
}


def write_lines(path: Path, rows: list) -> Path:
    lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_error(tmp_path: Path, rows: list) -> str:
    path = write_lines(tmp_path / "prompts.jsonl", rows)
    with pytest.raises(InterpretShiftError) as caught:
        read_prompts(path)
    return caught.value.what


# --- reading and writing ---------------------------------------------------------------------


def test_reads_the_documented_example(tmp_path):
    path = write_lines(tmp_path / "prompts.jsonl", [EXAMPLE, "", {"id": "b", "prompt": "Hi"}])
    first, second = read_prompts(path)
    assert first == PromptRecord(
        id="syn-0007",
        prompt="Give a synonym of the word: glad",
        reference="happy",
        group="synonym",
        instruction_spans=((0, 26),),
        context_spans=((28, 32),),
    )
    assert first.prompt[slice(*first.instruction_spans[0])] == "Give a synonym of the word"
    assert second == PromptRecord(id="b", prompt="Hi")
    assert second.response is None and second.rating is None and second.instruction_spans == ()


def test_records_are_frozen():
    record = PromptRecord(id="a", prompt="x", instruction_spans=[[0, 1]])
    assert record.instruction_spans == ((0, 1),)
    with pytest.raises(AttributeError):
        record.prompt = "y"


def test_write_then_read_round_trips(tmp_path):
    records = [
        PromptRecord(**{**EXAMPLE, "instruction_spans": [(0, 26)], "context_spans": [(28, 32)]}),
        PromptRecord(id="ü-2", prompt="Résumé\nline two", response="ok", rating=3, group="g"),
        PromptRecord(id="n", prompt="p", response=None, rating=0),
    ]
    path = tmp_path / "out.jsonl"
    write_prompts(path, records)
    assert read_prompts(path) == records
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[1])["id"] == "ü-2"


def test_write_is_atomic_when_records_fail(tmp_path):
    path = tmp_path / "out.jsonl"
    write_prompts(path, [PromptRecord(id="a", prompt="keep me")])
    before = path.read_text(encoding="utf-8")

    def broken():
        yield PromptRecord(id="b", prompt="new")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_prompts(path, broken())
    assert path.read_text(encoding="utf-8") == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(InterpretShiftError, match="does not exist"):
        read_prompts(tmp_path / "nope.jsonl")


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"prompt": "x"}, "field 'id': missing"),
        ({"id": 3, "prompt": "x"}, "field 'id': expected a non-empty string"),
        ({"id": "a"}, "field 'prompt': missing"),
        ({"id": "a", "prompt": ""}, "field 'prompt': expected a non-empty string"),
        ({"id": "a", "prompt": ["x"]}, "field 'prompt': expected a non-empty string"),
        ({"id": "a", "prompt": "x", "response": 5}, "field 'response': expected a string"),
        ({"id": "a", "prompt": "x", "rating": 5}, "field 'rating': expected an integer 0..4"),
        ({"id": "a", "prompt": "x", "rating": True}, "field 'rating': expected an integer"),
        ({"id": "a", "prompt": "x", "rating": 2.5}, "field 'rating': expected an integer"),
        ({"id": "a", "prompt": "x", "group": 1}, "field 'group': expected a string"),
        ({"id": "a", "prompt": "x", "colour": "red"}, "field 'colour': unknown field"),
        ({"id": "a", "prompt": "abc", "instruction_spans": [[2, 1]]}, "[2, 1] ends before"),
        ({"id": "a", "prompt": "abc", "instruction_spans": [[1, 1]]}, "[1, 1] ends before"),
        ({"id": "a", "prompt": "abc", "instruction_spans": [[0, 4]]}, "out of range"),
        ({"id": "a", "prompt": "abc", "context_spans": [[-1, 2]]}, "out of range"),
        ({"id": "a", "prompt": "abc", "instruction_spans": [[0, 1.5]]}, "not integers"),
        ({"id": "a", "prompt": "abc", "instruction_spans": [["0", 1]]}, "not integers"),
        ({"id": "a", "prompt": "abc", "instruction_spans": [[False, 1]]}, "not integers"),
        ({"id": "a", "prompt": "abc", "instruction_spans": [[0, 1, 2]]}, "not a [start, end]"),
        ({"id": "a", "prompt": "abc", "instruction_spans": [0, 1]}, "not a [start, end]"),
        ({"id": "a", "prompt": "abc", "context_spans": "0-1"}, "expected a list"),
    ],
)
def test_bad_rows_name_file_line_field_and_problem(tmp_path, row, expected):
    message = read_error(tmp_path, [{"id": "ok", "prompt": "fine"}, "", row])
    assert message.startswith("prompts.jsonl line 3: ")
    assert expected in message


def test_reversed_span_message_matches_the_format_doc(tmp_path):
    row = {"id": "a", "prompt": "x" * 40, "instruction_spans": [[30, 12]]}
    message = read_error(tmp_path, [row])
    assert (
        message
        == "prompts.jsonl line 1: field 'instruction_spans': span [30, 12] ends before it starts"
    )


def test_bad_json_and_non_objects(tmp_path):
    assert "line 2: not valid JSON" in read_error(tmp_path, [EXAMPLE, '{"id": "a",'])
    assert "line 1: expected a JSON object" in read_error(tmp_path, ["[1, 2]"])


def test_duplicate_id_names_both_lines(tmp_path):
    message = read_error(tmp_path, [EXAMPLE, {"id": "x", "prompt": "y"}, EXAMPLE])
    assert "line 3: field 'id': duplicate id 'syn-0007' (first on line 1)" in message


# --- span -> token mapping -------------------------------------------------------------------


def slow_token_mask(offsets, spans):
    mask = []
    for start, end in offsets:
        characters = set(range(start, end))
        mask.append(any(characters & set(range(s, e)) for s, e in spans))
    return mask


def test_token_mask_overlap_rules():
    offsets = [(0, 0), (0, 4), (4, 5), (5, 10), (10, 11), (11, 11), (11, 16)]
    assert token_mask(offsets, [(4, 5)]).tolist() == [
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]
    # A span touching a token's edge does not overlap it; one character inside does.
    assert token_mask(offsets, [(5, 10)]).tolist() == [0, 0, 0, 1, 0, 0, 0]
    assert token_mask(offsets, [(3, 6)]).tolist() == [0, 1, 1, 1, 0, 0, 0]
    # Empty (special) tokens are never in a span, even at a span's position.
    assert token_mask(offsets, [(0, 16)]).tolist() == [0, 1, 1, 1, 1, 0, 1]
    assert token_mask(offsets, []).tolist() == [False] * 7
    assert token_mask([], [(0, 3)]).tolist() == []
    assert token_mask(np.array(offsets), [(10, 11)]).dtype == bool


@pytest.mark.parametrize("seed", range(5))
def test_token_mask_matches_loops(seed):
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, 60), size=15, replace=False))
    offsets = [(0, 0)] + list(zip([0, *cuts[:-1]], cuts))
    spans = []
    for _ in range(3):
        start = int(rng.integers(0, 58))
        spans.append((start, int(rng.integers(start + 1, 60))))
    expected = slow_token_mask([(int(s), int(e)) for s, e in offsets], spans)
    assert token_mask(offsets, spans).tolist() == expected


@pytest.fixture(scope="module")
def fast_tokenizer():
    """A real fast tokenizer: a tiny byte-level BPE trained here, with a BOS token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    sentences = [
        "Give a synonym of the word: glad",
        "Translate the sentence into French. The cat sleeps on the mat.",
        "Summarize the following paragraph in two sentences.",
        "Write a short poem about the sea and the wind.",
    ] * 5
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(sentences, trainer)
    bos = tokenizer.token_to_id("<s>")
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=True),
            processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", bos)]),
        ]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>")


@pytest.mark.parametrize(
    ("prompt", "span_text"),
    [
        ("Give a synonym of the word: glad", "Give a synonym of the word"),
        ("Please translate the sentence into French. The cat sleeps.", "The cat sleeps."),
        ("Summarize the following paragraph in two sentences.", "the following"),
    ],
)
def test_token_mask_with_a_real_fast_tokenizer(fast_tokenizer, prompt, span_text):
    start = prompt.index(span_text)
    spans = [(start, start + len(span_text))]
    encoded = fast_tokenizer(prompt, return_offsets_mapping=True)
    offsets = encoded["offset_mapping"]
    tokens = fast_tokenizer.convert_ids_to_tokens(encoded["input_ids"])
    assert tokens[0] == "<s>" and tuple(offsets[0]) == (0, 0)

    mask = token_mask(offsets, spans)
    assert mask.tolist() == slow_token_mask([tuple(o) for o in offsets], spans)
    assert not mask[0]  # the BOS token is never part of a span
    # The marked tokens are exactly the span's words: together they cover the span, no more.
    marked = [tuple(o) for o, inside in zip(offsets, mask) if inside]
    assert (marked[0][0], marked[-1][1]) == spans[0]
    assert all(e <= s for (_, e), (s, _) in zip(marked, marked[1:]))
