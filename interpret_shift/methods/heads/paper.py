"""The paper's Table 3 (arXiv:2310.00492) from its released attention-head word pairs.

The release holds ``results/bilinear_interpret/bilinear_words_split.tsvaa`` ... ``tsvaw``:
one TSV cut into parts by bytes (a part may end in the middle of a line), to be joined in
order. Columns ``Model Size Layer Type Head Dim Rank Score TopK``; ``TopK`` is word pairs
``a=b`` joined by ``|||``, one row per dimension of a head. The header line is repeated
inside the file (the two models were written one after the other); repeated headers are
skipped.

Per model and head (layer, head number), a pair of words (sorted, lower-cased) *counts* when
it occurs more than once over the head's rows; a word's count is the number of counting pairs
that contain it. For each verb and each head of a layer group (``layer // 8``): 1 when the
tuned model's (Vicuna's) count is higher, 0 when lower, left out when equal. A verb's score
is the mean over its untied heads; the cell is the mean, population std and number of verbs
that have a score. Instruction verbs and general verbs are compared by a two-sided Welch
t-test per layer group.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from interpret_shift.core.stats import layers_label, t_test
from interpret_shift.errors import InputError
from interpret_shift.lexicon import wordnet

#: The 38 instruction verbs of the paper's Table 3.
PAPER_INSTRUCTION_VERBS: tuple[str, ...] = tuple(
    """act analyze clarify classify compose correct create demonstrate describe design detect
    develop edit estimate evaluate explain find follow format generate give have help identify
    interpret make output predict recommend repeat retrieve revise say solve summarize tell
    translate write""".split()
)
GENERAL_VERB_COUNT = 3000
BASE_MODEL, TUNED_MODEL = "llama", "vicuna"
LAYER_GROUP_SIZE = 8
PART_PREFIX = "bilinear_words_split.tsv"
#: The part suffixes in order: aa, ab, ..., aw (as ``split`` names them).
PART_SUFFIXES = tuple(f"a{letter}" for letter in "abcdefghijklmnopqrstuvw")
COLUMNS = ("Model", "Size", "Layer", "Type", "Head", "Dim", "Rank", "Score", "TopK")


# --- the general verbs -------------------------------------------------------------------------


def wordnet_example_verbs(root: str | os.PathLike[str] = wordnet.DEFAULT_ROOT) -> list[str]:
    """First lemma (lower-cased) of every verb synset whose gloss has an example sentence.

    ``data.verb`` lines are ``offset lex_filenum ss_type w_cnt word lex_id ... | gloss``;
    an example sentence is a double-quoted part of the gloss. Lines starting with a space
    are the licence header. Duplicates keep their first place (file order).
    """
    path = Path(root) / "data.verb"
    if not path.is_file():
        raise InputError(
            f"{path} does not exist: the general verbs come from WordNet 3.0's data.verb.",
            "Install Debian's wordnet-base (or set WORDNET_DIR), or give the verbs as a file "
            "with --general-verbs FILE (one verb a line).",
        )
    verbs: dict[str, None] = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(" ") or not line.strip():
                continue
            data, _, gloss = line.partition("|")
            fields = data.split()
            if len(fields) > 4 and '"' in gloss:
                verbs.setdefault(fields[4].lower(), None)
    return list(verbs)


def general_verbs(
    root: str | os.PathLike[str] = wordnet.DEFAULT_ROOT,
    size: int = GENERAL_VERB_COUNT,
    frequency=None,
) -> list[str]:
    """The paper's general verbs: WordNet verbs with an example, minus instruction and stop
    words, ranked by ``wordfreq`` (English), the ``size`` most frequent.

    Ties in frequency are broken alphabetically (the release leaves 13 words tied at the
    3,000th place; alphabetical order takes the first of them). ``frequency(word)`` replaces
    wordfreq (for tests). Stop words are :data:`interpret_shift.lexicon.words.STOP_WORDS`.
    """
    from interpret_shift.lexicon.words import STOP_WORDS

    if frequency is None:
        import wordfreq

        def frequency(word: str) -> float:
            return wordfreq.word_frequency(word, "en")

    drop = set(STOP_WORDS) | set(PAPER_INSTRUCTION_VERBS)
    verbs = [verb for verb in wordnet_example_verbs(root) if verb not in drop]
    ranked = sorted(verbs, key=lambda verb: (-frequency(verb), verb))
    return ranked[:size]


def read_verb_file(path: str | os.PathLike[str]) -> list[str]:
    """One verb a line (lower-cased; blank lines and a ``word<TAB>...`` tail ignored)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path} does not exist.", "Give a text file with one verb a line.")
    words = [line.split("\t")[0].strip().lower() for line in path.read_text("utf-8").splitlines()]
    return list(dict.fromkeys(word for word in words if word))


# --- reading the parts -------------------------------------------------------------------------


def part_paths(folder: str | os.PathLike[str]) -> list[Path]:
    """The 23 parts in order; a missing one is an error naming it."""
    folder = Path(folder)
    paths = [folder / f"{PART_PREFIX}{suffix}" for suffix in PART_SUFFIXES]
    for path in paths:
        if not path.is_file():
            raise InputError(
                f"{path} does not exist: the head table needs all parts "
                f"{PART_PREFIX}{PART_SUFFIXES[0]} ... {PART_PREFIX}{PART_SUFFIXES[-1]}.",
                "--heads must be the release's results/bilinear_interpret folder.",
            )
    return paths


def joined_lines(paths: Sequence[Path]) -> Iterator[tuple[bytes, Path, int]]:
    """Lines of the byte-wise concatenation of ``paths``, each with the part and line number
    where it starts. A line cut between parts is joined before it is split."""
    carry = b""
    where: tuple[Path, int] | None = None
    for path in paths:
        pieces = path.read_bytes().split(b"\n")
        for number, piece in enumerate(pieces[:-1], start=1):
            if where is not None:
                yield carry + piece, *where
                carry, where = b"", None
            else:
                yield piece, path, number
        if pieces[-1]:
            if where is None:
                where = (path, len(pieces))
            carry += pieces[-1]
    if where is not None and carry:
        yield carry, *where


@dataclass
class HeadPairs:
    """Per (model, layer, head): how often each pair (touching a verb of interest) occurs."""

    counts: dict[tuple[str, int, int], Counter] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    rows: int = 0


def read_head_pairs(folder: str | os.PathLike[str], words: Iterable[str]) -> HeadPairs:
    """Read the parts and count, per model and head, the pairs that contain one of ``words``.

    Only pairs touching ``words`` can change those words' counts, so only they are kept.
    Rows of models other than llama / vicuna are ignored; a row with the wrong number of
    columns or an unreadable Layer/Head is reported (part and line) and skipped.
    """
    wanted = set(words)
    result = HeadPairs()
    for raw, path, number in joined_lines(part_paths(folder)):
        line = raw.rstrip(b"\r")
        if not line.strip():
            continue
        try:
            fields = line.decode("utf-8").split("\t")
        except UnicodeDecodeError:
            result.warnings.append(f"{path} line {number}: not UTF-8; skipped.")
            continue
        if len(fields) != len(COLUMNS):
            result.warnings.append(
                f"{path} line {number}: {len(fields)} columns, expected {len(COLUMNS)}; skipped."
            )
            continue
        if fields[0] == "Model":  # the header, also repeated inside the file
            continue
        try:
            layer, head = int(fields[2]), int(fields[4])
        except ValueError:
            result.warnings.append(
                f"{path} line {number}: Layer {fields[2]!r} / Head {fields[4]!r} "
                "is not a whole number; skipped."
            )
            continue
        model = fields[0].strip().lower()
        if model not in (BASE_MODEL, TUNED_MODEL):
            continue
        result.rows += 1
        counter = result.counts.setdefault((model, layer, head), Counter())
        for pair in fields[8].split("|||"):
            words_of_pair = pair.strip().lower().split("=")
            if len(words_of_pair) != 2 or not all(words_of_pair):
                continue
            first, second = sorted(words_of_pair)
            if first in wanted or second in wanted:
                counter[(first, second)] += 1
    return result


def word_counts(pairs: Counter) -> Counter:
    """Per word, the number of distinct pairs occurring more than once that contain it."""
    counts: Counter = Counter()
    for pair, occurrences in pairs.items():
        if occurrences > 1:
            counts.update(set(pair))
    return counts


# --- Table 3 ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerbCell:
    """Mean, population std and number of verbs (with at least one untied head)."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, scores: Sequence[float]) -> VerbCell:
        values = np.asarray(scores, dtype=np.float64)
        if not values.size:
            return cls(math.nan, math.nan, 0)
        return cls(float(values.mean()), float(values.std()), int(values.size))


@dataclass(frozen=True)
class HeadRow:
    """One layer group of Table 3."""

    first_layer: int
    last_layer: int
    instruction: VerbCell
    general: VerbCell
    t: float
    p: float

    @property
    def label(self) -> str:
        return layers_label(self.first_layer, self.last_layer)


@dataclass(frozen=True)
class HeadTable:
    rows: list[HeadRow]
    warnings: list[str]

    def to_json(self) -> dict[str, Any]:
        def number(value: float) -> float | None:
            return None if math.isnan(value) else value

        def cell(c: VerbCell) -> dict[str, Any]:
            return {"mean": number(c.mean), "std": number(c.std), "n": c.n}

        return {
            row.label: {
                "instruction": cell(row.instruction),
                "general": cell(row.general),
                "t": number(row.t),
                "p": number(row.p),
            }
            for row in self.rows
        }


def verb_scores(
    base: dict[tuple[int, int], Counter],
    tuned: dict[tuple[int, int], Counter],
    verbs: Sequence[str],
) -> list[float]:
    """Per verb, the share of untied heads where the tuned count is higher; verbs tied on
    every head are left out. ``base`` / ``tuned`` map head keys to word counts (a head
    missing from one model counts 0 there)."""
    heads = sorted(set(base) | set(tuned))
    empty: Counter = Counter()
    scores = []
    for verb in verbs:
        wins = [
            tuned.get(h, empty)[verb] > base.get(h, empty)[verb]
            for h in heads
            if tuned.get(h, empty)[verb] != base.get(h, empty)[verb]
        ]
        if wins:
            scores.append(sum(wins) / len(wins))
    return scores


def compute_head_table(
    folder: str | os.PathLike[str],
    general: Sequence[str] | None = None,
    instruction: Sequence[str] = PAPER_INSTRUCTION_VERBS,
    wordnet_root: str | os.PathLike[str] = wordnet.DEFAULT_ROOT,
) -> HeadTable:
    """Table 3 from the ``bilinear_interpret`` folder; ``general`` defaults to
    :func:`general_verbs` (WordNet and wordfreq)."""
    instruction = [verb.lower() for verb in instruction]
    general = [
        verb.lower() for verb in (general_verbs(wordnet_root) if general is None else general)
    ]
    pairs = read_head_pairs(folder, set(instruction) | set(general))
    grouped: dict[int, dict[str, dict[tuple[int, int], Counter]]] = {}
    for (model, layer, head), counter in pairs.counts.items():
        models = grouped.setdefault(layer // LAYER_GROUP_SIZE, {BASE_MODEL: {}, TUNED_MODEL: {}})
        models[model][(layer, head)] = word_counts(counter)
    rows = []
    for group in sorted(grouped):
        base, tuned = grouped[group][BASE_MODEL], grouped[group][TUNED_MODEL]
        a = verb_scores(base, tuned, instruction)
        b = verb_scores(base, tuned, general)
        t, p = t_test(a, b)
        first = group * LAYER_GROUP_SIZE
        rows.append(
            HeadRow(first, first + LAYER_GROUP_SIZE - 1, VerbCell.of(a), VerbCell.of(b), t, p)
        )
    return HeadTable(rows, pairs.warnings)
