"""The paper's released files: TSV readers, the annotation rule, safe pickles, Tables 1 and 2."""

from __future__ import annotations

import io
import json
import math
import os
import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from interpret_shift.core.prompts import read_prompts, write_prompts
from interpret_shift.errors import InterpretShiftError
from interpret_shift.methods.saliency.paper import (
    Attribution,
    RestrictedUnpickler,
    attribution_instruction_mask,
    attribution_score,
    compute_tables,
    context_spans,
    decode_field,
    final_dataset_records,
    group_of,
    instruction_spans,
    load_attribution,
    pieces_to_text,
    read_annotated_dataset,
    read_final_dataset,
    sentence_spans,
)

# GPL-3.0 data of the paper's authors, read in place beside the repository, never copied.
DATA = Path(__file__).parents[1].parent / "shared" / "data" / "paper_release_mtbench"
FINAL_HEADER = "ID\tPrompt\tResponse\tInstruct&Context\n"
RATED_HEADER = "File\tModel\tPrompt\tReference\tInstruct\tResponse\tRating\n"


# --- TSV files -------------------------------------------------------------------------------


def test_decode_field_undoes_the_papers_escapes():
    assert decode_field("a/nb/tc") == "a\nb\tc"
    assert decode_field('"say ""hi"""') == 'say "hi"'
    assert decode_field('"quoted"') == "quoted"
    assert decode_field('"open only') == '"open only'


def test_read_final_dataset(tmp_path):
    path = tmp_path / "FinalDataset.tsv"
    path.write_text(
        FINAL_HEADER
        + "mtbench_x_1\tDo this./nThen that.\tAnswer/tone\tDo this.\n"
        + "\n"
        + 'lima_author_2\t"He said ""go""."\tok\tHe said\n',
        encoding="utf-8",
    )
    first, second = read_final_dataset(path)
    assert (first.id, first.prompt, first.response) == (
        "mtbench_x_1",
        "Do this.\nThen that.",
        "Answer\tone",
    )
    assert first.annotation == "Do this."
    assert (second.id, second.prompt) == ("lima_author_2", 'He said "go".')


def test_read_final_dataset_errors(tmp_path):
    with pytest.raises(InterpretShiftError, match="does not exist"):
        read_final_dataset(tmp_path / "missing.tsv")
    bad_header = tmp_path / "header.tsv"
    bad_header.write_text("ID\tPrompt\n", encoding="utf-8")
    with pytest.raises(InterpretShiftError, match="line 1: the header lacks column.*Response"):
        read_final_dataset(bad_header)
    short = tmp_path / "short.tsv"
    short.write_text(FINAL_HEADER + "a\tb\tc\td\ne\tf\n", encoding="utf-8")
    with pytest.raises(InterpretShiftError, match="line 3: 2 fields"):
        read_final_dataset(short)
    twice = tmp_path / "twice.tsv"
    twice.write_text(FINAL_HEADER + "a\tb\tc\td\na\tb\tc\td\n", encoding="utf-8")
    with pytest.raises(InterpretShiftError, match="line 3: duplicate ID 'a'"):
        read_final_dataset(twice)


def test_read_annotated_dataset(tmp_path):
    path = tmp_path / "AnnotatedDataset.tsv"
    path.write_text(
        RATED_HEADER
        + "mtbench_x_1.pkl\tvicuna_7B\tp\tr\ti\tSure:/nyes\t4\n"
        + "mtbench_x_1.pkl\talpaca_7B\tp\tr\ti\tno\t-1\n",
        encoding="utf-8",
    )
    first, second = read_annotated_dataset(path)
    assert (first.id, first.model, first.response, first.rating) == (
        "mtbench_x_1",
        "vicuna_7B",
        "Sure:\nyes",
        4,
    )
    assert (second.model, second.rating) == ("alpaca_7B", -1)
    path.write_text(RATED_HEADER + "a.pkl\tm\tp\tr\ti\tx\tgood\n", encoding="utf-8")
    with pytest.raises(InterpretShiftError, match="line 2: Rating 'good' is not a number"):
        read_annotated_dataset(path)


# --- the annotation rule -------------------------------------------------------------------------


def texts(prompt, spans):
    return [prompt[start:end] for start, end in spans]


def test_sentence_spans_split_lines_then_sentences():
    text = "One. Two! Three? Four: five\nNov. 18 is x.y\n\n  Indented line."
    assert texts(text, sentence_spans(text)) == [
        "One.",
        "Two!",
        "Three?",
        "Four:",
        "five",
        "Nov.",
        "18 is x.y",
        "",
        "  Indented line.",
    ]


def test_a_piece_marks_the_whole_first_sentence_containing_it():
    prompt = "Read this. Summarize the text in one line. Then summarize again."
    assert texts(prompt, instruction_spans(prompt, "ummarize")) == [
        "Summarize the text in one line."
    ]
    assert texts(prompt, instruction_spans(prompt, "one line|||again")) == [
        "Summarize the text in one line.",
        "Then summarize again.",
    ]


def test_annotation_fragments_split_on_bars_newlines_and_sentences():
    prompt = "First ask. Second ask.\nThird ask! Fourth: here"
    annotation = "First ask. Fourth:|||Second\nThird&&&here"
    assert texts(prompt, instruction_spans(prompt, annotation)) == [
        "First ask.",
        "Second ask.",
        "Third ask!",
        "Fourth:",
    ]
    assert texts(prompt, context_spans(prompt, annotation)) == ["here"]


def test_input_prefix_is_dropped_and_bare_output_never_counts():
    prompt = "Classify the text.\nInput: The movie was great.\nOutput:"
    assert texts(prompt, instruction_spans(prompt, "Classify|||movie|||Output:")) == [
        "Classify the text.",
        "The movie was great.",
    ]


def test_a_piece_missing_from_the_prompt_is_an_error():
    with pytest.raises(ValueError, match="'Translate' is in no sentence"):
        instruction_spans("Summarize this.", "Translate")


def test_group_of():
    assert group_of("user_oriented_task_12") == "self-instruct"
    assert group_of("lima_author_3") == "lima"
    assert group_of("mtbench_math_111") == "mt-bench"
    assert group_of("other_1") is None


def slow_marked_sentences(prompt, annotation):
    """The rule on strings, the way the paper's code applies it (no offsets)."""
    sentences = []
    for line in prompt.split("\n"):
        sentences.extend(re.split(r"(?<=[.!?:])\s+", line))
    marked = set()
    for fragment in annotation.split("&&&")[0].replace("\n", "|||").split("|||"):
        for piece in re.split(r"(?<=[.!?:])\s+", fragment):
            sentence = next(s for s in sentences if piece in s)
            if sentence.startswith("Input:"):
                sentence = sentence[len("Input:") :]
            if sentence.strip() != "Output:":
                marked.add(sentence.strip())
    return marked


def test_rule_on_every_mt_bench_row_matches_the_string_version():
    rows = read_final_dataset(DATA / "FinalDataset.tsv")
    assert len(rows) == 80
    for row in rows:
        spans = instruction_spans(row.prompt, row.annotation)
        assert set(texts(row.prompt, spans)) == slow_marked_sentences(row.prompt, row.annotation)


def test_final_dataset_rows_become_valid_prompt_records(tmp_path):
    rows = read_final_dataset(DATA / "FinalDataset.tsv")
    ratings = {
        r.id: r
        for r in read_annotated_dataset(DATA / "AnnotatedDataset.tsv")
        if r.model == "vicuna_7B"
    }
    records = final_dataset_records(rows, ratings)
    assert {record.group for record in records} == {"mt-bench"}
    assert all(record.instruction_spans for record in records)
    assert all(record.rating in (None, 1, 2, 3, 4) for record in records)
    by_id = {record.id: record for record in records}
    math_record = by_id["mtbench_math_111"]
    assert texts(math_record.prompt, math_record.instruction_spans) == [
        "What is the area of the triangle?"
    ]
    assert math_record.reference == rows[30].response and math_record.response
    path = tmp_path / "mtbench.jsonl"  # written to tmp only: the data is not copied
    write_prompts(path, records)
    assert read_prompts(path) == records


# --- the attribution pickles ---------------------------------------------------------------------


def unpickle(data: bytes):
    return RestrictedUnpickler(io.BytesIO(data)).load()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_restricted_unpickler_loads_numpy_arrays_and_containers(protocol):
    value = {
        "ID": "x",
        "Input": ["\u2581a", "b"],
        "Explain": np.arange(6, dtype=np.float32).reshape(2, 3),
        "Nested": (1, 2.5, None, True, b"raw", {"s"}, np.float32(1.5)),
    }
    loaded = unpickle(pickle.dumps(value, protocol=protocol))
    assert loaded["Input"] == value["Input"] and loaded["Nested"] == value["Nested"]
    np.testing.assert_array_equal(loaded["Explain"], value["Explain"])
    assert loaded["Explain"].dtype == np.float32


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Evaluates:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


def test_restricted_unpickler_refuses_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"Explain": _RunsCode(marker)})
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load (posix|nt)\.system"):
        unpickle(payload)
    assert not marker.exists()
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load builtins\.eval"):
        unpickle(pickle.dumps(_Evaluates()))
    with pytest.raises(pickle.UnpicklingError, match="refusing to load test_paper._RunsCode"):
        unpickle(pickle.dumps(_RunsCode, protocol=2))


def test_load_attribution_reports_refused_files(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"ID": "x", "Explain": _RunsCode(marker)}))
    with pytest.raises(
        InterpretShiftError, match=r"evil\.pkl.*refusing to load (posix|nt)\.system"
    ):
        load_attribution(path)
    assert not marker.exists()
    path.write_bytes(pickle.dumps({"ID": "x", "Input": ["a"], "Output": ["b"]}))
    with pytest.raises(InterpretShiftError, match="keys ID, Input, Output, Explain"):
        load_attribution(path)
    path.write_bytes(
        pickle.dumps({"ID": "x", "Input": ["a"], "Output": ["b"], "Explain": np.zeros((2, 1))})
    )
    with pytest.raises(InterpretShiftError, match=r"shape \(2, 1\), expected \(1 prompt tokens"):
        load_attribution(path)


def test_released_pickles_have_no_bos_and_rows_are_prompt_tokens():
    for folder in ("ifa_llama_7b", "ifa_vicuna_7b"):
        attribution = load_attribution(DATA / folder / "mtbench_math_111.pkl")
        assert attribution.id == "mtbench_math_111"
        assert attribution.input[:2] == ("\u2581The", "\u2581vertices")  # no "<s>"
        assert attribution.explain.shape == (len(attribution.input), len(attribution.output))
        assert set(np.unique(attribution.explain)) <= set(range(11))


def test_pieces_to_text_offsets():
    pieces = [
        "<s>",
        "\u2581Input",
        ":",
        "<0x0A>",
        "\u2581",
        "<0xE6>",
        "<0x82>",
        "<0x94>",
        "\u2581ok",
    ]
    text, offsets = pieces_to_text(pieces)
    assert text == "Input:\n 悔 ok"
    pieces_text = [text[start:end] for start, end in offsets]
    assert pieces_text == ["", "Input", ":", "\n", " ", "悔", "悔", "悔", " ok"]
    assert offsets[0] == (0, 0)


def test_every_released_prompt_is_rebuilt_exactly_from_its_pieces():
    rows = {row.id: row for row in read_final_dataset(DATA / "FinalDataset.tsv")}
    for path in sorted((DATA / "ifa_vicuna_7b").glob("*.pkl")):
        attribution = load_attribution(path)
        text, offsets = pieces_to_text(attribution.input)
        assert text == rows[attribution.id].prompt
        assert len(offsets) == len(attribution.input)


def test_instruction_mask_on_a_released_attribution():
    rows = {row.id: row for row in read_final_dataset(DATA / "FinalDataset.tsv")}
    attribution = load_attribution(DATA / "ifa_vicuna_7b" / "mtbench_math_111.pkl")
    mask = attribution_instruction_mask(attribution, rows["mtbench_math_111"].annotation)
    marked = [piece for piece, inside in zip(attribution.input, mask) if inside]
    assert "".join(marked).replace("\u2581", " ").strip() == "What is the area of the triangle?"
    assert mask.sum() == 8


# --- scores and tables ---------------------------------------------------------------------------


def slow_score(explain, mask, threshold=7, p=4):
    ratios = []
    for row in explain:
        kept = [x if x > threshold else 0.0 for x in row]
        l1 = sum(kept)
        lp = sum(x**p for x in kept) ** (1 / p)
        ratios.append(l1 / lp if lp else 0.0)
    top = max(ratios)
    values = [r / top if top else 0.0 for r in ratios]
    inside = [v for v, m in zip(values, mask) if m]
    return sum(inside) / math.log2(2 + len(inside))


def synthetic_attribution(identifier, n_response, seed):
    """A prompt of two sentences; the annotation marks the second, the last 4 tokens."""
    pieces = ["\u2581Some", "\u2581context", ".", "\u2581Do", "\u2581the", "\u2581task", "."]
    rng = np.random.default_rng(seed)
    explain = rng.integers(0, 11, size=(len(pieces), n_response)).astype(np.float32)
    return Attribution(identifier, tuple(pieces), tuple(["x"] * n_response), explain)


def test_attribution_score_matches_loops():
    attribution = synthetic_attribution("mtbench_a_1", 12, seed=0)
    expected = slow_score(attribution.explain.tolist(), [0, 0, 0, 1, 1, 1, 1])
    assert attribution_score(attribution, "the task") == pytest.approx(expected, rel=1e-12)
    empty = Attribution("mtbench_a_2", attribution.input, (), np.zeros((7, 0)))
    assert attribution_score(empty, "the task") == 0.0


def write_release(root: Path, specs) -> dict[str, dict[str, float]]:
    """Write a tiny release: specs are (id, n_response, rating or None); returns slow scores."""
    mask = [0, 0, 0, 1, 1, 1, 1]
    final = [FINAL_HEADER]
    rated = [RATED_HEADER]
    scores: dict[str, dict[str, float]] = {"base": {}, "tuned": {}}
    for seed, (identifier, n_response, rating) in enumerate(specs):
        final.append(f"{identifier}\tSome context. Do the task.\tref\tthe task&&&Some context.\n")
        if rating is not None:
            rated.append(f"{identifier}.pkl\tvicuna_7B\tp\tr\ti\tresp\t{rating}\n")
            rated.append(f"{identifier}.pkl\talpaca_7B\tp\tr\ti\tresp\t4\n")
        for side, folder, offset in (("base", "ifa_llama_7b", 100), ("tuned", "ifa_vicuna_7b", 0)):
            attribution = synthetic_attribution(identifier, n_response, seed + offset)
            (root / folder).mkdir(parents=True, exist_ok=True)
            payload = {
                "ID": identifier,
                "Input": list(attribution.input),
                "Reference": "ref",
                "Output": list(attribution.output),
                "Explain": attribution.explain,
            }
            (root / folder / f"{identifier}.pkl").write_bytes(pickle.dumps(payload, protocol=4))
            scores[side][identifier] = slow_score(attribution.explain.tolist(), mask)
    (root / "FinalDataset.tsv").write_text("".join(final), encoding="utf-8")
    (root / "AnnotatedDataset.tsv").write_text("".join(rated), encoding="utf-8")
    return scores


def test_compute_tables_on_a_synthetic_release(tmp_path):
    specs = [
        ("mtbench_a_1", 9, 4),
        ("mtbench_a_2", 9, 2),
        ("mtbench_a_3", 9, 3),
        ("mtbench_a_4", 9, 1),
        ("mtbench_a_5", 9, 1),
        ("mtbench_a_6", 4, 4),  # response under 5 tokens: left out of Table 1 only
        ("mtbench_a_7", 9, 0),  # rating 0: left out of Table 1
        ("mtbench_a_8", 9, -1),  # unrated
        ("lima_author_1", 9, 2),
        ("lima_author_2", 9, None),
    ]
    scores = write_release(tmp_path, specs)
    tables = compute_tables(
        tmp_path, tmp_path / "FinalDataset.tsv", tmp_path / "AnnotatedDataset.tsv"
    )
    assert list(tables.table1) == ["lima", "mt-bench"]
    mt = tables.table1["mt-bench"]
    followed = [scores["tuned"][f"mtbench_a_{i}"] for i in (1, 2, 3)]
    unfollowed = [scores["tuned"][f"mtbench_a_{i}"] for i in (4, 5)]
    assert (mt.n_a, mt.n_b) == (3, 2)
    assert mt.mean_a == pytest.approx(np.mean(followed))
    assert mt.mean_b == pytest.approx(np.mean(unfollowed))
    lima = tables.table1["lima"]
    assert (lima.n_a, lima.n_b) == (1, 0) and math.isnan(lima.p)

    t2 = tables.table2["mt-bench"]
    assert (t2.n_a, t2.n_b) == (8, 8)
    assert t2.mean_b == pytest.approx(
        np.mean([scores["base"][f"mtbench_a_{i}"] for i in range(1, 9)])
    )
    assert t2.mean_a == pytest.approx(
        np.mean([scores["tuned"][f"mtbench_a_{i}"] for i in range(1, 9)])
    )
    assert tables.table2["lima"].n_a == 2

    as_json = tables.to_json()
    assert as_json["table1"]["lima"] == {
        "followed": pytest.approx(scores["tuned"]["lima_author_1"]),
        "unfollowed": None,
        "n_followed": 1,
        "n_unfollowed": 0,
        "p": None,
    }
    assert set(as_json["table2"]["mt-bench"]) == {"base", "tuned", "n", "p"}


# --- the command ---------------------------------------------------------------------------------


def run_cli(argv, capsys):
    from interpret_shift.cli import main

    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, " ".join(captured.err.split())


def test_paper_tables_reproduces_mt_bench(capsys):
    code, out, _ = run_cli(
        [
            "paper-tables",
            "--results",
            str(DATA),
            "--prompts",
            str(DATA / "FinalDataset.tsv"),
            "--ratings",
            str(DATA / "AnnotatedDataset.tsv"),
            "--json",
        ],
        capsys,
    )
    assert code == 0
    result = json.loads(out)
    assert list(result) == ["table1", "table2"]
    assert list(result["table1"]) == ["mt-bench"] and list(result["table2"]) == ["mt-bench"]
    table1, table2 = result["table1"]["mt-bench"], result["table2"]["mt-bench"]
    # The paper's published MT-Bench numbers (DESIGN §4).
    assert table1["followed"] == pytest.approx(1.4584, abs=0.01)
    assert table1["unfollowed"] == pytest.approx(0.9290, abs=0.01)
    assert table2["base"] == pytest.approx(1.1777, abs=0.01)
    assert table2["tuned"] == pytest.approx(1.3440, abs=0.01)
    assert table2["p"] == pytest.approx(0.038, abs=0.01)
    assert (table1["n_followed"], table1["n_unfollowed"], table2["n"]) == (60, 19, 80)
    assert table1["p"] < 0.01


def test_paper_tables_prints_rich_tables(capsys):
    code, out, _ = run_cli(
        [
            "paper-tables",
            "--results",
            str(DATA),
            "--prompts",
            str(DATA / "FinalDataset.tsv"),
            "--ratings",
            str(DATA / "AnnotatedDataset.tsv"),
        ],
        capsys,
    )
    assert code == 0
    assert "Table 1" in out and "Table 2" in out and "mt-bench" in out


def test_paper_tables_names_missing_paths(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")  # keep rich from wrapping long paths
    (tmp_path / "ifa_llama_7b").mkdir()
    code, _, err = run_cli(
        ["paper-tables", "--results", str(tmp_path), "--prompts", "x.tsv", "--ratings", "y.tsv"],
        capsys,
    )
    assert code == 2
    assert "ifa_vicuna_7b does not exist" in err and "<ID>.pkl" in err
    (tmp_path / "ifa_vicuna_7b").mkdir()
    code, _, err = run_cli(
        [
            "paper-tables",
            "--results",
            str(tmp_path),
            "--prompts",
            str(tmp_path / "F.tsv"),
            "--ratings",
            "y.tsv",
        ],
        capsys,
    )
    assert code == 2
    assert "F.tsv does not exist" in err and "Instruct&Context" in err
