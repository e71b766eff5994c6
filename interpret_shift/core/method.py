"""What a method brings besides its explainer: diff metrics, claims and report sections.

Each piece names the records it applies to: ``explainer="heads"`` (that explainer's records
only) or ``data_kind="ranked_words"`` (a generic piece for every explainer of that kind).
A method registers its pieces through the plugin hooks (``interpret_shift.plugins``), with
``hookimpl`` from here; the pipeline, the diff engine and the report never name a method.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from interpret_shift.core.resources import Resources
from interpret_shift.errors import PluginError

PROJECT = "interpret_shift"
#: Marks a plugin's hook implementations (the same marker ``interpret_shift.hookimpl``).
hookimpl = pluggy.HookimplMarker(PROJECT)

Records = Mapping[str, Any]  # {item key: Explanation}
Json = dict[str, Any]
#: Model-level results (weight deltas, KL) are filed as the pseudo-explainer ``model``.
MODEL = "model"


@dataclass(frozen=True)
class Applies:
    """Which records a piece is for: one explainer's, or every explainer's of a data kind."""

    explainer: str | None = None
    data_kind: str | None = None

    def check_target(self, what: str, name: str) -> None:
        if (self.explainer is None) == (self.data_kind is None):
            raise PluginError(
                f"The {what} {name!r} must name exactly one of `explainer` or `data_kind`.",
                "Set explainer= for your explainer's records, or data_kind= for a generic one.",
            )


@dataclass(frozen=True)
class DiffContext:
    """What a diff metric may use besides the records: its options and named resources."""

    explainer: str
    options: Mapping[str, Any] = field(default_factory=dict)
    resources: Resources = field(default_factory=Resources)


@dataclass(frozen=True)
class DiffMetric(Applies):
    """``compute(base, tuned, context)`` takes two ``{key: record}`` maps, returns JSON data.
    For a pair explainer (one that reads both models at once, ``needs`` has ``"pair"``) the
    records already hold both models: ``compute(records, context)``.

    ``options`` are the metric's settings with their defaults (``--set EXPLAINER.NAME=...``);
    a value must have its default's type and be at least its ``minimums`` entry, if any.
    ``check(options, resources)`` raises an ``InputError`` for any other value that cannot
    work (e.g. an unknown annotator), before any model runs.
    """

    name: str = ""
    compute: Callable[..., Json] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    minimums: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    check: Callable[[Mapping[str, Any], Resources], None] | None = None

    def validate(self) -> None:
        self.check_target("diff metric", self.name)
        if not self.name or self.compute is None:
            raise PluginError(f"A diff metric {self.name!r} has no name or no compute function.")


@dataclass(frozen=True)
class Claim:
    """A headline finding for the summary: its words, and n and p where it is a test."""

    text: str
    topic: str  # the report section (its id) that shows the evidence
    n: int | None = None
    p: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self, explainer: str) -> Json:
        return {"section": explainer, "topic": self.topic, "text": self.text, "n": self.n,
                "p": self.p, **self.extra}  # fmt: skip


@dataclass(frozen=True)
class Claims(Applies):
    """``make(diff)`` turns an explainer's diff (metric name -> data) into claims."""

    name: str = ""
    make: Callable[[Json], list[Claim]] | None = None

    def validate(self) -> None:
        self.check_target("claims", self.name)
        if not self.name or self.make is None:
            raise PluginError(f"The claims {self.name!r} have no name or no make function.")


@dataclass(frozen=True)
class SectionContext:
    """What a report section may read besides its explainer's diff."""

    explainer: str
    data_kind: str
    summary: Json
    labels: tuple[str, str]  # the base and tuned models' short names


@dataclass(frozen=True)
class ReportSection(Applies):
    """One ``<section>`` of the report, drawn when its explainer's diff has any of ``keys``.

    ``build(diff, context)`` returns HTML (build it with :mod:`interpret_shift.core.render`,
    which escapes data). ``id`` must be unique; a generic section's id is prefixed by the
    explainer's name. A generic section is drawn only with the keys that no section of the
    explainer's own reads (``keys``) or ``covers``.
    """

    id: str = ""
    title: str = ""
    keys: tuple[str, ...] = ()
    covers: tuple[str, ...] = ()
    lede: str = ""
    build: Callable[[Json, SectionContext], str] | None = None
    order: int = 50  # sections are shown by order, then by registration

    @property
    def name(self) -> str:
        return self.id

    def validate(self) -> None:
        self.check_target("report section", self.id)
        if not self.id or not self.keys or self.build is None:
            raise PluginError(f"The report section {self.id!r} has no id, keys or build function.")


class Bundle:
    """A plugin object that provides the given lists through the hooks, for plugins (like the
    built-in methods) whose hook implementations would only return constant lists."""

    def __init__(self, **provides: Any) -> None:
        self.provides = provides

    def _list(self, hook: str) -> list:
        return list(self.provides.get(hook, ()))

    @hookimpl
    def interpret_shift_explainers(self) -> list:
        return self._list("explainers")

    @hookimpl
    def interpret_shift_diff_metrics(self) -> list:
        return self._list("diff_metrics")

    @hookimpl
    def interpret_shift_claims(self) -> list:
        return self._list("claims")

    @hookimpl
    def interpret_shift_report_sections(self) -> list:
        return self._list("report_sections")

    @hookimpl
    def interpret_shift_adapters(self) -> list:
        return self._list("adapters")

    @hookimpl
    def interpret_shift_similarity_backends(self) -> list:
        return self._list("similarity_backends")

    @hookimpl
    def interpret_shift_annotators(self) -> list:
        return self._list("annotators")

    @hookimpl
    def interpret_shift_word_lists(self) -> list:
        return self._list("word_lists")
