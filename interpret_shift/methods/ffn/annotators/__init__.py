"""Concept annotators: turn an FFN component's top words into a concept and two labels.

The labels are the paper's (Table 5): the assistant *task* the concept serves and the
*linguistic level* it belongs to. An annotator is any object with a ``name`` and
``annotate(words, seed=0) -> Annotation``; built-ins are ``lexical`` (rules, offline),
``local-llm`` (a local instruction-tuned model) and ``openai`` (any OpenAI-compatible
endpoint). LLM replies all go through :func:`parse_reply`, so every annotator yields
the same fixed categories, or ``"cannot tell"``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Protocol, runtime_checkable

TASKS = (
    "daily writing",
    "literary writing",
    "professional writing",
    "solving math problems",
    "coding",
    "translation",
    "none",
)
LEVELS = ("phonology", "morphology", "syntax", "semantics")
CANNOT_TELL = "cannot tell"


@dataclass(frozen=True)
class Annotation:
    """One reading of one word list.

    ``tasks`` may name several tasks (a concept can serve more than one, as in the paper);
    ``task`` is the first. Everything is ``"cannot tell"`` when the words show no concept.
    """

    concept: str
    tasks: tuple[str, ...]
    level: str
    seed: int = 0
    raw: str = ""

    @property
    def task(self) -> str:
        return self.tasks[0] if self.tasks else CANNOT_TELL

    @property
    def explainable(self) -> bool:
        return self.concept != CANNOT_TELL

    def to_dict(self) -> dict:
        return {
            "concept": self.concept,
            "tasks": list(self.tasks),
            "level": self.level,
            "seed": self.seed,
            "raw": self.raw,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Annotation:
        return cls(
            data["concept"],
            tuple(data["tasks"]),
            data["level"],
            int(data["seed"]),
            data.get("raw", ""),
        )


@runtime_checkable
class Annotator(Protocol):
    """What the ``interpret_shift_annotators`` hook provides: ready-to-use instances."""

    name: str

    def annotate(self, words: Sequence[str], seed: int = 0) -> Annotation: ...


def annotate_all(
    annotator: Annotator, word_lists: Sequence[Sequence[str]], seeds: Sequence[int] = (0,)
) -> list[list[Annotation]]:
    """Annotations of every word list under every seed: ``result[seed_index][list_index]``."""
    return [[annotator.annotate(words, seed) for words in word_lists] for seed in seeds]


def clean_words(words: Sequence[str]) -> list[str]:
    """Words as shown to an annotator: stripped, tokenizer space markers removed, no blanks."""
    cleaned = (word.replace("\u0120", " ").replace("\u2581", " ").strip() for word in words)
    return [word for word in cleaned if word]


# -- the shared reply parser ------------------------------------------------------------

#: Phrases (lower case, tried in order) that name each task in a free-form reply.
TASK_ALIASES: tuple[tuple[str, str], ...] = (
    ("daily writing", "daily writing"),
    ("literary writing", "literary writing"),
    ("professional writing", "professional writing"),
    ("daily", "daily writing"),
    ("everyday", "daily writing"),
    ("casual", "daily writing"),
    ("literary", "literary writing"),
    ("creative", "literary writing"),
    ("poetry", "literary writing"),
    ("professional", "professional writing"),
    ("academic", "professional writing"),
    ("technical writing", "professional writing"),
    ("math", "solving math problems"),
    ("arithmetic", "solving math problems"),
    ("coding", "coding"),
    ("programming", "coding"),
    ("code", "coding"),
    ("translat", "translation"),
    ("none", "none"),
)
LEVEL_ALIASES: tuple[tuple[str, str], ...] = (
    ("phonolog", "phonology"),
    ("phonetic", "phonology"),
    ("morpholog", "morphology"),
    ("syntax", "syntax"),
    ("syntactic", "syntax"),
    ("grammar", "syntax"),
    ("grammat", "syntax"),
    ("semantic", "semantics"),
)
_FIELD = re.compile(r"^[\s>*#_`-]*(concept|tasks?|level)[\s*_`]*[:=]\s*(.*)$", re.IGNORECASE)
_CANNOT = re.compile(r"can(?:not|'t|’t| not)\s+tell", re.IGNORECASE)


def parse_reply(text: str, seed: int = 0) -> Annotation:
    """Read ``Concept: ...`` / ``Task: ...`` / ``Level: ...`` lines out of a model's reply.

    Case, markdown decoration and text around the lines are tolerated; a task or level
    that names none of the fixed categories becomes ``"cannot tell"``, and so does
    everything when the concept is missing or says it cannot tell.
    """
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = _FIELD.match(line)
        if match:
            name = match.group(1).lower().rstrip("s")
            fields.setdefault(name, match.group(2).strip(" *_`\t"))
    concept = fields.get("concept", "").strip().rstrip(".").strip()
    if not concept or _CANNOT.search(concept):
        return Annotation(CANNOT_TELL, (CANNOT_TELL,), CANNOT_TELL, seed, text)
    tasks = _mentions(fields.get("task", ""), TASK_ALIASES)
    levels = _mentions(fields.get("level", ""), LEVEL_ALIASES)
    return Annotation(
        concept, tasks or (CANNOT_TELL,), levels[0] if levels else CANNOT_TELL, seed, text
    )


def _mentions(value: str, aliases: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    """The categories named in ``value``, in the order they appear, each once."""
    if _CANNOT.search(value):
        return ()
    lowered = value.lower()
    found: dict[str, int] = {}
    taken: list[range] = []
    for phrase, category in aliases:  # longer phrases come first in the tables
        for match in re.finditer(r"\b" + re.escape(phrase), lowered):
            span = range(match.start(), match.end())
            if any(span.start in t or t.start in span for t in taken):
                continue
            taken.append(span)
            found[category] = min(found.get(category, match.start()), match.start())
    ordered = tuple(sorted(found, key=found.get))
    if "none" in ordered and len(ordered) > 1:  # "none" only stands alone
        ordered = tuple(c for c in ordered if c != "none")
    return ordered


# -- the shared prompt ------------------------------------------------------------------

#: The paper's three instructions (neuron interpreter, task, linguistic level) in one turn.
INSTRUCTION = (
    "You are a neuron interpreter for neural networks. Each neuron looks for one particular "
    "concept/topic/theme/behavior/pattern. Look at some words the neuron activates for and "
    "summarize in a single concept what the neuron is looking for. Don't list examples of "
    "words and keep your summary as concise as possible. If you cannot summarize more than "
    "half of the given words within one clear concept, say 'Cannot Tell'.\n"
    "Then say which assistant tasks the concept can be used for: daily writing, literary "
    "writing, professional writing, solving math problems, coding, translation, or None; "
    "separate several with ';'.\n"
    "Then classify the concept into one linguistic level: phonology, morphology, syntax or "
    "semantics.\n"
    "Answer in exactly three lines:\nConcept: ...\nTask: ...\nLevel: ..."
)
#: Few-shot turns (user words, assistant reply), after the paper's examples.
EXAMPLES: tuple[tuple[str, str], ...] = (
    (
        "Words: January, terday, cember, April, July, September, December, Thursday, "
        "November, Tuesday.",
        "Concept: dates\nTask: daily writing\nLevel: semantics",
    ),
    (
        "Words: B., M., e., R., C., OK., A., H., D., S., J., al., p., T., N., W., St., a.m..",
        "Concept: abbreviations and acronyms\nTask: professional writing\nLevel: morphology",
    ),
    (
        "Words: Go, Python, C++, Java, c#, python3, cuda, java, javascript, basic.",
        "Concept: programming languages\nTask: coding\nLevel: semantics",
    ),
    (
        "Words: 2, 7, 15, 42, 100, 3.14, 0, 9, 64, +, =.",
        "Concept: numbers\nTask: solving math problems\nLevel: semantics",
    ),
    (
        "Words: light, night, bright, fight, might, sight, tight, flight.",
        "Concept: rhyming words\nTask: literary writing\nLevel: phonology",
    ),
    (
        "Words: the, Paris, 7, running, {, blue, ation, zz.",
        "Concept: Cannot Tell\nTask: Cannot Tell\nLevel: Cannot Tell",
    ),
)


def format_words(words: Sequence[str], limit: int = 30) -> str:
    """The user message every LLM annotator sends: ``Words: a, b, c.``"""
    return "Words: " + ", ".join(clean_words(words)[:limit]) + "."


def chat_messages(words: Sequence[str], limit: int = 30) -> list[dict[str, str]]:
    """System instruction, few-shot turns, then the words: one chat for any chat model."""
    messages = [{"role": "system", "content": INSTRUCTION}]
    for user, assistant in EXAMPLES:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages + [{"role": "user", "content": format_words(words, limit)}]


# -- the built-ins ------------------------------------------------------------------------


@cache
def builtin_annotators() -> tuple:
    """One instance of each built-in, configured from options' defaults and the environment.

    Construction is free: WordNet, the local model and the endpoint settings are only
    read on first use. Build your own instance to pass options.
    """
    from interpret_shift.methods.ffn.annotators.lexical import LexicalAnnotator
    from interpret_shift.methods.ffn.annotators.local_llm import LocalLLMAnnotator
    from interpret_shift.methods.ffn.annotators.openai_compat import OpenAIAnnotator

    return (LexicalAnnotator(), LocalLLMAnnotator(), OpenAIAnnotator())


def __getattr__(name: str):
    if name == "BUILTIN_ANNOTATORS":  # built lazily: the modules import this package
        return builtin_annotators()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
