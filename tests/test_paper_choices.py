"""The paper's exact choices as options (docs/paper-fidelity.md) and ``--preset paper``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from interpret_shift.cli import main
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import RecordStore
from interpret_shift.core.subject import Subject
from interpret_shift.errors import InputError, InterpretShiftError
from interpret_shift.lexicon.words import WordList, word_token_ids
from interpret_shift.methods.heads.explainer import (
    HeadPatterns,
    WordSpace,
    head_pairs,
    same_word_ids,
)
from interpret_shift.methods.saliency import analysis as sal
from interpret_shift.methods.saliency.explainer import SaliencyExplainer, encode
from interpret_shift.pipeline import PRESETS, plan, preset_options
from interpret_shift.plugins import load_registry

# ---------------------------------------------------------------- the word rule


def test_paper_word_rule_drops_a_bare_leading_space_token(smollm2):
    tokenizer = smollm2.tokenizer
    # SmolLM2 splits digits one by one, so " 2023" starts with "Ġ" alone
    spaced = tokenizer(" 2023", add_special_tokens=False).input_ids
    assert tokenizer.convert_ids_to_tokens(spaced)[0] == "Ġ" and len(spaced) == 5
    # " hello" is one token that carries its space: nothing is dropped
    hello = tokenizer(" hello", add_special_tokens=False).input_ids
    assert tokenizer.convert_ids_to_tokens(hello) == ["Ġhello"]
    # "日本" with a space: 4 tokens, without: 3; the first spaced one is not a bare space
    japan_spaced = tokenizer(" 日本", add_special_tokens=False).input_ids
    japan_bare = tokenizer("日本", add_special_tokens=False).input_ids
    assert len(japan_spaced) == 4 and len(japan_bare) == 3
    assert tokenizer.convert_ids_to_tokens(japan_spaced)[0] != "Ġ"

    paper = word_token_ids(tokenizer, ["2023", "hello", "日本"], "paper")
    assert paper == [spaced[1:], hello, japan_spaced]
    shorter = word_token_ids(tokenizer, ["2023", "hello", "日本"])
    assert shorter == [spaced[1:], hello, japan_bare]  # the rules differ on "日本"
    words = WordList(["2023", "日本"]).tokenized(tokenizer, "paper")
    assert words.token_ids == [spaced[1:], japan_spaced]


def test_an_unknown_word_rule_is_refused():
    with pytest.raises(InterpretShiftError, match="word rule"):
        word_token_ids(tiny_tokenizer(), ["the"], "longest")
    with pytest.raises(InputError, match="word_rule"):
        HeadPatterns(word_rule="longest")


# ---------------------------------------------------------------- self pairs


def test_self_pair_rule_lowercase_or_exact():
    words = WordList(["The", "the", "cat"])
    assert same_word_ids(words, "lowercase").tolist() == [1, 1, 0]
    exact = same_word_ids(words, "exact").tolist()
    assert len(set(exact)) == 3
    # One dimension; every word is a top word by |Q| and by |K|, all activations positive,
    # all similarities 1 (identical vectors) above thresholds of 0.
    Q = torch.tensor([[3.0, 2.0, 1.0]])
    K = torch.tensor([[3.0, 2.0, 1.0]])

    def pairs(rule: str) -> set[tuple[str, str]]:
        space = WordSpace(words, torch.zeros(3, 2), torch.ones(3, 1), torch.zeros(3),
                          torch.from_numpy(same_word_ids(words, rule)))  # fmt: skip
        found = head_pairs(Q, K, space, top_k=3)["pairs"].tolist()
        return {(words.words[q], words.words[k]) for _, q, k in found}

    others = {("The", "cat"), ("cat", "The"), ("the", "cat"), ("cat", "the")}
    assert pairs("lowercase") == others
    assert pairs("exact") == others | {("The", "the"), ("the", "The")}


# ---------------------------------------------------------------- response tokens


def test_joined_and_separate_response_tokens_on_the_tiny_tokenizer():
    tokenizer = tiny_tokenizer()
    vocab = tokenizer.get_vocab()
    raw = "  please translate the text "
    prompt = PromptRecord("p", raw, response=" the sentence ", instruction_spans=[(2, 18)],
                          context_spans=[(19, 27)])  # fmt: skip
    prompt_ids = [vocab[w] for w in ["please", "translate", "the", "text"]]
    response_ids = [vocab["the"], vocab["sentence"]]

    joined = encode(tokenizer, prompt, chat_template=False, response_tokens="joined")
    assert joined.text == "please translate the text" and joined.shift == -2
    assert joined.ids == prompt_ids and joined.response == response_ids
    assert joined.mask(prompt.instruction_spans).tolist() == [True, True, False, False]
    assert joined.mask(prompt.context_spans).tolist() == [False, False, True, True]

    separate = encode(tokenizer, prompt, chat_template=False, response_tokens="separate")
    assert separate.text == raw and separate.shift == 0
    assert separate.ids == prompt_ids and separate.response == response_ids
    assert separate.mask(prompt.instruction_spans).tolist() == [True, True, False, False]

    tokenizer.chat_template = "{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(InterpretShiftError, match="chat_template=false"):
        encode(tokenizer, prompt, chat_template=True, response_tokens="joined")


def test_joined_response_tokens_reach_the_record():
    tokenizer = tiny_tokenizer()
    subject = Subject.from_model(tiny_model("llama"), tokenizer, source="tiny")
    prompt = PromptRecord("p", " explain the water ", response="the day",
                          instruction_spans=[(1, 8)])  # fmt: skip
    explainer = SaliencyExplainer(chat_template=False, response_tokens="joined")
    ((_, record),) = explainer.explain(subject, ["p"], [prompt])
    vocab = tokenizer.get_vocab()
    assert record.arrays["input_ids"].tolist() == [vocab["explain"], vocab["the"], vocab["water"]]
    assert record.arrays["response_ids"].tolist() == [vocab["the"], vocab["day"]]
    assert record.arrays["instruction_mask"].tolist() == [True, False, False]
    assert record.arrays["attribution"].shape == (3, 2)
    assert record.meta["tokens"] == ["explain", "the", "water"]


def test_joined_differs_from_separate_on_byte_level_bpe(smollm2):
    tokenizer = smollm2.tokenizer
    prompt = PromptRecord("p", "Please translate this.", response="Bonjour le monde")
    alone = tokenizer("Please translate this.").input_ids
    whole = tokenizer("Please translate this. Bonjour le monde").input_ids
    assert whole[: len(alone)] == alone
    bare = tokenizer("Bonjour le monde", add_special_tokens=False).input_ids
    joined = encode(tokenizer, prompt, chat_template=False, response_tokens="joined")
    separate = encode(tokenizer, prompt, chat_template=False, response_tokens="separate")
    assert joined.ids == separate.ids == alone
    assert joined.response == whole[len(alone) :] and separate.response == bare
    assert joined.response != separate.response  # "ĠBon..." against "Bon..."


# ---------------------------------------------------------------- epsilon


def test_epsilon_moves_buckets_of_a_hand_worked_column():
    # Column max 2e-7: exactly, 2e-7 / 2e-7 * 10 = 10 and 1e-7 / 2e-7 * 10 = 5.
    # With epsilon 1e-7: 2e-7 / 3e-7 * 10 = 6.67 -> 7 and 1e-7 / 3e-7 * 10 = 3.33 -> 4.
    tiny = np.array([[2e-7], [1e-7], [-1.0]])
    assert sal.quantize(tiny, 10).ravel().tolist() == [10, 5, 0]
    assert sal.quantize(tiny, 10, epsilon=1e-7).ravel().tolist() == [7, 4, 0]
    # Column [1.0, 0.70000001], L = 10, b = 7: exactly, 0.70000001 * 10 = 7.0000001 rounds
    # up to 8 and survives b = 7; with epsilon, 0.70000001 / 1.0000001 * 10 = 6.9999994
    # rounds up to 7 and is dropped. The max: 10 either way (1 / 1.0000001 * 10 = 9.999999).
    # (The brief's [1.0, 0.7] flips nothing: 7.0 and 6.9999993 both round up to 7.)
    column = np.array([[1.0], [0.70000001]])
    assert sal.quantize(column, 10).ravel().tolist() == [10, 8]
    assert sal.quantize(column, 10, epsilon=1e-7).ravel().tolist() == [10, 7]
    assert sal.sparsify(column, 10, 7).ravel().tolist() == [10, 8]
    assert sal.sparsify(column, 10, 7, epsilon=1e-7).ravel().tolist() == [10, 0]
    assert sal.quantize(np.array([[1.0], [0.7]]), 10, epsilon=1e-7).ravel().tolist() == [10, 7]


def test_density_before_normalising():
    sparse = np.array([[10.0, 10.0], [10.0, 0.0], [0.0, 0.0]])
    # row 0: l1 = 20, l4 = (2 * 10^4)^(1/4) = 10 * 2^(1/4); ratio 2^(3/4); row 1: 1; row 2: 0
    raw = sal.density(sparse, 4, normalise=False)
    np.testing.assert_allclose(raw, [2**0.75, 1.0, 0.0])
    np.testing.assert_allclose(sal.density(sparse, 4), [1.0, 2**-0.75, 0.0])


# ---------------------------------------------------------------- the preset


def test_preset_options_user_wins_and_only_explainers_run():
    merged = preset_options("paper", {"ffn": {"top_k": 5}}, ["ffn", "heads"])
    assert set(merged) == {"ffn", "heads"}
    assert merged["ffn"] == {**PRESETS["paper"]["ffn"], "top_k": 5}
    assert merged["heads"]["baseline"] is None and merged["heads"]["top_k"] == 30
    assert preset_options(None, {"ffn": {"top_k": 5}}) == {"ffn": {"top_k": 5}}
    assert PRESETS["paper"]["saliency"]["epsilon"] == 1e-7
    with pytest.raises(InputError, match="preset"):
        preset_options("papers", {}, ["ffn"])


def test_paper_preset_options_are_all_valid():
    """Every option of the preset passes the registry's checks (names, types, ranges)."""
    registry = load_registry()
    planned = plan(registry, ["saliency", "heads", "ffn"],
                   preset_options("paper", {}, ["saliency", "heads", "ffn"]))  # fmt: skip
    configs = {p.explainer.name: p.explainer.config for p in planned}
    assert configs["saliency"].response_tokens == "joined" and not configs["saliency"].chat_template
    assert configs["heads"].self_pairs == "exact" and configs["heads"].word_rule == "paper"
    assert configs["ffn"].svd == "exact" and configs["ffn"].components == 10
    saliency_diff = planned[0].diff_options
    assert (saliency_diff["epsilon"], saliency_diff["levels"]) == (1e-7, 10)
    assert (saliency_diff["threshold"], saliency_diff["norm_p"]) == (7, 4.0)


def _record_config(out, side):
    store = RecordStore(out / "records" / "ffn" / side)
    keys = list(store.keys())
    assert keys, f"no ffn records for {side}"
    return store.load(keys[0]).meta["config"]


@pytest.fixture(scope="module")
def prompts_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("prompts") / "prompts.jsonl"
    row = {"id": "p1", "prompt": "Please translate the text.", "response": "happy",
           "instruction_spans": [[0, 16]], "group": "g"}  # fmt: skip
    path.write_text(json.dumps(row) + "\n")
    return path


def test_cli_preset_paper_sets_ffn_options_and_set_overrides(tmp_path, prompts_file):
    common = ["--base", "demo:base", "--tuned", "demo:tuned", "--prompts", str(prompts_file),
              "--explainers", "ffn", "--set", "ffn.layers=[0]"]  # fmt: skip
    out = tmp_path / "paper"
    assert main(["compare", *common, "--out", str(out), "--preset", "paper"]) == 0
    for side in ("base", "tuned"):
        config = _record_config(out, side)
        assert (config["top_k"], config["components"], config["svd"]) == (20, 10, "exact")
        assert config["word_rule"] == "paper"
    assert json.loads((out / "summary.json").read_text())["preset"] == "paper"

    override = tmp_path / "override"
    code = main(["compare", *common, "--out", str(override), "--preset", "paper",
                 "--set", "ffn.top_k=5"])  # fmt: skip
    assert code == 0
    config = _record_config(override, "base")
    assert (config["top_k"], config["components"], config["svd"]) == (5, 10, "exact")

    plain = tmp_path / "plain"
    assert main(["compare", *common, "--out", str(plain)]) == 0
    config = _record_config(plain, "base")
    assert (config["top_k"], config["components"], config["svd"]) == (30, 50, "auto")
    assert json.loads((plain / "summary.json").read_text())["preset"] is None


def test_cli_explain_with_preset_and_an_unknown_preset(tmp_path, prompts_file, capsys):
    out = tmp_path / "one"
    args = ["explain", "demo:base", "--prompts", str(prompts_file), "--explainers", "ffn",
            "--set", "ffn.layers=[1]", "--out", str(out)]  # fmt: skip
    assert main([*args, "--preset", "paper"]) == 0
    (folder,) = (out / "records" / "ffn").iterdir()
    config = _record_config(out, folder.name)
    assert (config["top_k"], config["components"], config["svd"]) == (20, 10, "exact")
    assert main([*args[:-1], str(tmp_path / "bad"), "--preset", "papers"]) == 2
    assert "Unknown preset 'papers'" in capsys.readouterr().err


def test_saliency_diff_options_reach_the_metrics():
    from interpret_shift.core.method import DiffContext
    from interpret_shift.methods.saliency import metrics

    subject = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="tiny")
    prompts = [PromptRecord(f"p{i}", text, response="the day", group="g",
                            instruction_spans=[(0, 7)])
               for i, text in enumerate(["explain the water", "explain what you see"])]  # fmt: skip
    records = dict(SaliencyExplainer(chat_template=False).explain(subject, ["p0", "p1"], prompts))
    options = {"epsilon": 1e-7, "levels": 5, "threshold": 2, "norm_p": 2.0}
    context = DiffContext("saliency", options)
    (first, _) = metrics.heatmaps(records, records, context)
    s = records["p0"].arrays["attribution"][records["p0"].arrays["prompt_mask"]]
    raw = sal.density(sal.sparsify(s, 5, 2, 1e-7), 2.0, normalise=False)
    np.testing.assert_allclose(first["base_density_raw"], raw)
    np.testing.assert_allclose(first["base_density"], raw / raw.max())
    scores = metrics.instruction_scores(records, records, context)
    assert scores["settings"] == options
    with pytest.raises(InputError, match="saliency.epsilon"):
        plan(load_registry(), ["saliency"], {"saliency": {"epsilon": -1.0}})
