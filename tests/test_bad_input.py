"""Malformed inputs (issue 13): every one ends in exit code 2 and a one-paragraph message
that names the input and the fault, with no traceback and no new file in the output folder.

The command line is called in-process (``interpret_shift.cli.main``). Inputs are written
into ``tmp_path``; the few models a case needs (an encoder, a GPT-2, a shallower Llama, ...)
are built once per session from tiny configs, with the demo pair's tokenizer. Cases that
must get past the checks that need no model use cheap explainer settings.

Each case returns the argv, the patterns the message must match (regular expressions,
case-insensitive, all required) and the folder that must hold no new file afterwards.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from interpret_shift.cli import main

DEMO = Path(__file__).resolve().parents[1] / "interpret_shift" / "demo"
DEMO_BASE = DEMO / "base"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")

PROMPT = "Give a synonym of the word: glad"  # 32 characters
GOOD_ROW = {
    "id": "p1",
    "prompt": PROMPT,
    "response": "happy",
    "instruction_spans": [[0, 26]],
    "context_spans": [[28, 32]],
}

# Options that keep a run that gets past validation cheap (one layer, two components).
CHEAP_FFN = ["--explainers", "ffn", "--set", "ffn.components=2", "--set", "ffn.layers=[0]"]
CHEAP_HEADS = ["--explainers", "heads", "--set", "heads.layers=[0]", "--set",
               "heads.n_words=50", "--set", "heads.baseline=20", "--set", "heads.top_k=5"]  # fmt: skip


# --------------------------------------------------------------------------- models


class Models:
    """Model folders built on first use, shared by the whole session."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.built: dict[str, Path] = {}

    def _once(self, name: str, build: Callable[[Path], None]) -> Path:
        if name not in self.built:
            folder = self.root / name
            build(folder)
            self.built[name] = folder
        return self.built[name]

    @staticmethod
    def _tokenizer_into(folder: Path) -> None:
        for name in TOKENIZER_FILES:
            shutil.copy(DEMO_BASE / name, folder / name)

    def demo_copy(self) -> Path:
        """An unchanged copy of demo:base (the control shows that it loads)."""
        return self._once("demo-copy", lambda f: shutil.copytree(DEMO_BASE, f))

    def bert(self) -> Path:
        def build(folder: Path) -> None:
            import torch
            from transformers import BertConfig, BertForMaskedLM

            torch.manual_seed(0)
            config = BertConfig(vocab_size=4096, hidden_size=32, num_hidden_layers=1,
                                num_attention_heads=2, intermediate_size=48,
                                max_position_embeddings=64)  # fmt: skip
            BertForMaskedLM(config).save_pretrained(folder)
            self._tokenizer_into(folder)

        return self._once("bert", build)

    def gpt2(self) -> Path:
        """A GPT-2 with the demo's vocabulary and depth: only the architecture differs."""

        def build(folder: Path) -> None:
            import torch
            from transformers import GPT2Config, GPT2LMHeadModel

            torch.manual_seed(0)
            config = GPT2Config(vocab_size=4096, n_embd=32, n_layer=4, n_head=2, n_inner=48,
                                n_positions=256, bos_token_id=0, eos_token_id=0)  # fmt: skip
            GPT2LMHeadModel(config).save_pretrained(folder)
            self._tokenizer_into(folder)

        return self._once("gpt2", build)

    def shallow(self) -> Path:
        """The demo's architecture and vocabulary with 2 layers instead of 4."""

        def build(folder: Path) -> None:
            import torch
            from transformers import AutoConfig, AutoModelForCausalLM

            torch.manual_seed(0)
            config = AutoConfig.from_pretrained(DEMO_BASE)
            config.num_hidden_layers = 2
            AutoModelForCausalLM.from_config(config).save_pretrained(folder)
            self._tokenizer_into(folder)

        return self._once("shallow", build)

    def wider_vocab(self) -> Path:
        """demo:base with 4 tokens added to the tokenizer and the embeddings resized."""

        def build(folder: Path) -> None:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(DEMO_BASE)
            tokenizer.add_tokens(["<extra-a>", "<extra-b>", "<extra-c>", "<extra-d>"])
            model = AutoModelForCausalLM.from_pretrained(DEMO_BASE)
            model.resize_token_embeddings(len(tokenizer))
            model.save_pretrained(folder)
            tokenizer.save_pretrained(folder)

        return self._once("wider-vocab", build)

    def short_embeddings(self) -> Path:
        """demo:base whose embedding matrix has 4000 rows; its tokenizer still has 4096."""

        def build(folder: Path) -> None:
            from safetensors.torch import load_file, save_file

            shutil.copytree(DEMO_BASE, folder)
            tensors = load_file(folder / "model.safetensors")
            for name, tensor in list(tensors.items()):
                if tensor.shape[0] == 4096:  # embed_tokens (and lm_head if untied)
                    tensors[name] = tensor[:4000].clone()
            save_file(tensors, folder / "model.safetensors", metadata={"format": "pt"})
            config = json.loads((folder / "config.json").read_text())
            config["vocab_size"] = 4000
            (folder / "config.json").write_text(json.dumps(config))

        return self._once("short-embeddings", build)

    def resume_dir(self) -> Path:
        """A finished cheap compare of the demo pair (source for resume and report cases)."""

        def build(folder: Path) -> None:
            prompts = self.root / "resume-prompts.jsonl"
            prompts.write_text(json.dumps(GOOD_ROW) + "\n")
            code = main(["compare", "--base", "demo:base", "--tuned", "demo:tuned",
                         "--prompts", str(prompts), "--out", str(folder), *CHEAP_FFN])  # fmt: skip
            assert code == 0, "the cheap compare of the demo pair (fixture) failed"
            assert (folder / "summary.json").is_file()

        return self._once("resume", build)


@pytest.fixture(scope="session")
def models(tmp_path_factory) -> Models:
    return Models(tmp_path_factory.mktemp("bad-input-models"))


# --------------------------------------------------------------------------- cases


@dataclass
class Env:
    tmp: Path
    models: Models
    cleanups: list[Callable[[], None]] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.tmp / "out"

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        return path

    def good_prompts(self) -> Path:
        return self.write("good.jsonl", json.dumps(GOOD_ROW) + "\n")

    def demo_copy(self, name: str = "model", drop: tuple[str, ...] = ()) -> Path:
        folder = self.tmp / name
        shutil.copytree(DEMO_BASE, folder)
        for file in drop:
            (folder / file).unlink()
        return folder

    def report_dir(self) -> Path:
        """A copy of a finished output folder, without its report.html."""
        folder = self.tmp / "done"
        shutil.copytree(self.models.resume_dir(), folder)
        (folder / "report.html").unlink()
        return folder


@dataclass
class Run:
    argv: list[str]
    expect: list[str]  # regular expressions the message must all match (case-insensitive)
    watch: Path | None = None  # default: Env.out
    reject: list[str] = field(default_factory=list)  # patterns naming a wrong fault


CASES: list = []


def case(case_id: str):
    def register(function: Callable[[Env], Run]) -> Callable[[Env], Run]:
        CASES.append(pytest.param(function, id=case_id))
        return function

    return register


def e(text: object) -> str:
    """A literal in an expected pattern."""
    return re.escape(str(text))


def compare_args(env: Env, *extra: str, base: str = "demo:base", tuned: str = "demo:tuned",
                 prompts: Path | str | None = None) -> list[str]:  # fmt: skip
    prompts = env.good_prompts() if prompts is None else prompts
    return ["compare", "--base", str(base), "--tuned", str(tuned), "--prompts", str(prompts),
            "--out", str(env.out), *extra]  # fmt: skip


def explain_args(env: Env, model: str | Path = "demo:base", *extra: str) -> list[str]:
    return ["explain", str(model), "--prompts", str(env.good_prompts()), "--out", str(env.out),
            *extra]  # fmt: skip


# ---- prompt files (compare fails on them before any model is loaded)


def prompt_case(case_id: str, content: str | bytes | Callable[[], str], *expect: str):
    def build(env: Env) -> Run:
        text = content() if callable(content) else content
        path = env.write("prompts.jsonl", text)
        return Run(compare_args(env, *CHEAP_FFN, prompts=path), [e(path.name), *expect])

    case(f"prompts-{case_id}")(build)


def row(**changes) -> str:
    """GOOD_ROW with fields changed (a value of ... removes the field), as one JSONL line."""
    data = dict(GOOD_ROW)
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return json.dumps(data) + "\n"


prompt_case("empty-file", "", r"no prompts|empty")
prompt_case("only-blank-lines", "\n   \n\t\n\n", r"no prompts|empty")
prompt_case("not-json", "this is not json\n", r"line 1", r"json")
prompt_case("json-array-per-line", '["p1", "Give a synonym"]\n', r"line 1", r"object")
prompt_case("json-string-per-line", '"just a string"\n', r"line 1", r"object")
prompt_case("missing-id", lambda: row(id=...), r"line 1", r"\bid\b", r"missing")
prompt_case("missing-prompt", lambda: row(prompt=...), r"line 1", r"\bprompt\b", r"missing")
prompt_case("empty-prompt", lambda: row(prompt=""), r"line 1", r"\bprompt\b", r"empty")
prompt_case("duplicate-ids", lambda: row() + row(response="glad"),
            r"line 2", r"duplicate", r"p1")  # fmt: skip
prompt_case("id-not-a-string", lambda: row(id=7), r"line 1", r"\bid\b", r"string")
prompt_case("id-empty", lambda: row(id=""), r"line 1", r"\bid\b", r"empty")
prompt_case("bad-row-on-line-3", lambda: row() + "\n" + row(id="p2", prompt=""),
            r"line 3", r"\bprompt\b")  # fmt: skip
prompt_case("span-out-of-range", lambda: row(instruction_spans=[[0, 50]]),
            r"instruction_spans", r"50", r"out of range")  # fmt: skip
prompt_case("span-negative-start", lambda: row(context_spans=[[-3, 4]]),
            r"context_spans", r"-3", r"out of range")  # fmt: skip
prompt_case("span-end-before-start", lambda: row(instruction_spans=[[20, 5]]),
            r"instruction_spans", r"20, 5", r"ends before")  # fmt: skip
prompt_case("span-empty", lambda: row(instruction_spans=[[5, 5]]),
            r"instruction_spans", r"5, 5", r"ends before|empty")  # fmt: skip
prompt_case("span-not-a-pair", lambda: row(instruction_spans=[[1, 2, 3]]),
            r"instruction_spans", r"1, 2, 3", r"\[start, end\] pair")  # fmt: skip
prompt_case("span-bare-pair", lambda: row(instruction_spans=[0, 26]),
            r"instruction_spans", r"pair")  # fmt: skip
prompt_case("spans-not-a-list", lambda: row(context_spans="28-32"),
            r"context_spans", r"list of \[start, end\]")  # fmt: skip
prompt_case("span-float-offsets", lambda: row(instruction_spans=[[0.5, 26]]),
            r"instruction_spans", r"integer")  # fmt: skip
prompt_case("rating-not-int", lambda: row(rating="good"), r"rating", r"good", r"integer")
prompt_case("rating-out-of-range", lambda: row(rating=5), r"rating", r"\b5\b", r"0\.\.4")
prompt_case("rating-negative", lambda: row(rating=-1), r"rating", r"-1", r"0\.\.4")
prompt_case("rating-bool", lambda: row(rating=True), r"rating", r"true", r"integer")
prompt_case("response-not-a-string", lambda: row(response=3), r"response", r"string")
# docs/formats.md lists the fields and allows no others; the reader refuses unknown ones.
prompt_case("unknown-field", lambda: row(colour="red"), r"colour", r"unknown")
prompt_case("invalid-utf8", b'{"id": "p1", "prompt": "caf' + b"\xe9" + b'"}\n',
            r"utf-8")  # fmt: skip
prompt_case("binary-file", bytes(range(256)) * 4, r"utf-8|binary|not .*text")


@case("prompts-too-long-for-the-model")
def _(env: Env) -> Run:
    # the demo models have 256 positions; this prompt and response take more
    path = env.write("prompts.jsonl", row(id="long-one", prompt="glad " * 400))
    extra = ["--explainers", "saliency", "--set", "saliency.max_new_tokens=1"]
    return Run(compare_args(env, *extra, prompts=path),
               [r"long-one", r"256", r"positions|too long"])  # fmt: skip


@case("prompts-is-a-folder")
def _(env: Env) -> Run:
    folder = env.tmp / "prompts.d"
    folder.mkdir()
    return Run(compare_args(env, *CHEAP_FFN, prompts=folder), [e(folder), r"folder|directory"])


@case("prompts-missing-file")
def _(env: Env) -> Run:
    path = env.tmp / "nosuch.jsonl"
    return Run(compare_args(env, *CHEAP_FFN, prompts=path), [e(path), r"does not exist|no such"])


# ---- options (checked before prompts and models)


def option_case(case_id: str, extra: list[str], *expect: str):
    case(f"option-{case_id}")(lambda env: Run(compare_args(env, *extra), list(expect)))


option_case("set-without-equals", ["--set", "heads.top_k"], r"heads\.top_k", r"form")
option_case("set-without-dot", ["--set", "top_k=5"], r"top_k=5", r"form")
option_case("set-unknown-explainer", ["--set", "nosuch.x=1"], r"'nosuch'",
            r"not among|unknown")  # fmt: skip
option_case("set-explainer-not-run", ["--explainers", "ffn", "--set", "heads.top_k=5"],
            r"'heads'", r"not among")  # fmt: skip
option_case("set-unknown-option", ["--set", "heads.nosuch=1"], r"heads", r"'nosuch'",
            r"no option|unknown")  # fmt: skip
option_case("heads-top_k-negative", ["--set", "heads.top_k=-5"], r"heads\.top_k", r"-5",
            r"out of range|at least")  # fmt: skip
option_case("heads-top_k-zero", ["--set", "heads.top_k=0"], r"heads\.top_k", r"\b0\b",
            r"out of range|at least")  # fmt: skip
option_case("heads-top_k-text", ["--set", "heads.top_k=abc"], r"heads\.top_k", r"abc",
            r"integer")  # fmt: skip
option_case("heads-top_k-float", ["--set", "heads.top_k=1.5"], r"heads\.top_k", r"1\.5",
            r"integer")  # fmt: skip
option_case("heads-top_k-bool", ["--set", "heads.top_k=true"], r"heads\.top_k", r"true",
            r"integer")  # fmt: skip
# the value looks like console markup: the message must still show it
option_case("heads-top_k-markup", ["--set", "heads.top_k=[bold]"], r"heads\.top_k",
            r"\[bold\]", r"integer")  # fmt: skip
option_case("heads-baseline-negative", ["--set", "heads.baseline=-1"], r"heads\.baseline",
            r"-1", r"out of range|at least")  # fmt: skip
option_case("heads-z-negative", ["--set", "heads.z=-2"], r"heads\.z", r"-2",
            r"out of range|at least")  # fmt: skip
option_case("heads-layers-not-a-list", ["--set", "heads.layers=abc"], r"heads\.layers",
            r"abc", r"list")  # fmt: skip
option_case("ffn-power_iters-negative", ["--set", "ffn.power_iters=-1"], r"ffn\.power_iters",
            r"-1", r"out of range|at least")  # fmt: skip
option_case("ffn-components-zero", ["--set", "ffn.components=0"], r"ffn\.components",
            r"\b0\b", r"out of range|at least")  # fmt: skip
option_case("ffn-svd-unknown", ["--set", "ffn.svd=nosuch"], r"svd", r"'nosuch'",
            r"unknown|one of")  # fmt: skip
option_case("ffn-annotator-unknown", ["--set", "ffn.annotator=nosuch"], r"annotator",
            r"'nosuch'", r"unknown")  # fmt: skip
option_case("saliency-max_new_tokens-negative", ["--set", "saliency.max_new_tokens=-1"],
            r"max_new_tokens", r"-1", r"positive|out of range|at least")  # fmt: skip
option_case("saliency-max_new_tokens-zero", ["--set", "saliency.max_new_tokens=0"],
            r"max_new_tokens", r"\b0\b", r"positive|out of range|at least")  # fmt: skip
option_case("saliency-target-unknown", ["--set", "saliency.target=nosuch"], r"target",
            r"'nosuch'", r"unknown|one of")  # fmt: skip
option_case("explainers-unknown", ["--explainers", "nosuch"], r"'nosuch'", r"unknown")
option_case("explainers-empty", ["--explainers", ""], r"--explainers", r"empty|no explainer")
option_case("explainers-only-commas", ["--explainers", ",,"], r"--explainers",
            r"empty|no explainer")  # fmt: skip
option_case("dtype-unknown", ["--dtype", "nosuch"], r"--dtype", r"'nosuch'", r"invalid choice")


@case("option-out-missing")
def _(env: Env) -> Run:
    argv = compare_args(env)
    index = argv.index("--out")
    del argv[index : index + 2]
    return Run(argv, [r"--out", r"required"])


# ---- options only a loaded model can check


@case("option-attn-unknown")
def _(env: Env) -> Run:
    return Run(compare_args(env, *CHEAP_FFN, "--attn", "nosuch"),
               [r"(?<![\w-])nosuch(?![\w-])", r"attn|attention"])  # fmt: skip


@case("option-heads-layers-99")
def _(env: Env) -> Run:
    extra = [*CHEAP_HEADS[:2], "--set", "heads.layers=[99]", *CHEAP_HEADS[4:]]
    return Run(compare_args(env, *extra), [r"\b99\b", r"layer", r"does not exist|out of range"])


@case("option-ffn-layers-negative")
def _(env: Env) -> Run:
    extra = ["--explainers", "ffn", "--set", "ffn.components=2", "--set", "ffn.layers=[-1]"]
    return Run(compare_args(env, *extra), [r"-1", r"layer", r"does not exist|out of range"])


@case("option-heads-similarity-unknown")
def _(env: Env) -> Run:
    return Run(compare_args(env, *CHEAP_HEADS, "--set", "heads.similarity=nosuch"),
               [r"similarity", r"'nosuch'", r"unknown"])  # fmt: skip


@case("option-ffn-words-unknown")
def _(env: Env) -> Run:
    return Run(compare_args(env, *CHEAP_FFN, "--set", "ffn.words=nosuch"),
               [r"word", r"'nosuch'", r"unknown"])  # fmt: skip


@case("option-heads-words-file-missing")
def _(env: Env) -> Run:
    path = env.tmp / "nosuch-words.txt"
    return Run(compare_args(env, *CHEAP_HEADS, "--set", "heads.words=file", "--set",
                            f"heads.words_path={path}"),
               [e(path), r"does not exist|not found|no such|no word file|missing"])  # fmt: skip


@case("option-gguf-file-missing")
def _(env: Env) -> Run:
    folder = env.demo_copy()
    return Run(
        compare_args(env, *CHEAP_FFN, "--gguf-file", "nosuch.gguf", base=folder),
        [r"nosuch\.gguf", r"does not exist|not found|no such|no file|does not appear"],
        reject=[r"network"],
    )  # the folder is local: the hub has nothing to do with it


# ---- model folders (the base is the bad one; prompts and options are valid)


def model_case(case_id: str, make: Callable[[Env], Path | str], *expect: str | Callable):
    def build(env: Env) -> Run:
        base = make(env)
        patterns = [p(base) if callable(p) else p for p in expect]
        return Run(compare_args(env, *CHEAP_FFN, base=base), patterns)

    case(f"model-{case_id}")(build)


def named(path) -> str:
    return e(path)


model_case("missing-path", lambda env: env.tmp / "nosuch-model", named,
           r"does not exist|no model")  # fmt: skip
model_case("bare-name-offline", lambda env: "nosuch-model-name", r"nosuch-model-name",
           r"hub|network|not found|does not exist")  # fmt: skip
model_case(
    "folder-without-config",
    lambda env: env.demo_copy(drop=("config.json",)),
    named,
    r"config\.json",
)
model_case(
    "no-tokenizer-files", lambda env: env.demo_copy(drop=TOKENIZER_FILES), named, r"tokenizer"
)
model_case("no-weights-file",
           lambda env: env.demo_copy(drop=("model.safetensors",)), named,
           r"weights|safetensors|no file")  # fmt: skip


def _edit_config(text: str):
    def make(env: Env) -> Path:
        folder = env.demo_copy()
        (folder / "config.json").write_text(text)
        return folder

    return make


model_case("config-invalid-json", _edit_config('{"model_type": "llama", '), named,
           r"config\.json|json")  # fmt: skip
model_case("config-json-list", _edit_config("[]"), named, r"config")
model_case("config-without-model_type", _edit_config('{"hidden_size": 192}'), named,
           r"model_type")  # fmt: skip


def _auto_map(env: Env) -> Path:
    folder = env.demo_copy()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "nosuch-arch",
        "architectures": ["NosuchForCausalLM"],
        "auto_map": {"AutoConfig": "modeling_nosuch.NosuchConfig",
                     "AutoModelForCausalLM": "modeling_nosuch.NosuchForCausalLM"},
    }))  # fmt: skip
    return folder


model_case("auto_map-needs-remote-code", _auto_map, named, r"--trust-remote-code")
model_case("encoder-only", lambda env: env.models.bert(), named, r"not a causal")
model_case("gguf-missing", lambda env: env.tmp / "nosuch.gguf", named,
           r"does not exist|no model|not found")  # fmt: skip
model_case("gguf-not-gguf", lambda env: env.write("fake.gguf", "not a gguf file\n"),
           r"fake\.gguf", r"gguf")  # fmt: skip


def _truncated_weights(size: int):
    def make(env: Env) -> Path:
        folder = env.demo_copy()
        path = folder / "model.safetensors"
        with open(path, "r+b") as file:
            file.truncate(size if size >= 0 else path.stat().st_size // 2)
        return folder

    return make


model_case("weights-truncated", _truncated_weights(-1), named, r"damaged|truncated|could not")
model_case("weights-empty-file", _truncated_weights(0), named, r"damaged|truncated|could not")


def _mismatched_shape(env: Env) -> Path:
    folder = env.demo_copy()
    config = json.loads((folder / "config.json").read_text())
    config["intermediate_size"] = 256  # the weights have 512
    (folder / "config.json").write_text(json.dumps(config))
    return folder


model_case("config-shape-mismatch", _mismatched_shape, named, r"size|shape|mismatch")


def _more_layers(env: Env) -> Path:
    folder = env.demo_copy()
    config = json.loads((folder / "config.json").read_text())
    config["num_hidden_layers"] = 6  # the weights hold 4: layers 4 and 5 would be random
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@case("model-config-more-layers-than-weights")
def _(env: Env) -> Run:
    # explain (one model), so that no pair check can refuse it for another reason
    folder = _more_layers(env)
    return Run(explain_args(env, folder, *CHEAP_FFN), [e(folder), r"missing|not .*found"])


model_case("demo-unknown", lambda env: "demo:nosuch", r"demo:nosuch", r"unknown")
model_case("tokenizer-larger-than-embeddings", lambda env: env.models.short_embeddings(),
           named, r"tokenizer", r"embedding", r"4096", r"4000")  # fmt: skip


@case("model-base-weights-missing")
def _(env: Env) -> Run:
    path = env.tmp / "nosuch-weights"
    return Run(compare_args(env, *CHEAP_FFN, "--base-weights", str(path)),
               [e(path), r"safetensors|does not exist"])  # fmt: skip


@case("model-tuned-weights-without-safetensors")
def _(env: Env) -> Run:
    folder = env.tmp / "empty-weights"
    folder.mkdir()
    return Run(compare_args(env, *CHEAP_FFN, "--tuned-weights", str(folder)),
               [e(folder), r"safetensors"])  # fmt: skip


@case("model-base-weights-of-other-model")
def _(env: Env) -> Run:
    other = DEMO / "tuned"
    return Run(compare_args(env, *CHEAP_FFN, "--base-weights", str(other)),
               [e(other), r"not those|differ"])  # fmt: skip


# ---- pairs


@case("pair-different-architectures")
def _(env: Env) -> Run:
    tuned = env.models.gpt2()
    return Run(compare_args(env, *CHEAP_FFN, tuned=tuned),
               [r"LlamaForCausalLM", r"GPT2LMHeadModel", r"architecture"])  # fmt: skip


@case("pair-different-depths")
def _(env: Env) -> Run:
    tuned = env.models.shallow()
    return Run(compare_args(env, *CHEAP_FFN, tuned=tuned),
               [r"\b4 layers", r"\b2 layers", r"shapes"])  # fmt: skip


@case("pair-different-tokenizers")
def _(env: Env) -> Run:
    tuned = env.models.wider_vocab()
    return Run(compare_args(env, *CHEAP_FFN, tuned=tuned),
               [r"\b4096\b", r"\b4100\b", r"tokenizer"])  # fmt: skip


# ---- output paths


@case("out-is-a-file")
def _(env: Env) -> Run:
    path = env.write("out-file", "I am a file\n")
    argv = compare_args(env, *CHEAP_FFN)
    argv[argv.index("--out") + 1] = str(path)
    return Run(argv, [e(path), r"is a file|not a folder"], watch=path)


@case("out-inside-a-file")
def _(env: Env) -> Run:
    parent = env.write("parent-file", "I am a file\n")
    path = parent / "sub"
    argv = compare_args(env, *CHEAP_FFN)
    argv[argv.index("--out") + 1] = str(path)
    return Run(argv, [e(parent), r"is a file|not a folder"], watch=parent)


@case("out-not-writable")
def _(env: Env) -> Run:
    if os.geteuid() == 0:  # root writes through chmod: take a folder nobody can create
        path = Path("/sys/interpret-shift-out")
    else:
        locked = env.tmp / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        env.cleanups.append(lambda: locked.chmod(0o700))
        path = locked / "out"
    argv = compare_args(env, *CHEAP_FFN)
    argv[argv.index("--out") + 1] = str(path)
    return Run(argv, [e(path), r"writ|permi|read-only"], watch=path)


# ---- resuming into a folder of another run (docs/cli.md: "the run stops and says so")


@case("resume-other-config")
def _(env: Env) -> Run:
    folder = env.report_dir()
    argv = compare_args(env, "--explainers", "ffn", "--set", "ffn.components=3", "--set",
                        "ffn.layers=[0]")  # fmt: skip
    argv[argv.index("--out") + 1] = str(folder)
    return Run(argv, [e(folder), r"config|option", r"--force|another folder"], watch=folder)


@case("resume-other-models")
def _(env: Env) -> Run:
    folder = env.report_dir()
    argv = compare_args(env, *CHEAP_FFN, base="demo:tuned", tuned="demo:base")
    argv[argv.index("--out") + 1] = str(folder)
    return Run(argv, [e(folder), r"model", r"--force|another folder"], watch=folder)


# ---- report DIR: missing and damaged output folders


def report_case(case_id: str, damage: Callable[[Path], Path], *expect: str | Callable):
    def build(env: Env) -> Run:
        folder = env.report_dir()
        named_path = damage(folder)
        patterns = [p(named_path) if callable(p) else p for p in expect]
        return Run(["report", str(folder)], patterns, watch=folder)

    case(f"report-{case_id}")(build)


def _remove(folder: Path) -> Path:
    shutil.rmtree(folder)
    return folder


def _summary(text: str | bytes):
    def damage(folder: Path) -> Path:
        path = folder / "summary.json"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text)
        return path

    return damage


def _truncate(relative: str):
    def damage(folder: Path) -> Path:
        path = folder / relative
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return path

    return damage


def _summary_field(**changes):
    def damage(folder: Path) -> Path:
        path = folder / "summary.json"
        summary = json.loads(path.read_text())
        summary.update(changes)
        path.write_text(json.dumps(summary))
        return path

    return damage


report_case("dir-missing", _remove, named, r"no output folder|does not exist")
report_case("no-summary", lambda f: (f / "summary.json").unlink() or f / "summary.json",
            named, r"does not exist|missing")  # fmt: skip
report_case("summary-truncated", _truncate("summary.json"), named, r"json")
report_case("summary-empty", _summary(""), named, r"json|empty")
report_case("summary-json-list", _summary("[]"), named, r"list|object")
report_case("summary-not-utf8", _summary(b'{"n_prompts": "\xff\xfe"}'), named,
            r"utf-8|read")  # fmt: skip
report_case("summary-explainers-not-a-list", _summary_field(explainers="ffn"), named,
            r"explainers")  # fmt: skip
report_case("summary-explainer-without-name", _summary_field(explainers=[{}]), named,
            r"explainers|name")  # fmt: skip
report_case("diff-truncated", _truncate("diff/ffn.json"), named, r"json")
report_case("diff-model-truncated", _truncate("diff/model.json"), named, r"json")
report_case("diff-json-list", lambda f: (f / "diff/ffn.json").write_text("[]") and
            f / "diff/ffn.json", named, r"list|object")  # fmt: skip


@case("report-dir-is-a-file")
def _(env: Env) -> Run:
    path = env.write("not-a-dir", "x\n")
    return Run(["report", str(path)], [e(path), r"folder|directory|does not exist"], watch=path)


# ---- explain (one model)


@case("explain-missing-model")
def _(env: Env) -> Run:
    path = env.tmp / "nosuch-model"
    return Run(explain_args(env, path, *CHEAP_FFN), [e(path), r"does not exist|no model"])


@case("explain-bad-prompts")
def _(env: Env) -> Run:
    path = env.write("explain.jsonl", row(id=...))
    argv = explain_args(env, "demo:base", *CHEAP_FFN)
    argv[argv.index("--prompts") + 1] = str(path)
    return Run(argv, [e(path.name), r"line 1", r"\bid\b", r"missing"])


@case("explain-empty-prompts")
def _(env: Env) -> Run:
    path = env.write("explain.jsonl", "\n\n")
    argv = explain_args(env, "demo:base", *CHEAP_FFN)
    argv[argv.index("--prompts") + 1] = str(path)
    return Run(argv, [e(path.name), r"no prompts|empty"])


@case("explain-set-unknown-option")
def _(env: Env) -> Run:
    return Run(explain_args(env, "demo:base", "--set", "ffn.nosuch=1"),
               [r"ffn", r"'nosuch'", r"no option|unknown"])  # fmt: skip


@case("explain-out-is-a-file")
def _(env: Env) -> Run:
    path = env.write("out-file", "x\n")
    argv = explain_args(env, "demo:base", *CHEAP_FFN)
    argv[argv.index("--out") + 1] = str(path)
    return Run(argv, [e(path), r"is a file|not a folder"], watch=path)


@case("explain-weights-missing")
def _(env: Env) -> Run:
    path = env.tmp / "nosuch-weights"
    return Run(explain_args(env, "demo:base", *CHEAP_FFN, "--weights", str(path)),
               [e(path), r"safetensors|does not exist"])  # fmt: skip


@case("explain-encoder-only")
def _(env: Env) -> Run:
    folder = env.models.bert()
    return Run(explain_args(env, folder, *CHEAP_FFN), [e(folder), r"not a causal"])


# ---- hookpoints


def hookpoints_case(case_id: str, make: Callable[[Env], Path | str], *expect: str | Callable):
    def build(env: Env) -> Run:
        model = make(env)
        patterns = [p(model) if callable(p) else p for p in expect]
        return Run(["hookpoints", str(model)], patterns, watch=env.tmp)

    case(f"hookpoints-{case_id}")(build)


hookpoints_case("missing-model", lambda env: env.tmp / "nosuch-model", named,
                r"does not exist|no model")  # fmt: skip
hookpoints_case("folder-without-config", lambda env: env.demo_copy(drop=("config.json",)),
                named, r"config\.json")  # fmt: skip
hookpoints_case("config-invalid-json", _edit_config("{not json"), named, r"json")
hookpoints_case("encoder-only", lambda env: env.models.bert(), named, r"not a causal")
hookpoints_case("auto_map-needs-remote-code", _auto_map, named, r"--trust-remote-code")
hookpoints_case("demo-unknown", lambda env: "demo:nosuch", r"demo:nosuch", r"unknown")


# --------------------------------------------------------------------------- the test


def snapshot(folder: Path) -> set[str]:
    """The files under ``folder`` (relative paths); a missing folder holds none."""
    if not folder.is_dir():
        return set()
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if not p.is_dir()}


@pytest.mark.parametrize("build", CASES)
def test_bad_input(build, tmp_path, models, capsys, monkeypatch):
    env = Env(tmp_path, models)
    monkeypatch.chdir(tmp_path)  # a stray relative write lands where it is noticed
    run = build(env)
    watch = run.watch or env.out
    existed = watch.exists()
    before = snapshot(watch)
    capsys.readouterr()  # drop what building the inputs printed
    try:
        try:
            code = main(run.argv)
        except SystemExit as exit_:  # argparse
            code = exit_.code
        except Exception as error:  # noqa: BLE001 - reported as the failure it is
            out, err = capsys.readouterr()
            pytest.fail(f"main raised {type(error).__name__}: {error}\nstderr: {err[-2000:]}")
        out, err = capsys.readouterr()
        after = snapshot(watch)
    finally:
        for cleanup in env.cleanups:
            cleanup()
    message = " ".join(err.split())
    assert "Traceback" not in out + err, f"a traceback was printed:\n{out}{err}"
    assert code == 2, f"exit code {code}, expected 2; stderr: {message[:1500]}"
    missing = [p for p in run.expect if not re.search(p, message, re.IGNORECASE)]
    assert not missing, f"message lacks {missing}: {message[:1500]!r}"
    wrong = [p for p in run.reject if re.search(p, message, re.IGNORECASE)]
    assert not wrong, f"message names a wrong fault {wrong}: {message[:1500]!r}"
    assert after <= before, f"new files in {watch}: {sorted(after - before)[:10]}"
    if not existed:
        assert not watch.exists() or not after, f"{watch} was created"


def test_there_are_at_least_60_cases():
    assert len(CASES) >= 60, len(CASES)
    ids = [param.id for param in CASES]
    assert len(ids) == len(set(ids)), "duplicate case ids"


# --------------------------------------------------------------------------- controls
# The inputs the cases damage are valid before the damage, so each case fails for its fault.


def test_control_good_prompt_row_is_accepted(tmp_path):
    from interpret_shift.pipeline import load_prompt_set

    path = tmp_path / "good.jsonl"
    path.write_text(json.dumps(GOOD_ROW) + "\n")
    assert [p.id for p in load_prompt_set(path)] == ["p1"]


def test_control_demo_copy_loads(models):
    from interpret_shift.core.subject import load_subject

    subject = load_subject(models.demo_copy())
    assert subject.layout.n_layers == 4 and len(subject.tokenizer) == 4096


def test_control_report_folder_renders(models, tmp_path, capsys):
    folder = tmp_path / "done"
    shutil.copytree(models.resume_dir(), folder)
    (folder / "report.html").unlink()
    assert main(["report", str(folder)]) == 0
    assert (folder / "report.html").is_file()


def test_control_pair_models_are_causal_lms(models):
    from interpret_shift.core.subject import load_subject

    for folder in (models.gpt2(), models.shallow(), models.wider_vocab()):
        load_subject(folder)  # raises if the model itself (not the pair) were the problem
