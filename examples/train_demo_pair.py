#!/usr/bin/env python
"""Train interpret-shift's embedded demo pair: a tiny base LM and its instruction-tuned version.

Why: the project's demo and tests must run offline on a base/tuned pair whose behaviour shift is
known in advance. Hub models cannot be downloaded here, so this script trains both, from data
that may be redistributed, on a CPU, reproducibly (same machine + same thread count gives the
same weights bit for bit).

Usage::

    python examples/train_demo_pair.py --out interpret_shift/demo     # full run, ~25 min, 2 cores
    python examples/train_demo_pair.py --out /tmp/x --quick           # reduced run, ~1 min

Recipe (the defaults in ``Recipe``; the model cards record the values actually used):

1. Text. WordNet 3.0 as shipped by Debian's ``wordnet-base`` (/usr/share/wordnet): one document
   per synset, "lemma, lemma (pos): gloss; "example"", plus sentences this script writes from
   WordNet relations ("A dog is a kind of canine.", "The opposite of wet is dry.", "Glad and
   happy mean the same thing.").
2. Tokenizer. Byte-level BPE (``tokenizers``), 4096 entries, trained on that text plus the
   prompt template. Pre-tokenization isolates every run of white space, so " glad" and "glad"
   are the same token plus a space token: copying a word is copying its tokens, whatever
   precedes it. Specials: ``<|endoftext|>`` (bos = eos, documents are separated by it; no BOS is
   added to encodings) and ``<|pad|>``.
3. Base model. ``LlamaForCausalLM``: 4 layers, hidden 192, 4 query heads over 2 key/value heads,
   MLP 512, tied embeddings (2.41 M parameters). Next-token loss on packed 128-token windows of
   the text, shuffled with the seed.
4. Tuned model. Continues from the base weights on instruction -> response pairs made up here,
   loss on the response tokens (+ eos) only, template::

       ### Instruction:\\n{prompt}\\n### Response:\\n{answer}<|endoftext|>

   Five tasks over a phrase of 2-4 one-token WordNet words and a word X that the instruction
   names: put X before, after or around each word, write X once or twice per word. The same
   phrase and X admit every task (the instruction alone decides the answer), and the answers
   are made largely of X, copied from the instruction. Each task has 3 phrasings; the
   instruction stands at the start, in the middle or at the end of the prompt (3 templates
   each). Fresh examples are drawn every step.
5. Held-out prompts. The operand words are split once (seeded): each task keeps 40 words it
   never sees in tuning; ``heldout.jsonl`` uses only those (105 prompts: 5 tasks x 3
   positions x 7), so none of its (task, word) pairs or prompt strings occurs in tuning
   (asserted).

Determinism: seeds everywhere, ``torch.use_deterministic_algorithms(True)``, a fixed thread
count (``--threads``, default 2), tokenizer training is deterministic. Outputs are float32
safetensors. Set OMP_WAIT_POLICY=PASSIVE on shared machines (done here unless set).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

WORDNET_DIR = Path("/usr/share/wordnet")
WORDNET_COPYRIGHT = Path("/usr/share/doc/wordnet-base/copyright")
POS_FILES = {"noun": "n", "verb": "v", "adj": "a", "adv": "r"}
EOS = "<|endoftext|>"
PAD = "<|pad|>"
INSTRUCTION_HEADER = "### Instruction:\n"
RESPONSE_HEADER = "### Response:\n"
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}"
    "### Instruction:\n{{ message['content'] }}\n"
    "{% elif message['role'] == 'assistant' %}"
    "### Response:\n{{ message['content'] }}{{ eos_token }}"
    "{% else %}"
    "{{ raise_exception('the demo model knows only user and assistant messages') }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}### Response:\n{% endif %}"
)


@dataclass(frozen=True)
class Recipe:
    """Every knob of a run; written into the model cards."""

    seed: int = 1234
    vocab_size: int = 4096
    hidden_size: int = 192
    intermediate_size: int = 512
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    max_positions: int = 256
    pretrain_steps: int = 1500
    pretrain_batch: int = 16
    pretrain_seq_len: int = 128
    pretrain_lr: float = 2e-3
    tune_steps: int = 2500
    tune_batch: int = 32
    tune_lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    min_phrase_words: int = 2
    max_phrase_words: int = 4
    heldout_words_per_task: int = 40
    heldout_per_cell: int = 7
    max_documents: int | None = None


QUICK = dict(
    pretrain_steps=30, tune_steps=30, max_documents=4000, vocab_size=1024, heldout_words_per_task=8
)


# ---------------------------------------------------------------------------------------------
# WordNet text


@dataclass
class Synset:
    pos: str
    lemmas: list[str]
    gloss: str
    pointers: list[tuple[str, str, str, int, int]]  # symbol, offset, pos, source, target


def check_wordnet(wordnet_dir: Path) -> None:
    """Fail early, saying how to get the data, when the WordNet files are missing."""
    missing = [f"data.{name}" for name in POS_FILES if not (wordnet_dir / f"data.{name}").exists()]
    missing += [
        f"index.{name}" for name in POS_FILES if not (wordnet_dir / f"index.{name}").exists()
    ]
    if missing:
        sys.exit(
            f"error: WordNet 3.0 files not found in {wordnet_dir} (missing {', '.join(missing)}).\n"
            "Install them with:  apt-get install wordnet-base   (Debian/Ubuntu), "
            "or pass --wordnet-dir DIR."
        )


def read_synsets(wordnet_dir: Path) -> dict[tuple[str, str], Synset]:
    """Parse data.{noun,verb,adj,adv} (format: wndb(5WN)) into synsets keyed by (pos, offset)."""
    synsets: dict[tuple[str, str], Synset] = {}
    for name, pos in POS_FILES.items():
        with open(wordnet_dir / f"data.{name}", encoding="ascii") as f:
            for line in f:
                if line.startswith("  "):  # licence header
                    continue
                head, gloss = line.split(" | ", 1)
                fields = head.split()
                offset, n_words = fields[0], int(fields[3], 16)
                lemmas = [re.sub(r"\(.*\)$", "", w) for w in fields[4 : 4 + 2 * n_words : 2]]
                at = 4 + 2 * n_words
                n_ptrs = int(fields[at])
                pointers = []
                for k in range(n_ptrs):
                    sym, off, ppos, st = fields[at + 1 + 4 * k : at + 5 + 4 * k]
                    pointers.append(
                        (sym, off, "a" if ppos == "s" else ppos, int(st[:2], 16), int(st[2:], 16))
                    )
                synsets[(pos, offset)] = Synset(pos, lemmas, gloss.strip(), pointers)
    return synsets


def read_index(wordnet_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """Lemma -> its synsets (pos, offset) in WordNet's sense order, nouns first."""
    entries: dict[str, list[tuple[str, str]]] = {}
    for name, pos in POS_FILES.items():
        with open(wordnet_dir / f"index.{name}", encoding="ascii") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                fields = line.split()
                n_synsets, n_ptr_kinds = int(fields[2]), int(fields[3])
                offsets = fields[6 + n_ptr_kinds : 6 + n_ptr_kinds + n_synsets]
                entries.setdefault(fields[0], []).extend((pos, off) for off in offsets)
    return entries


def documents(
    synsets: dict[tuple[str, str], Synset],
    index: dict[str, list[tuple[str, str]]],
    rng: random.Random,
) -> list[str]:
    """Dictionary entries (one per headword, its senses numbered) and relation sentences.

    Entries repeat their headword (in the examples, across senses), which teaches the base
    model to copy from its context: the tuned model builds on that.
    """
    pos_name = {"n": "noun", "v": "verb", "a": "adjective", "r": "adverb"}
    docs = []
    for lemma in sorted(w for w in index if "_" not in w):
        head = lemma
        lines = [head]
        for k, key in enumerate(index[lemma], 1):
            s = synsets[key]
            others = [w.replace("_", " ") for w in s.lemmas if w.lower() != lemma]
            same = f" Same as: {', '.join(others)}." if others else ""
            lines.append(f"{k}. ({pos_name[s.pos]}) {s.gloss}{same}")
        docs.append("\n".join(lines))
    for s in synsets.values():
        head = s.lemmas[0].replace("_", " ")
        for sym, off, ppos, source, target in s.pointers:
            other = synsets.get((ppos, off))
            if other is None:
                continue
            if sym == "@" and s.pos == "n":
                hyper = other.lemmas[0].replace("_", " ")
                article = "An" if head[0] in "aeiou" else "A"
                docs.append(f"{article} {head} is a kind of {hyper}.")
            elif sym == "@" and s.pos == "v":
                docs.append(f"To {head} is a way to {other.lemmas[0].replace('_', ' ')}.")
            elif sym == "!" and source and target:
                a = s.lemmas[source - 1].replace("_", " ")
                b = other.lemmas[target - 1].replace("_", " ")
                docs.append(f"The opposite of {a} is {b}.")
    docs += repetition_docs(synsets, rng, len(docs) // 4)
    rng.shuffle(docs)
    return docs


def repetition_docs(
    synsets: dict[tuple[str, str], Synset], rng: random.Random, n: int
) -> list[str]:
    """Texts that say something twice (a definition, a list of words).

    They teach the base model to copy from its context (induction heads), which a model this
    small does not learn from a few million tokens of dictionary text alone.
    """
    keys = sorted(synsets)
    heads = sorted({w for s in synsets.values() for w in s.lemmas if w.isalpha()})
    docs = []
    for _ in range(n):
        s = synsets[keys[rng.randrange(len(keys))]]
        head = s.lemmas[0].replace("_", " ")
        meaning = s.gloss.split(";")[0].strip()
        docs.append(f"{head} means {meaning}. In other words, {head} means {meaning}.")
        words = " ".join(rng.sample(heads, rng.randint(2, 8)))
        docs.append(f"A list of words: {words}. The same list again: {words}.")
    return docs


@dataclass(frozen=True)
class WordSplit:
    """Operand words, and per task the words that task never sees in tuning."""

    pool: list[str]
    heldout: dict[str, list[str]]

    def for_tuning(self, task: str) -> list[str]:
        banned = set(self.heldout[task])
        return [w for w in self.pool if w not in banned]


def split_words(recipe: Recipe, wordnet_dir: Path, tokenizer: PreTrainedTokenizerFast) -> WordSplit:
    """Split the operand words once (seeded): each task gets its own held-out words.

    Only one-token words: copying a word of several tokens needs induction heads, which a model
    this small does not learn reliably in a few thousand steps. A held-out word of one task is
    used by the other tasks, so the model has written it before; what is new is the (task,
    word) pair. (Words never written in tuning would not be written at all: tuning teaches a
    prior over outputs as well as the copying.)
    """
    words = operand_words(wordnet_dir, template_words())
    words = [w for w in words if len(tokenizer(w, add_special_tokens=False)["input_ids"]) == 1]
    random.Random(recipe.seed + 3).shuffle(words)
    k = recipe.heldout_words_per_task
    if len(words) < (len(TASKS) + 1) * k:
        sys.exit(f"error: only {len(words)} one-token operand words; lower heldout_words_per_task")
    heldout = {task: sorted(words[i * k : (i + 1) * k]) for i, task in enumerate(TASKS)}
    return WordSplit(sorted(words), heldout)


def operand_words(wordnet_dir: Path, banned: set[str]) -> list[str]:
    """Common single words (in a WordNet sense-tagged corpus at least once), sorted."""
    words = set()
    for name in POS_FILES:
        with open(wordnet_dir / f"index.{name}", encoding="ascii") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                fields = line.split()
                n_ptr_kinds = int(fields[3])
                tagged = int(fields[5 + n_ptr_kinds])
                lemma = fields[0]
                if tagged >= 1 and re.fullmatch(r"[a-z]{3,9}", lemma) and lemma not in banned:
                    words.add(lemma)
    return sorted(words)


# ---------------------------------------------------------------------------------------------
# Instruction tasks


# Each task takes the phrase and a word X named in the instruction. X is drawn from ~1,500
# words, so the model has to copy it from the instruction, and every answer is made largely
# of X: the answer depends on the instruction's words at every step, not only on which task
# the instruction names. (Tasks whose answers are mostly the phrase's words, such as
# replacing one word by X, leave the instruction with little saliency; see docs/demo-pair.md.)
# X is never the last word of an instruction, so the token after it is instruction too.
TASKS: dict[str, tuple[list[str], Callable[[list[str], str], str]]] = {
    "before": (
        [
            "put {X} before each word",
            "write {X} in front of every word",
            "add {X} before every word",
        ],
        lambda w, x: " ".join(f"{x} {v}" for v in w),
    ),
    "after": (
        ["put {X} after each word", "write {X} behind every word", "add {X} after every word"],
        lambda w, x: " ".join(f"{v} {x}" for v in w),
    ),
    "around": (
        [
            "put {X} on both sides of each word",
            "write {X} around every word",
            "add {X} before and after every word",
        ],
        lambda w, x: " ".join(f"{x} {v} {x}" for v in w),
    ),
    "tally": (
        [
            "write {X} once for each word",
            "say {X} once per word",
            "write {X} as many times as there are words",
        ],
        lambda w, x: " ".join([x] * len(w)),
    ),
    "twice": (
        [
            "write {X} twice for each word",
            "say {X} two times per word",
            "write {X} twice as many times as there are words",
        ],
        lambda w, x: " ".join([x] * 2 * len(w)),
    ),
}

# {I}: capitalised instruction, {i}: as is, {C}: the phrase.
POSITIONS: dict[str, list[str]] = {
    "start": ["{I}: {C}", "{I}. Words: {C}", "{I}.\n{C}"],
    "middle": [
        "Words: {C}. Task: {i}. Answer follows.",
        "Here is a phrase: {C}. Please {i}. Keep the answer short.",
        "{C}\n{I}.\nAnswer below.",
    ],
    "end": ["{C} -- {i}.", "Phrase: {C}\n{I}.", "Consider these words: {C}. {I}."],
}


@dataclass(frozen=True)
class Example:
    task: str
    position: str
    prompt: str
    answer: str
    words: tuple[str, ...]  # the phrase, then X
    instruction_span: tuple[int, int]
    context_span: tuple[int, int]


def template_words() -> set[str]:
    """Words of the instructions and templates: never used as operands."""
    text = " ".join(p for phrasings, _ in TASKS.values() for p in phrasings)
    text += " " + " ".join(t for ts in POSITIONS.values() for t in ts)
    return set(re.findall(r"[a-z]+", text.lower()))


def make_example(
    rng: random.Random, pool: list[str], task: str, position: str, n_words: int
) -> Example:
    """One prompt: a phrase of distinct words from ``pool`` and an instruction with X from it."""
    *words, x = rng.sample(pool, n_words + 1)
    phrasings, answer_fn = TASKS[task]
    instruction = rng.choice(phrasings).format(X=x)
    phrase = " ".join(words)
    prompt, spans = "", {}
    for piece in re.split(r"(\{[IiC]\})", rng.choice(POSITIONS[position])):
        if piece in ("{I}", "{i}"):
            text = instruction[0].upper() + instruction[1:] if piece == "{I}" else instruction
            spans["instruction"] = (len(prompt), len(prompt) + len(text))
            prompt += text
        elif piece == "{C}":
            spans["context"] = (len(prompt), len(prompt) + len(phrase))
            prompt += phrase
        else:
            prompt += piece
    return Example(
        task,
        position,
        prompt,
        answer_fn(words, x),
        (*words, x),
        spans["instruction"],
        spans["context"],
    )


def heldout_examples(recipe: Recipe, words: WordSplit) -> list[Example]:
    """A balanced held-out set: every task x position cell gets ``heldout_per_cell`` prompts."""
    rng = random.Random(recipe.seed + 7)
    lengths = list(range(recipe.min_phrase_words, recipe.max_phrase_words + 1))
    out = []
    k = 0
    for task in TASKS:
        for position in POSITIONS:
            for _ in range(recipe.heldout_per_cell):
                n_words = lengths[k % len(lengths)]
                out.append(make_example(rng, words.heldout[task], task, position, n_words))
                k += 1
    return out


def heldout_rows(examples: list[Example]) -> list[dict]:
    rows, seen = [], {}
    for ex in examples:
        key = f"{ex.task}-{ex.position}"
        seen[key] = seen.get(key, 0) + 1
        rows.append(
            {
                "id": f"{key}-{seen[key]}",
                "prompt": ex.prompt,
                # The expected answer, both as the reference (accuracy) and as the response
                # that saliency attributes, so both models are explained on the same tokens.
                "response": ex.answer,
                "reference": ex.answer,
                "group": ex.task,
                "instruction_spans": [list(ex.instruction_span)],
                "context_spans": [list(ex.context_span)],
            }
        )
    return rows


def chat_prefix(prompt: str) -> str:
    """The training prefix; the tuned tokenizer's chat template renders exactly this."""
    return f"{INSTRUCTION_HEADER}{prompt}\n{RESPONSE_HEADER}"


# ---------------------------------------------------------------------------------------------
# Tokenizer and models


def train_tokenizer(recipe: Recipe, docs: list[str]) -> PreTrainedTokenizerFast:
    """Byte-level BPE whose pre-tokenizer isolates white space, letters runs, digits, symbols."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(r"\s+|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+"), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        min_frequency=2,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    extra = [chat_prefix("x")] * 100  # the template's pieces get their own tokens
    tok.train_from_iterator(docs + extra, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS,
        eos_token=EOS,
        pad_token=PAD,
        model_max_length=recipe.max_positions,
    )


def new_model(recipe: Recipe, tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_kv_heads,
        max_position_embeddings=recipe.max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train_loop(
    model: LlamaForCausalLM,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    steps: int,
    lr: float,
    recipe: Recipe,
    label: str,
) -> list[float]:
    """AdamW over ``steps`` batches of (input_ids, attention_mask, labels); returns the losses."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in trainable if p.ndim >= 2]
    no_decay = [p for p in trainable if p.ndim < 2]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": recipe.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
        betas=(0.9, 0.95),
    )
    model.train()
    losses = []
    start = time.time()
    warmup = min(recipe.warmup_steps, max(1, steps // 10))
    for step in range(steps):
        ids, mask, labels = next(batches)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, lr, warmup)
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if (step + 1) % 100 == 0 or step + 1 == steps:
            recent = sum(losses[-100:]) / len(losses[-100:])
            print(
                f"[{label}] step {step + 1}/{steps} loss {recent:.4f} ({time.time() - start:.0f} s)"
            )
    model.eval()
    return losses


def pretrain_batches(
    recipe: Recipe, tokenizer: PreTrainedTokenizerFast, docs: list[str]
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Packed windows of the document stream (documents end with eos), shuffled each epoch."""
    eos = tokenizer.eos_token_id
    encodings = tokenizer.backend_tokenizer.encode_batch(docs, add_special_tokens=False)
    stream = torch.cat([torch.tensor([*enc.ids, eos], dtype=torch.int32) for enc in encodings])
    n = recipe.pretrain_seq_len
    windows = stream[: len(stream) // n * n].view(-1, n).long()
    print(f"[pretrain] {len(docs)} documents, {len(stream)} tokens, {len(windows)} windows")
    gen = torch.Generator().manual_seed(recipe.seed + 1)
    while True:
        order = torch.randperm(len(windows), generator=gen)
        for k in range(0, len(order) - recipe.pretrain_batch + 1, recipe.pretrain_batch):
            ids = windows[order[k : k + recipe.pretrain_batch]]
            yield ids, torch.ones_like(ids), ids


def tune_batches(
    recipe: Recipe,
    tokenizer: PreTrainedTokenizerFast,
    words: WordSplit,
    seen: set[tuple[str, str]],
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Fresh instruction examples every step; loss on answer + eos only.

    Adds every prompt (as ("prompt", text)) and every (task, word) pair it uses to ``seen``.
    """
    rng = random.Random(recipe.seed + 2)
    tasks, positions = list(TASKS), list(POSITIONS)
    pools = {task: words.for_tuning(task) for task in tasks}
    while True:
        rows = []
        for _ in range(recipe.tune_batch):
            task = rng.choice(tasks)
            n_words = rng.randint(recipe.min_phrase_words, recipe.max_phrase_words)
            ex = make_example(rng, pools[task], task, rng.choice(positions), n_words)
            seen.add(("prompt", ex.prompt))
            seen.update((task, w) for w in ex.words)
            prefix = tokenizer(chat_prefix(ex.prompt), add_special_tokens=False)["input_ids"]
            answer = tokenizer(ex.answer, add_special_tokens=False)["input_ids"]
            answer.append(tokenizer.eos_token_id)
            rows.append((prefix + answer, [-100] * len(prefix) + answer))
        width = max(len(ids) for ids, _ in rows)
        ids = torch.full((len(rows), width), tokenizer.pad_token_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for r, (row_ids, row_labels) in enumerate(rows):
            ids[r, : len(row_ids)] = torch.tensor(row_ids)
            labels[r, : len(row_labels)] = torch.tensor(row_labels)
            mask[r, : len(row_ids)] = 1
        yield ids, mask, labels


@torch.no_grad()
def greedy_answers(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    prompts: list[str],
    batch_size: int = 32,
) -> list[str]:
    """Greedy answers to raw prompts, formatted with the demo template, left-padded batches."""
    tokenizer.padding_side = "left"
    out = []
    for k in range(0, len(prompts), batch_size):
        texts = [chat_prefix(p) for p in prompts[k : k + batch_size]]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        gen = model.generate(
            **enc,
            do_sample=False,
            max_new_tokens=64,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
        new = gen[:, enc["input_ids"].shape[1] :]
        out += tokenizer.batch_decode(new, skip_special_tokens=True)
    tokenizer.padding_side = "right"
    return out


def accuracy(answers: list[str], references: list[str]) -> float:
    """Exact match after normalising white space."""
    ok = [" ".join(a.split()) == " ".join(r.split()) for a, r in zip(answers, references)]
    return sum(ok) / len(ok)


# ---------------------------------------------------------------------------------------------
# Saving


def wordnet_notice() -> str:
    """The WordNet 3.0 licence paragraph of the Debian copyright file, verbatim."""
    text = WORDNET_COPYRIGHT.read_text(encoding="utf-8")
    match = re.search(r"^License: WordNet3\.0\n(.*?)(?=\n\S|\Z)", text, re.S | re.M)
    if match is None:
        sys.exit(f"error: no WordNet3.0 licence paragraph in {WORDNET_COPYRIGHT}")
    lines = [line[1:] if line.startswith(" ") else line for line in match.group(1).splitlines()]
    return "\n".join("" if line == "." else line for line in lines).strip()


def model_card(which: str, recipe: Recipe, stats: dict) -> str:
    """The README.md of one model folder: how it was made, on what, licence, limits."""
    tasks = "\n".join(
        f'- `{t}`: "{TASKS[t][0][0].format(X="blue")}: red fox runs" -> "{fn(["red", "fox", "runs"], "blue")}"'
        for t, (_, fn) in TASKS.items()
    )
    recipe_json = json.dumps(dataclasses.asdict(recipe), indent=2)
    if which == "base":
        what = (
            "The **base** model of interpret-shift's demo pair: a tiny Llama-architecture causal "
            "LM trained from scratch on English text made from WordNet 3.0. It has no chat "
            "template and does not follow instructions."
        )
        training = (
            f"Next-token prediction on {stats['pretrain_tokens']:,} tokens: "
            f"{recipe.pretrain_steps} steps x {recipe.pretrain_batch} packed windows of "
            f"{recipe.pretrain_seq_len} tokens (documents separated by `<|endoftext|>`), AdamW "
            f"(betas 0.9/0.95), peak lr {recipe.pretrain_lr}, warm-up then cosine decay, weight "
            f"decay {recipe.weight_decay}, gradient clipping 1.0.\n\n"
            "Text (shuffled): one dictionary entry per single-word WordNet lemma, its senses "
            'numbered ("glad\\n1. (adjective) showing or causing joy and pleasure; ... Same as: '
            'happy."); sentences written from WordNet relations ("A dog is a kind of canine.", '
            '"To run is a way to travel.", "The opposite of wet is dry."); and sentences that '
            'say something twice ("glad means ... In other words, glad means ...", "A list of '
            'words: a b c. The same list again: a b c."), which teach copying from the context.'
        )
    else:
        what = (
            "The **instruction-tuned** model of interpret-shift's demo pair: the base model "
            "(`../base`) trained further to follow five word-manipulation instructions. Its "
            "tokenizer carries the chat template."
        )
        training = (
            f"Continued from the base weights for {recipe.tune_steps} steps x "
            f"{recipe.tune_batch} freshly generated examples "
            f"({recipe.tune_steps * recipe.tune_batch:,} in all), AdamW, peak lr "
            f"{recipe.tune_lr}, loss on the response tokens and `<|endoftext|>` only. "
            "Template (the chat template renders the part before the answer):\n\n"
            "```\n### Instruction:\n{prompt}\n### Response:\n{answer}<|endoftext|>\n```\n\n"
            f"Each prompt holds a phrase of {recipe.min_phrase_words}-"
            f"{recipe.max_phrase_words} distinct words and an instruction naming a word X; "
            "the same phrase and X admit every task, so the instruction decides the answer, "
            "and the answer copies X from the instruction:\n\n"
            f"{tasks}\n\n"
            "Each task has 3 phrasings; the instruction stands at the start, in the middle or "
            'at the end of the prompt (3 templates each, e.g. "Words: {phrase}. Task: '
            '{instruction}. Answer follows."). Words (the phrase and X) come from '
            f"{stats['operand_words']} one-token WordNet lemmas; for each task "
            f"{recipe.heldout_words_per_task} of them are never used in its tuning examples "
            "and make up its held-out prompts."
        )
    return f"""---
library_name: transformers
license: other
license_name: apache-2.0-and-wordnet-3.0
tags:
- interpret-shift
- demo
---

# interpret-shift demo pair: {which}

{what}

Made by `examples/train_demo_pair.py` of interpret-shift (see `docs/demo-pair.md`) on CPU,
deterministically: the recipe below gives the same weights bit for bit on the same machine
with the same thread count.

## Model

`LlamaForCausalLM`: {recipe.num_layers} layers, hidden size {recipe.hidden_size}, \
{recipe.num_heads} attention heads over {recipe.num_kv_heads} key/value heads, MLP size \
{recipe.intermediate_size}, tied input/output embeddings, {stats["parameters"]:,} parameters, \
float32. Tokenizer: byte-level BPE with {stats["vocab_size"]} entries trained by the script on \
the base model's text; every run of white space is a token of its own (so a word has the same \
tokens wherever it stands); `<|endoftext|>` is bos and eos, `<|pad|>` pads; no BOS token is \
added to encodings.

## Training

{training}

## Evaluation

The held-out prompts (`../heldout.jsonl`: {stats["heldout_prompts"]} prompts, every task at \
every instruction position, no (task, word) pair of them used in tuning), greedy decoding, \
both models given the tuned chat template, exact match after normalising white space: \
base {stats["accuracy_base"]:.0%}, tuned {stats["accuracy_tuned"]:.0%}.

## Known limits

- A toy: {stats["parameters"] / 1e6:.1f} M parameters, {stats["vocab_size"]} tokens, contexts \
up to {recipe.max_positions} tokens. It knows dictionary-style English from WordNet only.
- The tuned model follows the five tasks above, in the trained phrasings, on one-token words; \
other instructions, longer words or phrases get arbitrary answers. Its general language \
modelling degraded with tuning.
- Made to show and test interpretability tools, not for any other use.

## Licence

The code that made this model is Apache-2.0 (interpret-shift). The training text comes from \
WordNet 3.0 (Debian package `wordnet-base`), used under the WordNet licence, whose notice \
follows:

```
{wordnet_notice()}
```

## Recipe

```json
{recipe_json}
```
"""


def save_pair(
    out: Path,
    base: LlamaForCausalLM,
    tuned: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    recipe: Recipe,
    stats: dict,
    rows: list[dict],
) -> None:
    for which, model in (("base", base), ("tuned", tuned)):
        folder = out / which
        folder.mkdir(parents=True, exist_ok=True)
        model.generation_config = GenerationConfig(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            do_sample=False,
            max_new_tokens=64,
        )
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.chat_template = CHAT_TEMPLATE if which == "tuned" else None
        tokenizer.save_pretrained(folder)
        (folder / "README.md").write_text(model_card(which, recipe, stats), encoding="utf-8")
    tokenizer.chat_template = None
    with open(out / "heldout.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


# ---------------------------------------------------------------------------------------------
# Stages


def prepare_text(recipe: Recipe, wordnet_dir: Path) -> tuple[list[str], PreTrainedTokenizerFast]:
    """The pre-training documents and the tokenizer trained on them."""
    synsets = read_synsets(wordnet_dir)
    docs = documents(synsets, read_index(wordnet_dir), random.Random(recipe.seed))
    docs = docs[: recipe.max_documents]
    tokenizer = train_tokenizer(recipe, docs)
    prefix = chat_prefix("Put and between the words: red fox")
    assert tokenizer(prefix + "red")["input_ids"] == (
        tokenizer(prefix)["input_ids"] + tokenizer("red")["input_ids"]
    ), "prefix + answer must tokenize as the concatenation of their tokens"
    return docs, tokenizer


def pretrain(
    recipe: Recipe, tokenizer: PreTrainedTokenizerFast, docs: list[str]
) -> LlamaForCausalLM:
    """A fresh model (seeded) trained on the documents: the base model."""
    torch.manual_seed(recipe.seed)
    model = new_model(recipe, tokenizer)
    print(f"model: {sum(p.numel() for p in model.parameters()):,} parameters")
    batches = pretrain_batches(recipe, tokenizer, docs)
    train_loop(model, batches, recipe.pretrain_steps, recipe.pretrain_lr, recipe, "pretrain")
    return model


def tune(
    recipe: Recipe,
    base: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    words: WordSplit,
    seen: set[tuple[str, str]],
) -> LlamaForCausalLM:
    """A copy of ``base`` instruction-tuned on generated examples; records them in ``seen``."""
    model = new_model(recipe, tokenizer)
    model.load_state_dict(base.state_dict())
    batches = tune_batches(recipe, tokenizer, words, seen)
    train_loop(model, batches, recipe.tune_steps, recipe.tune_lr, recipe, "tune")
    return model


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for base/, tuned/, heldout.jsonl"
    )
    parser.add_argument("--quick", action="store_true", help="reduced run (tests of the script)")
    parser.add_argument("--pretrain-steps", type=int)
    parser.add_argument("--tune-steps", type=int)
    parser.add_argument(
        "--threads", type=int, default=2, help="torch threads (fixed for determinism)"
    )
    parser.add_argument("--wordnet-dir", type=Path, default=WORDNET_DIR)
    args = parser.parse_args(argv)

    recipe = Recipe(**QUICK) if args.quick else Recipe()
    overrides = {"pretrain_steps": args.pretrain_steps, "tune_steps": args.tune_steps}
    recipe = dataclasses.replace(recipe, **{k: v for k, v in overrides.items() if v is not None})
    check_wordnet(args.wordnet_dir)

    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(recipe.seed)
    t0 = time.time()

    docs, tokenizer = prepare_text(recipe, args.wordnet_dir)
    words = split_words(recipe, args.wordnet_dir, tokenizer)
    heldout = heldout_examples(recipe, words)
    print(f"tokenizer: {len(tokenizer)} entries; {len(words.pool)} operand words")

    base = pretrain(recipe, tokenizer, docs)
    t_base = time.time() - t0
    seen: set[tuple[str, str]] = set()
    tuned = tune(recipe, base, tokenizer, words, seen)
    t_all = time.time() - t0

    # Held-out prompts must be new in every respect.
    for ex in heldout:
        assert ("prompt", ex.prompt) not in seen, f"held-out prompt seen in tuning: {ex.prompt}"
        for w in ex.words:
            assert (ex.task, w) not in seen, f"held-out pair seen in tuning: {ex.task}, {w}"

    prompts = [ex.prompt for ex in heldout]
    refs = [ex.answer for ex in heldout]
    acc_base = accuracy(greedy_answers(base, tokenizer, prompts), refs)
    acc_tuned = accuracy(greedy_answers(tuned, tokenizer, prompts), refs)
    print(f"held-out accuracy: base {acc_base:.3f}, tuned {acc_tuned:.3f}")
    stats = {
        "parameters": sum(p.numel() for p in base.parameters()),
        "vocab_size": len(tokenizer),
        "pretrain_tokens": recipe.pretrain_steps * recipe.pretrain_batch * recipe.pretrain_seq_len,
        "operand_words": len(words.pool),
        "heldout_words_per_task": recipe.heldout_words_per_task,
        "heldout_prompts": len(heldout),
        "accuracy_base": acc_base,
        "accuracy_tuned": acc_tuned,
    }
    save_pair(args.out, base, tuned, tokenizer, recipe, stats, heldout_rows(heldout))
    print(
        f"saved to {args.out}: pretraining {t_base:.0f} s, all training {t_all:.0f} s, "
        f"total {time.time() - t0:.0f} s"
    )


if __name__ == "__main__":
    main()
