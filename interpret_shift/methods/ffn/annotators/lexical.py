"""An offline annotator: documented rules over the words, no model.

Every word gets a few surface features; the first rule below that a large enough share
of the words (``share``, default one half) satisfies names the concept and both labels:

1. numbers, number words, math symbols and terms  -> solving math problems / semantics
2. code: keywords, camelCase / snake_case / dotted names, code punctuation -> coding /
   syntax when mostly symbols, semantics when mostly names
3. letters of a non-Latin script (or Latin with diacritics) -> translation / semantics
4. function words and punctuation -> none / syntax
5. abbreviations and acronyms -> professional writing / morphology
6. one shared affix (-ing, -ed, -ly, -tion, un-, re-, ...) -> none / morphology
7. one shared ending that is not an affix (light, night, fight) -> literary writing / phonology
8. sub-word fragments and single letters -> none / phonology
9. one WordNet noun or verb lexicographer file (noun.food, verb.motion, ...) for at least
   ``semantic_share`` (default 0.3) of the words -> the task in ``LEXNAME_TASKS`` /
   semantics, concept the lexname
10. one WordNet part of speech other than noun -> none / syntax, concept "verbs", ...
Otherwise everything is "cannot tell". Rules 9 and 10 need WordNet; without it they
never fire and "known word" falls back to a short-word test.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from interpret_shift.lexicon.wordnet import DEFAULT_ROOT, POS_NAMES, wordnet
from interpret_shift.methods.ffn.annotators import CANNOT_TELL, Annotation, clean_words

NUMBER = re.compile(r"^[+-]?(\d+([.,:/]\d+)*|\d*[.,]\d+)(%|st|nd|rd|th|s|k|m)?$", re.IGNORECASE)
NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
    "fifteen sixteen seventeen eighteen nineteen twenty thirty forty fifty sixty seventy "
    "eighty ninety hundred thousand million billion trillion half twice dozen first second "
    "third fourth fifth".split()
)
MATH_TERMS = frozenset(
    "sin cos tan log ln exp sqrt sum integral derivative equation equations formula theorem "
    "lemma proof matrix vector plus minus times divided multiply multiplied divide fraction "
    "percent ratio solve calculate variable polynomial modulo factorial pi".split()
)
CODE_WORDS = frozenset(
    "def return class import self lambda elif endif function var let const int float double "
    "char void bool boolean str null nil none true false public private protected static "
    "struct enum include println printf print console async await yield try catch except "
    "finally throw raise typedef namespace std cout len range dict args kwargs param params "
    "init foreach switch sudo npm git pip html div span href src http https json xml sql "
    "api url malloc sizeof stdin stdout stderr argv regex tuple numpy pandas matplotlib scipy "
    "torch tensorflow sklearn matlab javascript php jquery css django kotlin golang".split()
)
CODE_SYMBOLS = set("{}[];<>|&$#@`~^_\\=")
FUNCTION_WORDS = frozenset(
    "a an the this that these those my your his her its our their some any no every each "
    "either neither all both few many much more most other another such what which who whom "
    "whose i me you he him she it we us they them myself yourself himself herself itself "
    "ourselves themselves in on at by for with about against between into through during "
    "before after above below to from up down of off over under again further then once "
    "and but or nor so yet if because as until while although though unless whether than "
    "is am are was were be been being have has had having do does did doing will would "
    "shall should can could may might must not there here when where why how very too just "
    "also only own same".split()
)
PREFIXES = ("un", "re", "dis", "pre", "non", "mis", "over", "inter", "sub", "anti")
SUFFIXES = tuple(
    "ing ed ly tion sion ment ness able ible ful less ous ive ize ise ity est er al ism ist".split()
)

#: Task of a semantic concept, by WordNet lexicographer file (unlisted files: daily writing).
LEXNAME_TASKS = {
    **dict.fromkeys(
        (
            "noun.communication",
            "noun.cognition",
            "noun.group",
            "noun.possession",
            "noun.relation",
            "noun.process",
            "noun.attribute",
            "noun.act",
            "noun.state",
            "verb.cognition",
            "verb.communication",
            "verb.social",
            "verb.possession",
            "verb.competition",
        ),
        "professional writing",
    ),
    **dict.fromkeys(
        (
            "noun.feeling",
            "noun.motive",
            "noun.phenomenon",
            "noun.object",
            "verb.emotion",
            "verb.perception",
            "verb.weather",
        ),
        "literary writing",
    ),
    **dict.fromkeys(("noun.quantity", "noun.shape"), "solving math problems"),
}


def script(word: str) -> str | None:
    """The script of a word's letters if it is not plain Latin: 'Cyrillic', 'CJK', ... or
    'Latin with diacritics'; None for ASCII-Latin words and words without letters."""
    scripts = Counter()
    for char in word:
        if unicodedata.category(char).startswith("L") and not char.isascii():
            name = unicodedata.name(char, "")
            first = name.split(" ")[0]
            scripts["Latin with diacritics" if first == "LATIN" else first.title()] += 1
    if not scripts:
        return None
    found = scripts.most_common(1)[0][0]
    return "CJK" if found == "Cjk" else found


def is_number(word: str) -> bool:
    return bool(NUMBER.match(word)) or word.lower() in NUMBER_WORDS


def is_math(word: str) -> bool:
    if word.lower() in MATH_TERMS:
        return True
    return all(unicodedata.category(c) == "Sm" or c in "+-*/^%()" for c in word)


def is_code_name(word: str) -> bool:
    """Keywords and identifiers: camelCase, PascalCase of two words or more, snake_case,
    dotted.names, __dunder__, and markup or special tokens such as <div> or <|im_start|>."""
    return word.lower() in CODE_WORDS or bool(
        re.fullmatch(
            r"_*[a-z]+[A-Z][A-Za-z0-9]*|([A-Z][a-z0-9]{2,}){2,}|\w+_\w+|_\w+|"
            r"[A-Za-z_]\w*(\.\w+)+|\.[a-z_]\w*\(?\)?|</?\|?[\w-]+\|?/?>",
            word,
        )
    )


def is_code_symbol(word: str) -> bool:
    """Tokens made of punctuation that only code uses much: '{', '};', '->', '==', '#include'."""
    if word.startswith("#") and word[1:].isalpha():
        return True
    symbols = [c for c in word if not c.isalnum()]
    return (
        bool(symbols) and len(symbols) >= len(word) / 2 and any(c in CODE_SYMBOLS for c in symbols)
    )


def is_punctuation(word: str) -> bool:
    return all(unicodedata.category(c)[0] in "PS" for c in word)


def is_abbreviation(word: str) -> bool:
    """'B.', 'a.m.', 'NASA', 'etc.' (all caps of 2-5 letters, or letters ending in a dot)."""
    return bool(re.fullmatch(r"(?:[A-Za-z]{1,4}\.)+|[A-Z]{2,5}s?", word))


def affix(words: Sequence[str]) -> tuple[str, int]:
    """The affix most words share (stems of at least three letters), as '-ing' or 'un-'."""
    counts = Counter()
    for word in {w.lower() for w in words if w.isalpha()}:
        counts.update(f"-{s}" for s in SUFFIXES if word.endswith(s) and len(word) >= len(s) + 3)
        counts.update(f"{p}-" for p in PREFIXES if word.startswith(p) and len(word) >= len(p) + 3)
    return counts.most_common(1)[0] if counts else ("", 0)


def rhyme(words: Sequence[str]) -> tuple[str, int]:
    """The 3- or 4-letter ending most words share when it is not an affix: '-ight'."""
    counts = Counter()
    for word in {w.lower() for w in words if w.isalpha() and len(w) >= 3}:
        counts.update(
            f"-{word[-n:]}"
            for n in (3, 4)
            if len(word) >= n and not any(word.endswith(s) for s in SUFFIXES)
        )
    if not counts:
        return "", 0
    top = max(counts.values())
    return max((e for e, c in counts.items() if c == top), key=len), top


class LexicalAnnotator:
    """Rules over the words themselves; deterministic, so the seed is only recorded."""

    name = "lexical"
    description = "offline rules: numbers, code, scripts, affixes, function words, WordNet"

    def __init__(
        self,
        share: float = 0.5,
        semantic_share: float = 0.3,
        wordnet_root: str | Path = DEFAULT_ROOT,
    ) -> None:
        self.share, self.semantic_share = share, semantic_share
        self.wordnet_root = Path(wordnet_root)

    @property
    def wordnet(self):
        """The WordNet reader (parsed once per process, on first use), or None."""
        return wordnet(self.wordnet_root)

    def annotate(self, words: Sequence[str], seed: int = 0) -> Annotation:
        words = clean_words(words)
        for rule in self._rules():
            found = rule(words) if words else None
            if found is not None:
                concept, task, level = found
                return Annotation(concept, (task,), level, seed, f"lexical: {rule.__name__}")
        return Annotation(CANNOT_TELL, (CANNOT_TELL,), CANNOT_TELL, seed, "lexical: no rule")

    # -- the rules, in order -----------------------------------------------------------
    def _rules(self) -> list[Callable[[list[str]], tuple[str, str, str] | None]]:
        return [
            self.math,
            self.code,
            self.foreign,
            self.function_words,
            self.abbreviations,
            self.morphology,
            self.rhyming,
            self.fragments,
            self.lexname,
            self.part_of_speech,
        ]

    def _enough(self, count: int, words: Sequence[str], share: float | None = None) -> bool:
        return count > 0 and count >= (share or self.share) * len(words)

    def math(self, words):
        numbers = sum(map(is_number, words))
        if self._enough(numbers + sum(is_math(w) and not is_number(w) for w in words), words):
            concept = "numbers" if numbers == len(words) else "numbers and math"
            return concept, "solving math problems", "semantics"
        return None

    def code(self, words):
        names = sum(map(is_code_name, words))
        symbols = sum(is_code_symbol(w) and not is_code_name(w) for w in words)
        if self._enough(names + symbols, words):
            return "code tokens", "coding", "syntax" if symbols > names else "semantics"
        return None

    def foreign(self, words):
        scripts = Counter(s for s in map(script, words) if s)
        if self._enough(sum(scripts.values()), words):
            name = scripts.most_common(1)[0][0]
            concept = (
                "non-English Latin-script words"
                if name == "Latin with diacritics"
                else f"words in {name} script"
            )
            return concept, "translation", "semantics"
        return None

    def function_words(self, words):
        function = sum(w.lower() in FUNCTION_WORDS for w in words)
        punctuation = sum(map(is_punctuation, words))
        if self._enough(function + punctuation, words):
            concept = (
                "punctuation"
                if punctuation > 2 * function
                else "function words"
                if function > 2 * punctuation
                else "function words and punctuation"
            )
            return concept, "none", "syntax"
        return None

    def abbreviations(self, words):
        if self._enough(sum(map(is_abbreviation, words)), words):
            return "abbreviations and acronyms", "professional writing", "morphology"
        return None

    def morphology(self, words):
        shared, count = affix(words)
        if self._enough(count, words):
            kind = "suffix" if shared.startswith("-") else "prefix"
            return f"words with the {kind} {shared}", "none", "morphology"
        return None

    def rhyming(self, words):
        ending, count = rhyme(words)
        if self._enough(count, words):
            return f"rhyming words ({ending})", "literary writing", "phonology"
        return None

    def fragments(self, words):
        def fragment(word: str) -> bool:
            if not word.isalpha() or word.lower() in FUNCTION_WORDS or is_code_name(word):
                return False
            if len(word) == 1:
                return True
            return len(word) <= 3 if self.wordnet is None else not self.wordnet.knows(word)

        if self._enough(sum(map(fragment, words)), words):
            return "sub-word fragments", "none", "phonology"
        return None

    def _senses(self, words):
        if self.wordnet is None:
            return []
        senses = (self.wordnet.sense(w) for w in words if w.lower() not in FUNCTION_WORDS)
        return [s for s in senses if s is not None]

    def lexname(self, words):
        # adj.all, adv.all, ... hold whole parts of speech: that is syntax (rule 10).
        # With 41 noun and verb files, a third of the words in one is far above chance.
        counts = Counter(s.lexname for s in self._senses(words) if s.pos in "nv")
        if counts and self._enough(counts.most_common(1)[0][1], words, self.semantic_share):
            name = counts.most_common(1)[0][0]
            return name, LEXNAME_TASKS.get(name, "daily writing"), "semantics"
        return None

    def part_of_speech(self, words):
        # most content words are nouns, so "nouns" would say nothing: verbs, adjectives, adverbs
        counts = Counter(s.pos for s in self._senses(words) if s.pos != "n")
        if counts and self._enough(counts.most_common(1)[0][1], words):
            return POS_NAMES[counts.most_common(1)[0][0]], "none", "syntax"
        return None
