"""The paper's Table 3 (head word pairs) and Table 5 / Figure 3 (FFN concepts) from files in
the release's formats, written here; every expected value is worked out by hand below."""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from interpret_shift.cli import main
from interpret_shift.errors import InputError
from interpret_shift.lexicon import wordnet
from interpret_shift.methods.ffn.paper import compute_ffn_tables
from interpret_shift.methods.heads.paper import (
    PAPER_INSTRUCTION_VERBS,
    compute_head_table,
    general_verbs,
    wordnet_example_verbs,
)

# --- Table 3 ---------------------------------------------------------------------------------

HEADER = "Model\tSize\tLayer\tType\tHead\tDim\tRank\tScore\tTopK\n"


def row(model, layer, head, dim, pairs):
    return f"{model}\t7b\t{layer}\tqk\t{head}\t{dim}\t{dim + 1}\t0.5\t{pairs}\n"


# Part aa ends in the middle of vicuna's first row; ab ends in the middle of the last row,
# whose end (without a newline) is all of ac. Parts ad ... aw are empty.
PART_AA = (
    HEADER
    + row("llama", 0, 0, 0, "write=pen|||run=fast")
    + row("llama", 0, 0, 1, "pen=write|||eat=food")
    + row("llama", 1, 0, 0, "walk=slow|||run=fast|||eat=food")
    + row("llama", 1, 0, 1, "walk=slow|||run=fast|||food=eat")
    + HEADER  # repeated header (line 6)
    + "vicuna\t7b\t0\tqk\t0\t0\t1\t0.5\tWrite=Pen|||run=fa"
)
PART_AB = (
    "st|||explain=why\n"  # line 1: the end of aa's last line
    + row("vicuna", 0, 0, 1, "pen=write|||fast=run|||explain=why")
    + row("vicuna", 0, 0, 2, "write=essay")
    + row("vicuna", 0, 0, 3, "essay=write")
    # line 5: ten columns, a bad row; read naively it would give run a counting pair
    + "vicuna\t7b\t1\tqk\t0\t0\t1\t0.5\textra\twalk=slow|||run=fast|||run=fast\n"
    + row("vicuna", 1, 0, 0, "walk=slow|||write=pen")
    + row("vicuna", 1, 0, 1, "walk=slow")
    + row("vicuna", 8, 3, 0, "write=pen")
    + "vicuna\t7b\t8\tqk\t3\t1\t2\t0.5\tpen=wri"
)
PART_AC = "te"
SUFFIXES = [f"a{letter}" for letter in "abcdefghijklmnopqrstuvw"]
INSTRUCTION = ["write", "explain"]
GENERAL = ["run", "eat", "walk"]

# Counting pairs (occurring more than once in a head), worked by hand:
#   llama  L0H0: (pen,write) x2             -> write 1
#   llama  L1H0: (slow,walk) (fast,run) (eat,food) x2 each -> walk 1, run 1, eat 1
#   vicuna L0H0: (pen,write) (fast,run) (explain,why) (essay,write) x2 each
#                                            -> write 2, run 1, explain 1
#   vicuna L1H0: (slow,walk) x2, (pen,write) x1 -> walk 1
#   vicuna L8H3: (pen,write) x2 (the second across ab/ac) -> write 1; llama has no L8H3 (0)
# Layers 0-7: write: L0H0 2>1 -> 1, L1H0 tie        -> 1
#             explain: L0H0 1>0 -> 1, L1H0 tie      -> 1
#             run: L0H0 1>0 -> 1, L1H0 0<1 -> 0     -> 0.5
#             eat: L0H0 tie, L1H0 0<1 -> 0          -> 0
#             walk: tied on both heads              -> left out
#   instruction [1, 1]: mean 1, std 0, n 2; general [0.5, 0]: mean 0.25, std 0.25, n 2.
#   Welch: var_i = 0, var_g = 0.125 (ddof 1); se = sqrt(0.125 / 2) = 0.25; t = 0.75 / 0.25 = 3;
#   df = (0.0625)^2 / (0.0625^2 / 1) = 1; two-sided p for t(1) = 1 - 2 atan(3) / pi.
# Layers 8-15: write 1>0 -> 1; every other verb tied: instruction [1], general none.
LAYERS_0_7 = {
    "instruction": {"mean": 1.0, "std": 0.0, "n": 2},
    "general": {"mean": 0.25, "std": 0.25, "n": 2},
    "t": 3.0,
    "p": 1 - 2 * math.atan(3) / math.pi,
}
LAYERS_8_15 = {
    "instruction": {"mean": 1.0, "std": 0.0, "n": 1},
    "general": {"mean": None, "std": None, "n": 0},
    "t": None,
    "p": None,
}


@pytest.fixture
def heads_dir(tmp_path):
    folder = tmp_path / "bilinear_interpret"
    folder.mkdir()
    contents = {"aa": PART_AA, "ab": PART_AB, "ac": PART_AC}
    for suffix in SUFFIXES:
        (folder / f"bilinear_words_split.tsv{suffix}").write_bytes(
            contents.get(suffix, "").encode("utf-8")
        )
    return folder


def close(actual, expected):
    """Compare nested JSON values, floats within 1e-9."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and set(actual) == set(expected), (actual, expected)
        for key in expected:
            close(actual[key], expected[key])
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, abs=1e-9)
    else:
        assert actual == expected


def test_head_table_from_split_parts(heads_dir):
    table = compute_head_table(heads_dir, general=GENERAL, instruction=INSTRUCTION)
    close(table.to_json(), {"layers 0-7": LAYERS_0_7, "layers 8-15": LAYERS_8_15})


def test_head_table_reports_the_bad_row_only(heads_dir):
    table = compute_head_table(heads_dir, general=GENERAL, instruction=INSTRUCTION)
    # Only the ten-column row: the mid-line cut is joined, the repeated header is skipped.
    assert len(table.warnings) == 1
    assert "bilinear_words_split.tsvab line 5" in table.warnings[0]
    assert "10 columns" in table.warnings[0]


def test_a_multibyte_character_cut_between_parts(tmp_path):
    folder = tmp_path / "parts"
    folder.mkdir()
    text = HEADER + row("vicuna", 0, 0, 0, "write=café") + row("vicuna", 0, 0, 1, "café=write")
    data = text.encode("utf-8")
    cut = data.index("é".encode()) + 1  # between the two bytes of é
    for suffix in SUFFIXES:
        part = {"aa": data[:cut], "ab": data[cut:]}.get(suffix, b"")
        (folder / f"bilinear_words_split.tsv{suffix}").write_bytes(part)
    table = compute_head_table(folder, general=["run", "eat"], instruction=["write", "explain"])
    assert table.warnings == []
    # vicuna write 1 (café pair twice) > llama 0: instruction [1] (explain tied); no general.
    close(table.to_json()["layers 0-7"]["instruction"], {"mean": 1.0, "std": 0.0, "n": 1})


def test_missing_part_is_named(heads_dir):
    (heads_dir / "bilinear_words_split.tsvam").unlink()
    with pytest.raises(InputError, match=r"bilinear_words_split\.tsvam"):
        compute_head_table(heads_dir, general=GENERAL, instruction=INSTRUCTION)


def test_paper_instruction_verbs():
    assert len(PAPER_INSTRUCTION_VERBS) == 38
    assert len(set(PAPER_INSTRUCTION_VERBS)) == 38
    assert {"act", "output", "have", "write"} <= set(PAPER_INSTRUCTION_VERBS)


LICENCE = "  1 This software and database is being provided to you, the LICENSEE, by\n"
DATA_VERB = (
    LICENCE
    + '00001740 29 v 02 Run 0 sprint 0 000 | move fast; "he ran home"\n'
    + '00001741 29 v 01 walk 0 000 | go on foot; "walk to school"\n'
    + "00001742 34 v 01 eat 0 000 | take in solid food\n"  # no example: left out
    + '00001743 41 v 01 do 0 000 | carry out; "do it now"\n'  # a stop word
    + '00001744 36 v 01 write 0 000 | put in writing; "write a letter"\n'  # instruction verb
    + '00001745 38 v 01 zoom 0 000 | move along very quickly; "the car zoomed by"\n'
    + '00001746 36 v 01 bake 0 000 | cook in an oven; "bake bread"\n'
    + '00001747 41 v 01 run 0 000 | direct; "run a business"\n'  # a duplicate lemma
    + '00001748 38 v 02 sprint 0 run 0 000 | run very fast; "he sprinted"\n'
)
FREQUENCY = {
    "run": 0.5, "walk": 0.3, "zoom": 0.1, "bake": 0.1, "sprint": 0.1,
    "eat": 0.9, "do": 1.0, "write": 0.9,
}  # fmt: skip


def test_wordnet_example_verbs(tmp_path):
    (tmp_path / "data.verb").write_text(DATA_VERB, encoding="utf-8")
    # first lemmas, lower-cased, of synsets with a quoted example; duplicates once
    assert wordnet_example_verbs(tmp_path) == [
        "run",
        "walk",
        "do",
        "write",
        "zoom",
        "bake",
        "sprint",
    ]


def test_general_verbs_break_ties_alphabetically(tmp_path):
    (tmp_path / "data.verb").write_text(DATA_VERB, encoding="utf-8")
    # do (stop word) and write (instruction verb) go; zoom, bake and sprint tie at 0.1
    assert general_verbs(tmp_path, size=3, frequency=FREQUENCY.get) == ["run", "walk", "bake"]
    assert general_verbs(tmp_path, size=4, frequency=FREQUENCY.get) == [
        "run", "walk", "bake", "sprint",
    ]  # fmt: skip


def test_general_verbs_need_wordnet(tmp_path):
    with pytest.raises(InputError, match="--general-verbs"):
        general_verbs(tmp_path / "nowhere", frequency=FREQUENCY.get)


@pytest.mark.skipif(
    not (wordnet.DEFAULT_ROOT / "data.verb").is_file(), reason="WordNet is not installed"
)
def test_general_verbs_from_wordnet_end_in_the_tie():
    verbs = general_verbs()
    assert len(verbs) == 3000 == len(set(verbs))
    # 2,998 verbs are more frequent than 13 tied at 4.68e-07 (beeswax, bilge, buttress, ...,
    # transact); alphabetical order takes the first two.
    assert verbs[-2:] == ["beeswax", "bilge"]
    assert "buttress" not in verbs and "transact" not in verbs
    assert not set(verbs) & set(PAPER_INSTRUCTION_VERBS)


# --- Table 5 / Figure 3 ----------------------------------------------------------------------

FFN_HEADER = (
    "Task\tExplainable\tWords\tSummary\tModel\tSize\tLayer\tType\tHead\tRank\tScore\tTopK\n"
)


def ffn_row(label, model, layer, rank):
    return f"{label}\tyes\ta|||b\tsummary\t{model}\t7b\t{layer}\tffn\t0\t{rank}\t1.5\ta|||b\n"


def task_file(seed):
    rows = [
        ffn_row("Writing", "llama", 0, 1),
        ffn_row("math; coding", "llama", 0, 2),
        ffn_row("None", "llama", 4, 300),  # rank 300 is kept
        ffn_row("writing", "llama", 4, 301),  # rank 301 is not
        ffn_row("writing", "alpaca", 0, 1),  # another model
        ffn_row("daily writing", "vicuna", 0, 1),
        ffn_row("translation", "vicuna", 4, 1),
    ]
    if seed % 2 == 0:
        rows.append(ffn_row("none", "vicuna", 5, 2))
    if seed == 0:
        rows.insert(4, FFN_HEADER)  # a repeated header
    if seed == 2:
        rows.insert(2, "writing\tyes\tllama\t7b\t0\n")  # bad row, line 4 (after the header)
    return FFN_HEADER + "".join(rows)


def concept_file(seed):
    rows = [
        ffn_row("Semantic", "llama", 0, 1),
        ffn_row("syntax and semantics", "llama", 4, 1),
        ffn_row("morphology", "vicuna", 0, 1),
        ffn_row("semantic", "vicuna", 4, 1),
    ]
    if seed == 0:
        rows.append(ffn_row("phonology", "vicuna", 1, 5))
    return FFN_HEADER.replace("Task", "Concept", 1) + "".join(rows)


@pytest.fixture
def ffn_dir(tmp_path):
    folder = tmp_path / "linear_interpret"
    folder.mkdir()
    for seed in range(5):
        (folder / f"linear_task_seed{seed}.tsv").write_text(task_file(seed), encoding="utf-8")
        (folder / f"linear_concept_seed{seed}.tsv").write_text(concept_file(seed), "utf-8")
    return folder


def student_p(a, b):
    """Two-sided Student t-test by its formula (pooled variance, df = n_a + n_b - 2)."""
    n_a, n_b = len(a), len(b)
    mean_a, mean_b = sum(a) / n_a, sum(b) / n_b
    ss = sum((x - mean_a) ** 2 for x in a) + sum((x - mean_b) ** 2 for x in b)
    pooled = ss / (n_a + n_b - 2)
    t = (mean_a - mean_b) / math.sqrt(pooled * (1 / n_a + 1 / n_b))
    return t, 2 * stats.t.sf(abs(t), n_a + n_b - 2)


# Kept llama task rows per seed: Writing, math; coding, None (3): writing = math = coding =
# none = 1/3, translation 0. Vicuna: seeds 0, 2, 4 have 3 rows (daily writing, translation,
# none): 1/3 each; seeds 1, 3 have 2 rows: writing = translation = 1/2, none 0.
# writing tuned [1/3, 1/2, 1/3, 1/2, 1/3]: mean 0.4, population std sqrt(1/150).
# Student t: pooled variance = (4 * 0 + (3/225 + 2/100)) / 8 = 1/240,
# t = (1/3 - 0.4) / sqrt(1/240 * 2/5) = -sqrt(600)/15.
def test_table5_task(ffn_dir):
    tables = compute_ffn_tables(ffn_dir)
    task = tables.to_json()["task"]
    assert set(task) == {"writing", "math", "coding", "translation", "none"}
    writing = task["writing"]
    assert writing["base"] == pytest.approx(1 / 3)
    assert writing["base_std"] == pytest.approx(0.0, abs=1e-12)
    assert writing["tuned"] == pytest.approx(0.4)
    assert writing["tuned_std"] == pytest.approx(math.sqrt(1 / 150))
    assert writing["t"] == pytest.approx(-math.sqrt(600) / 15)
    t, p = student_p([1 / 3] * 5, [1 / 3, 1 / 2, 1 / 3, 1 / 2, 1 / 3])
    assert writing["t"] == pytest.approx(t)
    assert writing["p"] == pytest.approx(p)
    assert task["none"]["tuned"] == pytest.approx(0.2)  # [1/3, 0, 1/3, 0, 1/3]
    assert task["translation"]["base"] == 0.0
    assert task["translation"]["tuned"] == pytest.approx(0.4)
    # math: 1/3 vs 0 in every seed; neither side varies, so no t-test
    assert task["math"]["base"] == pytest.approx(1 / 3) and task["math"]["tuned"] == 0.0
    assert task["math"]["p"] is None and task["math"]["t"] is None


def test_table5_linguistic_and_by_layers(ffn_dir):
    tables = compute_ffn_tables(ffn_dir).to_json()
    linguistic = tables["linguistic"]
    # llama: Semantic, syntax and semantics -> semantic 1, syntax 1/2 in every seed.
    # vicuna seed 0: morphology, semantic, phonology (1/3 each); seeds 1-4: 1/2, 1/2, 0.
    assert linguistic["semantic"]["base"] == 1.0
    assert linguistic["syntax"]["base"] == 0.5
    assert linguistic["semantic"]["tuned"] == pytest.approx((1 / 3 + 4 * 0.5) / 5)
    assert linguistic["phonology"]["tuned"] == pytest.approx(1 / 15)
    assert linguistic["phonology"]["base"] == 0.0
    # Layers 0-3 of the task files: llama Writing, math; coding -> writing 1/2;
    # vicuna daily writing -> writing 1. Layers 4-7: llama None (1 row) -> none 1;
    # vicuna translation (+ none in even seeds): none [1/2, 0, 1/2, 0, 1/2] -> 0.3,
    # translation [1/2, 1, 1/2, 1, 1/2] -> 0.7.
    by_layers = tables["by_layers"]["task"]
    assert list(by_layers) == ["layers 0-3", "layers 4-7"]
    assert by_layers["layers 0-3"]["writing"]["base"] == 0.5
    assert by_layers["layers 0-3"]["writing"]["tuned"] == 1.0
    assert by_layers["layers 4-7"]["none"]["base"] == 1.0
    assert by_layers["layers 4-7"]["none"]["tuned"] == pytest.approx(0.3)
    assert by_layers["layers 4-7"]["translation"]["tuned"] == pytest.approx(0.7)
    # linguistic, layers 0-3: vicuna seed 0 has morphology + phonology, else morphology only
    ling = tables["by_layers"]["linguistic"]["layers 0-3"]
    assert ling["morphology"]["tuned"] == pytest.approx((0.5 + 4 * 1.0) / 5)


def test_ffn_bad_row_reported(ffn_dir):
    warnings = compute_ffn_tables(ffn_dir).warnings
    assert len(warnings) == 1  # the repeated header of seed 0 is not one
    assert "linear_task_seed2.tsv line 4" in warnings[0]
    assert "5 columns" in warnings[0]


def test_missing_seed_is_named(ffn_dir):
    (ffn_dir / "linear_concept_seed3.tsv").unlink()
    with pytest.raises(InputError, match=r"linear_concept_seed3\.tsv"):
        compute_ffn_tables(ffn_dir)


# --- the command -----------------------------------------------------------------------------


def test_cli_json_heads_and_ffn(heads_dir, ffn_dir, tmp_path, capsys):
    verbs = tmp_path / "general.txt"
    verbs.write_text("run\neat\nWalk\n", encoding="utf-8")
    code = main(
        ["paper-tables", "--heads", str(heads_dir), "--general-verbs", str(verbs),
         "--ffn", str(ffn_dir), "--json"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0
    output = json.loads(captured.out)
    assert set(output) == {"table3", "table5"}
    # write and explain are paper instruction verbs; no other one occurs in these files.
    close(output["table3"], {"layers 0-7": LAYERS_0_7, "layers 8-15": LAYERS_8_15})
    assert output["table5"]["task"]["writing"]["tuned"] == pytest.approx(0.4)
    assert "bilinear_words_split.tsvab line 5" in captured.err
    assert "linear_task_seed2.tsv line 4" in captured.err


def test_cli_tables_render(heads_dir, ffn_dir, tmp_path, capsys):
    verbs = tmp_path / "general.txt"
    verbs.write_text("run\neat\nwalk\n", encoding="utf-8")
    code = main(
        ["paper-tables", "--heads", str(heads_dir), "--general-verbs", str(verbs),
         "--ffn", str(ffn_dir)]
    )  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0
    assert "Table 3" in out and "layers 8-15" in out and "0.2500" in out
    assert "Table 5" in out and "Figure 3" in out and "phonology" in out


def test_cli_needs_a_table(capsys):
    assert main(["paper-tables"]) == 2
    assert "No table asked for" in capsys.readouterr().err


def test_cli_saliency_inputs_go_together(ffn_dir, tmp_path, capsys):
    assert main(["paper-tables", "--ffn", str(ffn_dir), "--results", str(tmp_path)]) == 2
    assert "--results, --prompts and --ratings together" in capsys.readouterr().err
