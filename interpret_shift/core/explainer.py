"""Explainers: the contract every explainer plugin implements, and the runner.

An explainer turns one subject (and, if it needs them, prompts) into records, one per
*item* (a prompt, a layer, ...). The runner writes each record as soon as it exists
and skips the ones already written by the same explainer, config and model, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from interpret_shift.core.records import Explanation, RecordStore, library_versions
from interpret_shift.core.resources import Resources
from interpret_shift.errors import InputError, RecordError

#: What an explainer may declare in ``needs``.
NEEDS = frozenset({"prompts", "gradients", "weights", "hook_points", "eager_attention"})


class Explainer(ABC):
    """Subclass, set the class attributes, define ``Config`` and the two methods.

    ``name`` is the registry key and the records' ``explainer``; ``data_kind`` tells the
    diff engine how to compare two records (see :mod:`interpret_shift.core.views`).
    An explainer keeps no per-model state: what it caches per model goes to
    ``subject.memo``, so one instance explains the base and the tuned model alike.
    ``resources`` are the named word lists, similarity backends, ... it may look up.
    """

    name: ClassVar[str]
    data_kind: ClassVar[str]
    needs: ClassVar[frozenset[str]] = frozenset()
    description: ClassVar[str] = ""

    @dataclasses.dataclass
    class Config:
        pass

    def __init__(self, resources: Resources | None = None, **options: Any) -> None:
        self.resources = resources or Resources()
        fields = {f.name for f in dataclasses.fields(self.Config)}
        unknown = sorted(set(options) - fields)
        if unknown:
            raise InputError(
                f"Explainer {self.name!r} has no option {unknown[0]!r}.",
                f"Its options are: {', '.join(sorted(fields)) or '(none)'}.",
            )
        self.config = self.Config(**options)

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.config)

    @abstractmethod
    def items(self, subject, prompts: Sequence) -> list[str]:
        """The keys of the records this explainer writes for ``subject``."""

    @abstractmethod
    def explain(
        self, subject, keys: Sequence[str], prompts: Sequence
    ) -> Iterator[tuple[str, Explanation]]:
        """Compute the records of ``keys``, yielding each as soon as it is done."""


def run_explainer(
    explainer: Explainer,
    subject,
    prompts: Sequence = (),
    store: RecordStore | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> dict[str, Explanation]:
    """Run ``explainer`` on ``subject``; with a store, write as it goes and resume."""
    keys = explainer.items(subject, prompts)
    header = _header(explainer, subject, prompts)
    done: dict[str, Explanation] = {}
    if store is not None and not force:
        for key in keys:
            if key in store:
                record = store.load(key)
                _check_same_run(record, header, store.path(key))
                done[key] = record
    todo = [key for key in keys if key not in done]
    with _progress(progress) as bar, subject.frozen():
        task = bar.add_task(
            f"{explainer.name} · {subject.label}", total=len(keys), completed=len(done)
        )
        for key, record in explainer.explain(subject, todo, prompts):
            record.meta.update(header)
            if store is not None:
                store.save(key, record)
            done[key] = record
            bar.advance(task)
    return {key: done[key] for key in keys}


def _header(explainer: Explainer, subject, prompts: Sequence) -> dict[str, Any]:
    return {
        "explainer": explainer.name,
        "config": explainer.config_dict(),
        "subject": subject.provenance(),
        "prompt_ids": [p.id for p in prompts] if "prompts" in explainer.needs else [],
        "versions": library_versions(),
    }


def _check_same_run(record: Explanation, header: dict, path) -> None:
    """A record written with another config or model must not be silently reused."""
    for field in ("config", "explainer"):
        if record.meta.get(field) != header[field]:
            raise RecordError(
                f"{path} was written by a run with a different {field} "
                f"({record.meta.get(field)} vs {header[field]}).",
                "Use another output folder, or --force to recompute.",
            )
    mine, theirs = header["subject"], record.meta.get("subject", {})
    identity = ("fingerprint", "weights")  # the model's parameters, and what was streamed
    if any(theirs.get(field) != mine[field] for field in identity):
        raise RecordError(
            f"{path} was written for other model weights ({theirs.get('weights')}).",
            "Use another output folder, or --force to recompute.",
        )


class _progress:
    """Use the caller's progress display, or a transient one of our own."""

    def __init__(self, progress: Progress | None) -> None:
        self.own = progress is None
        self.progress = progress or Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            transient=True,
        )

    def __enter__(self) -> Progress:
        if self.own:
            self.progress.start()
        return self.progress

    def __exit__(self, *exc) -> None:
        if self.own:
            self.progress.stop()
