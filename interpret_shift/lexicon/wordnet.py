"""The one WordNet 3.0 reader: a word's part of speech and lexname (for the lexical
annotator), the lemmas of a part of speech and how often SemCor tags them as verbs (for the
general-verb list).

Reads the database files directly (Debian's ``wordnet-base`` puts them in
``/usr/share/wordnet``). NLTK's reader would need its ``lexnames`` file, which that
package does not ship, and refuses paths outside its data folders; the format is simple
(``wndb(5WN)``), so a few lines do.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

#: ``$WORDNET_DIR`` (or WordNet's own ``$WNHOME``), else Debian's ``wordnet-base`` folder.
DEFAULT_ROOT = Path(
    os.environ.get("WORDNET_DIR") or os.environ.get("WNHOME") or "/usr/share/wordnet"
)
POS_FILES = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}
POS_NAMES = {"n": "nouns", "v": "verbs", "a": "adjectives", "r": "adverbs"}

#: The lexicographer files, by number (lexnames(5WN)).
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()

#: Inflectional endings WordNet's morphy strips, per part of speech.
DETACH = {
    "n": (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""),
          ("ing", "e"), ("ing", "")),
    "a": (("er", ""), ("est", ""), ("er", "e"), ("est", "e")),
    "r": (),
}  # fmt: skip


@dataclass(frozen=True)
class Sense:
    """A word's most used sense: part of speech (n, v, a, r) and lexicographer file."""

    pos: str
    lexname: str


@dataclass(frozen=True)
class _Entry:
    tagged: int  # how often the lemma's senses were seen in the tagged corpus
    senses: int
    first_offset: int


class WordNet:
    """Lemma lookup with morphy-style base forms; index files are parsed once on first use."""

    def __init__(self, root: str | Path = DEFAULT_ROOT) -> None:
        self.root = Path(root)
        self.index: dict[str, dict[str, _Entry]] = {}
        self.exceptions: dict[str, dict[str, list[str]]] = {}
        for pos, name in POS_FILES.items():
            self.index[pos] = _read_index(self.root / f"index.{name}")
            self.exceptions[pos] = _read_exceptions(self.root / f"{name}.exc")

    @staticmethod
    def available(root: str | Path = DEFAULT_ROOT) -> bool:
        return all(
            (Path(root) / f"{kind}.{name}").exists()
            for name in POS_FILES.values()
            for kind in ("index", "data")
        )

    def base_forms(self, word: str, pos: str) -> list[str]:
        """Lemmas ``word`` may be an inflection of (itself first), as WordNet's morphy finds."""
        key = word.lower().replace(" ", "_")
        index = self.index[pos]
        forms = [key] if key in index else []
        forms += [base for base in self.exceptions[pos].get(key, []) if base in index]
        for suffix, replacement in DETACH[pos]:
            if key.endswith(suffix) and len(key) > len(suffix):
                base = key[: -len(suffix)] + replacement
                if base in index:
                    forms.append(base)
        return list(dict.fromkeys(forms))

    def knows(self, word: str) -> bool:
        return any(self.base_forms(word, pos) for pos in POS_FILES)

    def sense(self, word: str) -> Sense | None:
        """The part of speech whose senses are most used in the tagged corpus, with its
        first (most frequent) sense's lexicographer file."""
        best: tuple[tuple[int, int], str, _Entry] | None = None
        for pos in POS_FILES:
            for base in self.base_forms(word, pos)[:1]:
                entry = self.index[pos][base]
                rank = (entry.tagged, entry.senses)
                if best is None or rank > best[0]:
                    best = (rank, pos, entry)
        if best is None:
            return None
        _, pos, entry = best
        return Sense(pos, LEXNAMES[self._lexfile(pos, entry.first_offset)])

    def _lexfile(self, pos: str, offset: int) -> int:
        with open(self.root / f"data.{POS_FILES[pos]}", "rb") as handle:
            handle.seek(offset)
            return int(handle.read(11).split()[1])  # "%08d %02d ..."


def _read_index(path: Path) -> dict[str, _Entry]:
    """``lemma pos synset_cnt p_cnt [ptr...] sense_cnt tagsense_cnt offset...`` per line."""
    entries = {}
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith(" "):  # licence header
                continue
            fields = line.split()
            synsets, pointers = int(fields[2]), int(fields[3])
            tagged = int(fields[5 + pointers])
            entries[fields[0]] = _Entry(tagged, synsets, int(fields[6 + pointers]))
    return entries


def _read_exceptions(path: Path) -> dict[str, list[str]]:
    if not path.exists():
        return {}
    with open(path, encoding="utf-8") as handle:
        return {fields[0]: fields[1:] for fields in map(str.split, handle) if len(fields) > 1}


@cache
def wordnet(root: str | Path = DEFAULT_ROOT) -> WordNet | None:
    """The shared reader, or None when WordNet is not installed."""
    return WordNet(root) if WordNet.available(root) else None


def lemmas(root: str | Path = DEFAULT_ROOT, pos: str = "v") -> list[str]:
    """Every lemma of a part of speech (n, v, a, r), in index order."""
    index = Path(root) / f"index.{POS_FILES[pos]}"
    return [
        line.split(" ", 1)[0]
        for line in index.read_text(encoding="utf-8").splitlines()
        if line and not line.startswith(" ")  # indented lines are the licence header
    ]


def semcor_verb_share(root: str | Path = DEFAULT_ROOT) -> dict[str, float]:
    """Per lemma, the share of its SemCor-tagged uses that are verb senses.

    ``cntlist.rev`` lines are ``lemma%ss_type:... sense_number tag_count``; ss_type 2 is verb.
    """
    verb: dict[str, int] = {}
    total: dict[str, int] = {}
    for line in (Path(root) / "cntlist.rev").read_text(encoding="utf-8").splitlines():
        key, _, count = line.split()
        lemma, _, sense = key.partition("%")
        total[lemma] = total.get(lemma, 0) + int(count)
        if sense.startswith("2"):
            verb[lemma] = verb.get(lemma, 0) + int(count)
    return {lemma: verb.get(lemma, 0) / n for lemma, n in total.items() if n > 0}
