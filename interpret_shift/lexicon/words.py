"""Word lists: which words the weight-only explainers describe units with.

A :class:`WordList` is words (most frequent first when ``frequencies`` are known) plus,
once resolved against a tokenizer, the token ids of each word. ``embeddings(source)``
turns it into one row per word of the model's input or output embedding; a word of
several tokens gets the mean of its tokens' rows.

Providers make word lists and are plugins (``interpret_shift_word_lists``): each has a
``name`` and ``load(subject=None, *, path=None, size=None) -> WordList``.

- ``vocabulary``: the subject's tokenizer vocabulary, whole-word alphabetic tokens.
- ``file``: one word a line, optionally ``word<TAB>frequency`` (e.g. the paper's
  SingleShareGPT_Vocab.tsv).
- ``wordfreq``: English words by frequency (needs the ``wordfreq`` package).
- ``instruction-verbs``: :data:`INSTRUCTION_VERBS`, or a file.
- ``general-verbs``: frequent verbs from WordNet (Debian ``wordnet-base``) ranked by
  ``wordfreq``, without instruction verbs and stop words; or a file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from interpret_shift.core.bytelevel import byte_decoder
from interpret_shift.core.resources import Resources
from interpret_shift.errors import InterpretShiftError
from interpret_shift.lexicon import wordnet

#: Verbs that typically open an instruction ("Translate ...", "Summarize ...").
INSTRUCTION_VERBS: tuple[str, ...] = (
    "translate", "summarize", "classify", "explain", "write", "describe", "list", "rewrite",
    "generate", "answer", "create", "compose", "edit", "identify", "extract", "compare",
    "provide", "suggest", "analyze", "evaluate", "convert", "paraphrase", "outline", "define",
    "calculate", "solve", "recommend", "categorize", "rank", "sort", "correct", "design",
    "draft", "determine", "predict", "discuss", "brainstorm", "simplify", "rephrase",
    "expand", "shorten", "format", "respond", "illustrate", "justify", "implement", "propose",
    "formulate", "elaborate", "specify",
)  # fmt: skip

#: Function words and auxiliaries: too frequent and too grammatical to count as verbs.
STOP_WORDS: frozenset[str] = frozenset(
    """a about above after again against all am an and any are as at be been before being
    below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers him his how i if in into is it its itself
    just let may me might more most must my no nor not now of off on once only or other our
    out over own same shall she should so some such than that the their them then there these
    they this those through to too under until up very was we were what when where which
    while who whom why will with would you your""".split()
)

MARKERS = {"byte-level": "Ġ", "sentencepiece": "▁"}
#: How a word becomes token ids (:func:`word_token_ids`): ``shorter`` (the default) or ``paper``.
WORD_RULES = ("shorter", "paper")
# Without word-boundary markers, an alphabetic token counts as a word from this frequency on.
UNMARKED_MIN_FREQUENCY = 1e-6


@dataclass(frozen=True)
class WordList:
    """Words, optional frequencies (same order) and, once resolved, each word's token ids."""

    words: list[str]
    frequencies: np.ndarray | None = None
    token_ids: list[list[int]] | None = None
    name: str = "custom"

    def __post_init__(self) -> None:
        if self.frequencies is not None and len(self.frequencies) != len(self.words):
            raise ValueError("frequencies and words differ in length")
        if self.token_ids is not None and len(self.token_ids) != len(self.words):
            raise ValueError("token_ids and words differ in length")

    def __len__(self) -> int:
        return len(self.words)

    def most_frequent(self, n: int) -> np.ndarray:
        """Indices of the ``n`` most frequent words (list order when there are no frequencies)."""
        if self.frequencies is None:
            return np.arange(min(n, len(self)))
        return np.argsort(-np.asarray(self.frequencies), kind="stable")[:n]

    def top(self, n: int | None) -> WordList:
        """The ``n`` most frequent words, in frequency order (all of them for None)."""
        if n is None or n >= len(self):
            return self
        return self.subset(self.most_frequent(n))

    def subset(self, index: Sequence[int]) -> WordList:
        index = [int(i) for i in index]
        return replace(
            self,
            words=[self.words[i] for i in index],
            frequencies=None if self.frequencies is None else np.asarray(self.frequencies)[index],
            token_ids=None if self.token_ids is None else [self.token_ids[i] for i in index],
        )

    def lowered_ids(self) -> np.ndarray:
        """One id per word, equal for words that differ only in case."""
        return np.unique([w.lower() for w in self.words], return_inverse=True)[1].reshape(-1)

    def tokenized(self, tokenizer, rule: str = "shorter") -> WordList:
        """Resolve token ids with ``tokenizer`` by ``rule`` (see :func:`word_token_ids`);
        ids already known are kept as they are."""
        if self.token_ids is not None:
            return self
        if tokenizer is None:
            raise InterpretShiftError(
                f"The word list {self.name!r} has no token ids and the model has no tokenizer.",
                "Load the model with its tokenizer, or build the WordList with token_ids.",
            )
        return replace(self, token_ids=word_token_ids(tokenizer, self.words, rule))

    def embeddings(self, source, matrix: str = "input") -> torch.Tensor:
        """``(n_words, d_model)`` rows of the input (or output) embedding, mean over tokens.

        ``source`` is a Subject (its tokenizer resolves token ids if needed) or a Weights.
        """
        weights = getattr(source, "weights", source)
        tokenizer = getattr(source, "tokenizer", None)
        words = self if tokenizer is None else self.tokenized(tokenizer)
        if words.token_ids is None:
            raise InterpretShiftError(
                f"The word list {self.name!r} has no token ids.",
                "Call .tokenized(tokenizer) first, or pass the Subject instead of its Weights.",
            )
        if matrix not in ("input", "output"):
            raise ValueError(f"matrix must be 'input' or 'output', not {matrix!r}")
        table = weights.embed() if matrix == "input" else weights.unembed()
        return mean_rows(table, words.token_ids)


def mean_rows(table: torch.Tensor, token_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """Mean of ``table``'s rows per group of ids, in one ``embedding_bag`` call."""
    lengths = torch.tensor([len(ids) for ids in token_ids])
    if bool((lengths == 0).any()):
        raise ValueError("every word needs at least one token id")
    flat = torch.tensor([i for ids in token_ids for i in ids], dtype=torch.long)
    offsets = torch.cumsum(lengths, 0) - lengths
    return F.embedding_bag(flat, table.float(), offsets, mode="mean")


def word_token_ids(tokenizer, words: Sequence[str], rule: str = "shorter") -> list[list[int]]:
    """Token ids per word, by ``rule``:

    - ``shorter`` (the default): the shorter of " word" and "word", " word" on a tie.
      " word" is how a word looks inside a sentence for byte-level BPE; sentencepiece
      tokenizers add their own marker to "word", where " word" may cost an extra token.
    - ``paper`` (the paper's code): " word" without special tokens, minus a leading token
      that is a bare space marker (SentencePiece "▁" or byte-level "Ġ" alone, or any token
      that decodes to white space only) when other tokens follow.

    A word of several tokens is later embedded as the mean of its tokens' rows.
    """
    if rule not in WORD_RULES:
        raise InterpretShiftError(
            f"Unknown word rule {rule!r}.", f"Use one of: {', '.join(WORD_RULES)}."
        )
    spaced = tokenizer([" " + w for w in words], add_special_tokens=False)["input_ids"]
    if rule == "paper":
        ids = [s[1:] if len(s) > 1 and _bare_space(tokenizer, s[0]) else s for s in spaced]
    else:
        bare = tokenizer(list(words), add_special_tokens=False)["input_ids"]
        ids = [s if len(s) <= len(b) or not b else b for s, b in zip(spaced, bare)]
    empty = [w for w, i in zip(words, ids) if not i]
    if empty:
        raise InterpretShiftError(
            f"The tokenizer maps {len(empty)} word(s) to no token, e.g. {empty[0]!r}.",
            "Remove empty or whitespace-only words from the word list.",
        )
    return ids


def _bare_space(tokenizer, token_id: int) -> bool:
    """Whether a token is a word-boundary marker alone ("▁", "Ġ") or only white space."""
    piece = tokenizer.convert_ids_to_tokens(int(token_id))
    if isinstance(piece, str) and piece in (*MARKERS.values(), " "):
        return True
    text = tokenizer.decode([int(token_id)])
    return bool(text) and not text.strip()


# -- providers ------------------------------------------------------------------------------


class VocabularyWords:
    """The tokenizer's whole-word alphabetic tokens, deduplicated case-insensitively.

    A whole-word token starts with the word-boundary marker (byte-level ``Ġ`` or
    sentencepiece ``▁``); of case variants the lowest id is kept. Tokenizers that split white
    space into tokens of its own put no marker on words: then every alphabetic token is a
    candidate, and, wordfreq permitting, those rarer in English than once per million words
    (mostly pieces, such as 'struction' or 'ful') are dropped. When ``wordfreq`` is
    installed the words get its English frequencies, so ``size`` keeps real frequent words
    rather than the word-start fragments ('th', 'st') that BPE merges first; otherwise they
    rank in token-id order.
    """

    name = "vocabulary"
    description = "whole-word alphabetic tokens of the model's own tokenizer"

    def load(self, subject=None, *, path=None, size=None) -> WordList:
        tokenizer = getattr(subject, "tokenizer", subject)
        if tokenizer is None or not hasattr(tokenizer, "get_vocab"):
            raise InterpretShiftError(
                "The 'vocabulary' word list needs the model's tokenizer, and there is none.",
                "Load the model with its tokenizer, or choose a word list from a file.",
            )
        words, marked = vocabulary_words(tokenizer.get_vocab())
        try:
            wordfreq = _wordfreq()
        except InterpretShiftError:
            return words.top(size)
        freq = np.array([wordfreq.word_frequency(w, "en") for w in words.words])
        words = replace(words, frequencies=freq)
        if not marked:
            words = words.subset(np.flatnonzero(freq >= UNMARKED_MIN_FREQUENCY))
        return words.top(size)


def vocabulary_words(vocab: dict[str, int]) -> tuple[WordList, bool]:
    """Alphabetic tokens of a ``token -> id`` vocabulary as a word list, and whether they
    were told from word pieces by a word-boundary marker."""
    counts = {kind: sum(t.startswith(m) for t in vocab) for kind, m in MARKERS.items()}
    scheme = max(counts, key=counts.get)
    if counts[scheme] == 0:
        raise InterpretShiftError(
            "The tokenizer marks no word boundaries ('Ġ' or '▁'), so whole-word tokens "
            "cannot be told from word pieces.",
            "Use a word list from a file (--words file --words-path FILE).",
        )
    decode = _decode_byte_level if scheme == "byte-level" else str
    tokens = sorted(vocab.items(), key=lambda item: item[1])
    for marker in (MARKERS[scheme], ""):  # "": white space is split off, words carry no marker
        seen: set[str] = set()
        words, ids = [], []
        for token, index in tokens:
            if not token.startswith(marker):
                continue
            word = decode(token[len(marker) :])
            if not word or not word.isalpha() or word.lower() in seen:
                continue
            seen.add(word.lower())
            words.append(word)
            ids.append([index])
        if words:
            break
    return WordList(words, token_ids=ids, name="vocabulary"), bool(marker)


def _decode_byte_level(text: str) -> str:
    decoder = byte_decoder()
    try:
        return bytes(decoder[c] for c in text).decode("utf-8")
    except (KeyError, UnicodeDecodeError):
        return ""  # a partial UTF-8 sequence is not a word


class FileWords:
    """One word a line, optionally ``word<TAB>frequency``; blank lines are skipped."""

    name = "file"
    description = "words from a text file (word[TAB]frequency per line)"

    def load(self, subject=None, *, path=None, size=None) -> WordList:
        if path is None:
            raise InterpretShiftError(
                "The 'file' word list needs a path.", "Pass the file with --words-path FILE."
            )
        return read_word_file(path).top(size)


def read_word_file(path: str | Path) -> WordList:
    """Parse a word file; every malformed line is reported with its number."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as error:
        raise InterpretShiftError(f"No word file at {path}.", "Check the path.") from error
    except UnicodeDecodeError as error:
        raise InterpretShiftError(
            f"{path} is not UTF-8 text ({error.reason} at byte {error.start}).",
            "Save the word list as UTF-8, one word a line.",
        ) from error
    words: list[str] = []
    frequencies: list[float] = []
    seen: set[str] = set()
    with_frequency: bool | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        where = f"{path.name} line {number}"
        if len(fields) > 2:
            raise InterpretShiftError(
                f"{where}: {len(fields)} tab-separated fields.", "Write 'word' or 'word<TAB>freq'."
            )
        word = fields[0].strip()
        if not word:
            raise InterpretShiftError(f"{where}: the word is empty.", "Remove the line.")
        if with_frequency is None:
            with_frequency = len(fields) == 2
        if with_frequency != (len(fields) == 2):
            raise InterpretShiftError(
                f"{where}: some lines give a frequency and others do not.",
                "Give a frequency on every line or on none.",
            )
        if word in seen:
            continue
        if with_frequency:
            frequencies.append(_frequency(fields[1], where))
        seen.add(word)
        words.append(word)
    if not words:
        raise InterpretShiftError(f"{path} holds no words.", "Write one word a line.")
    freq = np.asarray(frequencies, dtype=np.float64) if with_frequency else None
    return WordList(words, freq, name=f"file:{path.name}")


def _frequency(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value) or value < 0:
        raise InterpretShiftError(
            f"{where}: frequency {text.strip()!r} is not a non-negative number.",
            "Write 'word<TAB>frequency' with a number such as 0.0012 or 345.",
        )
    return value


class FrequencyWords:
    """The most frequent alphabetic English words according to ``wordfreq``."""

    name = "wordfreq"
    description = "most frequent English words (wordfreq package)"

    def load(self, subject=None, *, path=None, size=None) -> WordList:
        return frequent_words(size or 10_000)


def frequent_words(size: int, lang: str = "en") -> WordList:
    wordfreq = _wordfreq()
    asked = size
    while True:
        candidates = wordfreq.top_n_list(lang, int(asked * 1.3) + 100)
        words = [w for w in candidates if w.isalpha()][:size]
        if len(words) == size or len(candidates) < int(asked * 1.3) + 100:
            break
        asked *= 2
    freq = np.array([wordfreq.word_frequency(w, lang) for w in words])
    return WordList(words, freq, name=f"wordfreq:{lang}")


def _wordfreq():
    try:
        import wordfreq
    except ImportError as error:
        raise InterpretShiftError(
            "This word list needs the 'wordfreq' package (English word frequencies).",
            "Install it: pip install 'interpret-shift[words]' (or pip install wordfreq).",
        ) from error
    return wordfreq


class InstructionVerbs:
    """:data:`INSTRUCTION_VERBS`, or the verbs of a file."""

    name = "instruction-verbs"
    description = "verbs that open instructions (translate, summarize, classify, ...)"

    def load(self, subject=None, *, path=None, size=None) -> WordList:
        if path is not None:
            return read_word_file(path).top(size)
        return WordList(list(INSTRUCTION_VERBS), name="instruction-verbs").top(size)


class GeneralVerbs:
    """Frequent English verbs that are not instruction verbs: the comparison group.

    WordNet's verb lemmas, kept when SemCor tags them as verbs at least as often as
    anything else (so 'time' or 'people' do not count), ranked by ``wordfreq``, without
    :data:`INSTRUCTION_VERBS` and :data:`STOP_WORDS`. A file replaces all of this.
    """

    name = "general-verbs"
    description = "frequent WordNet verbs ranked by wordfreq, instruction verbs removed"

    def load(self, subject=None, *, path=None, size=None) -> WordList:
        if path is not None:
            return read_word_file(path).top(size)
        return general_verbs(size or 100)


def general_verbs(
    size: int = 100,
    wordnet_dir: str | Path = wordnet.DEFAULT_ROOT,
    exclude: Sequence[str] = INSTRUCTION_VERBS,
) -> WordList:
    wordnet_dir = Path(wordnet_dir)
    index, counts = wordnet_dir / "index.verb", wordnet_dir / "cntlist.rev"
    if not index.exists() or not counts.exists():
        raise InterpretShiftError(
            f"WordNet is not installed: {index} or {counts} is missing.",
            "Install Debian's WordNet data (apt-get install wordnet-base), set WORDNET_DIR to "
            "a WordNet 3.0 'dict' folder, or give the verbs in a file (one verb a line).",
        )
    wordfreq = _wordfreq()
    drop = STOP_WORDS | {w.lower() for w in exclude}
    lemmas = wordnet.lemmas(wordnet_dir, "v")
    verb_share = wordnet.semcor_verb_share(wordnet_dir)
    verbs = [w for w in lemmas if w.isalpha() and w not in drop and verb_share.get(w, 0) >= 0.5]
    freq = np.array([wordfreq.word_frequency(w, "en") for w in verbs])
    return WordList(verbs, freq, name="general-verbs").top(size)


#: The built-in providers, as registered under ``interpret_shift_word_lists``.
BUILTIN_WORD_LISTS = (
    VocabularyWords(), FileWords(), FrequencyWords(), InstructionVerbs(), GeneralVerbs()
)  # fmt: skip


def load_words(
    name: str, subject=None, *, path=None, size=None, resources: Resources | None = None
) -> WordList:
    """The word list ``name`` for ``subject``: a built-in provider or one in ``resources``."""
    provider = (resources or Resources()).get("word_lists", name, BUILTIN_WORD_LISTS, "word list")
    return provider.load(subject, path=path, size=size)
