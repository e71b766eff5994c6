"""The embedded demo pair: loads, follows instructions (tuned) or not (base), spans are right,
and the training script is reproducible."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch
from demo_chat import TEMPLATE
from safetensors import safe_open
from transformers import AutoModelForCausalLM, AutoTokenizer

from interpret_shift import demo

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "examples" / "train_demo_pair.py"
MAX_BYTES = 25 * 1024 * 1024
# Every phrasing of a task names it with one of these words.
TASK_WORDS = {
    "before": ("before each", "in front", "before every"),
    "after": ("after each", "behind", "after every"),
    "around": ("both sides", "around", "before and after"),
    "tally": ("once", "as many times"),
    "twice": ("twice", "two times"),
}
# The words of the instructions other than X, the word each instruction names.
PHRASING_WORDS = set(
    "put before each word write in front of every add after behind on both sides around and "
    "once for say per as many times there are words twice two".split()
)


def expected(task: str, words: list[str], x: str) -> str:
    """The answer a task gives, computed independently of the training script."""
    answers = {
        "before": " ".join(f"{x} {w}" for w in words),
        "after": " ".join(f"{w} {x}" for w in words),
        "around": " ".join(f"{x} {w} {x}" for w in words),
        "tally": " ".join([x] * len(words)),
        "twice": " ".join([x] * (2 * len(words))),
    }
    return answers[task]


def load_rows() -> list[dict]:
    lines = demo.prompts_path().read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def normalise(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(demo.model_dir("tuned"))


@torch.no_grad()
def greedy(model, tokenizer, prompts: list[str]) -> list[str]:
    """Greedy answers, prompts formatted by the tuned tokenizer's chat template."""
    texts = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True
        )
        for p in prompts
    ]
    tokenizer.padding_side = "left"
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    out = model.generate(**enc, do_sample=False, max_new_tokens=64)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)


def test_api() -> None:
    assert demo.model_dir("base") == demo.DEMO_DIR / "base"
    assert demo.model_dir("tuned").is_dir()
    assert demo.prompts_path().is_file()
    with pytest.raises(ValueError, match="'base' or 'tuned'"):
        demo.model_dir("instruct")


def test_folders_load_and_are_small(tokenizer) -> None:
    total = 0
    for which in ("base", "tuned"):
        folder = demo.model_dir(which)
        names = {p.name for p in folder.iterdir()}
        assert {"config.json", "generation_config.json", "model.safetensors", "README.md"} <= names
        total += sum(p.stat().st_size for p in folder.iterdir())
        model = AutoModelForCausalLM.from_pretrained(folder)
        assert model.config.model_type == "llama"
        assert model.config.architectures == ["LlamaForCausalLM"]
        with safe_open(folder / "model.safetensors", "pt") as f:
            assert {f.get_slice(k).get_dtype() for k in f.keys()} == {"F32"}
        tok = AutoTokenizer.from_pretrained(folder)
        assert tok.is_fast and len(tok) == model.config.vocab_size
        assert "WordNet 3.0 Copyright 2006 by Princeton University" in (
            folder / "README.md"
        ).read_text(encoding="utf-8")
    assert total <= MAX_BYTES, f"demo pair is {total / 2**20:.1f} MiB"
    assert AutoTokenizer.from_pretrained(demo.model_dir("base")).chat_template is None


def test_chat_template_and_offsets(tokenizer) -> None:
    prompt = "Put and between the words: red fox"
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    assert text == TEMPLATE.format(prompt)
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    assert enc["input_ids"][0] != tokenizer.bos_token_id  # no BOS is added
    pieces = [text[a:b] for a, b in enc["offset_mapping"]]
    assert "".join(pieces) == text
    # White space is a token of its own: a word has the same tokens wherever it stands.
    space = tokenizer(" ", add_special_tokens=False)["input_ids"]
    for word in ("fox", "glad", "unsmiling"):
        alone = tokenizer(word, add_special_tokens=False)["input_ids"]
        assert tokenizer(" " + word, add_special_tokens=False)["input_ids"] == space + alone


def test_heldout_spans_point_at_instruction_and_operand() -> None:
    rows = load_rows()
    assert len(rows) >= 100
    assert len({r["id"] for r in rows}) == len(rows)
    cells = Counter()
    for r in rows:
        prompt, task = r["prompt"], r["group"]
        assert set(r) == {
            "id",
            "prompt",
            "response",
            "reference",
            "group",
            "instruction_spans",
            "context_spans",
        }
        assert len(r["instruction_spans"]) == 1 and len(r["context_spans"]) == 1
        (i0, i1), (c0, c1) = r["instruction_spans"][0], r["context_spans"][0]
        assert 0 <= i0 < i1 <= len(prompt) and 0 <= c0 < c1 <= len(prompt)
        assert i1 <= c0 or c1 <= i0, "spans overlap"
        instruction, context = prompt[i0:i1], prompt[c0:c1]
        assert any(w in instruction.lower() for w in TASK_WORDS[task]), (task, instruction)
        words = context.split(" ")
        assert all(re.fullmatch(r"[a-z]+", w) for w in words) and 2 <= len(words) <= 4
        assert prompt[c1 : c1 + 1] in ("", ".", "\n", " ") and prompt[c0 - 1 : c0] in (
            "",
            " ",
            "\n",
        )
        (x,) = [w for w in instruction.lower().split() if w not in PHRASING_WORDS]
        assert r["reference"] == r["response"] == expected(task, words, x)
        position = "start" if i0 == 0 else "end" if i1 >= len(prompt) - 1 else "middle"
        assert r["id"].startswith(f"{task}-{position}-")
        cells[task, position] += 1
    assert set(TASK_WORDS) == {t for t, _ in cells}
    assert len(set(cells.values())) == 1, f"unbalanced: {cells}"


def _load_script():
    spec = importlib.util.spec_from_file_location("train_demo_pair", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_demo_pair"] = module
    spec.loader.exec_module(module)
    return module


def test_heldout_pairs_were_not_tuned_on(tokenizer) -> None:
    """Rebuild the script's word split: each held-out prompt uses only words its task never
    saw in tuning (the script also asserts this against the examples it actually drew)."""
    script = _load_script()
    assert (script.WORDNET_DIR / "index.noun").exists(), "apt-get install wordnet-base"
    recipe = script.Recipe()
    words = script.split_words(recipe, script.WORDNET_DIR, tokenizer)
    rows = script.heldout_rows(script.heldout_examples(recipe, words))
    assert rows == load_rows(), "heldout.jsonl differs from what the script generates"
    for r in rows:
        (i0, i1), (c0, c1) = r["instruction_spans"][0], r["context_spans"][0]
        used = set(r["prompt"][c0:c1].split()) | (
            set(r["prompt"][i0:i1].lower().split()) - PHRASING_WORDS
        )
        assert used <= set(words.heldout[r["group"]]), r["id"]
        assert not used & set(words.for_tuning(r["group"]))


def test_tuned_follows_instructions_and_base_does_not(tokenizer) -> None:
    rows = load_rows()
    prompts, refs = [r["prompt"] for r in rows], [r["reference"] for r in rows]
    acc = {}
    for which in ("base", "tuned"):
        model = AutoModelForCausalLM.from_pretrained(demo.model_dir(which)).eval()
        answers = greedy(model, tokenizer, prompts)
        acc[which] = sum(normalise(a) == normalise(r) for a, r in zip(answers, refs)) / len(rows)
    assert acc["tuned"] >= 0.8, acc
    assert acc["base"] < 0.2, acc


@pytest.mark.slow
def test_script_is_deterministic(tmp_path: Path) -> None:
    """Two reduced runs (--quick) give identical weights, tokenizer and prompt set, bit for bit.

    The full run takes ~20-40 min (docs/demo-pair.md); the reduced one exercises the same code.
    """
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    for run in ("a", "b"):
        cmd = [sys.executable, str(SCRIPT), "--out", str(tmp_path / run), "--quick"]
        subprocess.run(cmd, check=True, env=env, capture_output=True, timeout=900)
    for name in (
        "base/model.safetensors",
        "tuned/model.safetensors",
        "tuned/tokenizer.json",
        "tuned/chat_template.jinja",
        "heldout.jsonl",
    ):
        a, b = (tmp_path / run / name for run in ("a", "b"))
        assert a.read_bytes() == b.read_bytes(), name
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "tuned")
    assert model.config.model_type == "llama"
