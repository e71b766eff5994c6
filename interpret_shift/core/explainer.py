"""Explainers: the contract every explainer plugin implements, and the runner.

An explainer turns one subject (and, if it needs them, prompts) into records, one per
*item* (a prompt, a layer, ...). The runner writes each record as soon as it exists, with
a digest of everything that made it (``inputs_sha256``), and reuses a record only if this
run would write exactly it: an interrupted run resumes where it stopped, and an item whose
inputs changed (an edited prompt, another word file) or whose record is damaged is
recomputed alone, with a notice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from interpret_shift.core.distributed import shard_keys
from interpret_shift.core.files import json_safe
from interpret_shift.core.options import checked
from interpret_shift.core.prompts import PromptRecord, render_chat
from interpret_shift.core.records import Explanation, RecordStore, library_versions, record_files
from interpret_shift.core.resources import Resources
from interpret_shift.errors import RecordError

#: What an explainer may declare in ``needs``.
#: ``pair``: the explainer reads both models at once and is handed a
#: :class:`~interpret_shift.core.pair.Pair` instead of one subject (``compare`` only).
NEEDS = frozenset({"prompts", "gradients", "weights", "hook_points", "eager_attention", "pair"})


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
        self.config = checked(self.name, self.Config, options)  # names, types and ranges

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

    def item_inputs(self, subject, key: str, prompt: PromptRecord | None) -> dict[str, Any]:
        """What the record of ``key`` is made from besides the config and the model (JSON-able).

        The runner digests it, with the explainer's name, config, the subject's fingerprint,
        weights identity and dtype, into the record's ``inputs_sha256``; a stored record
        whose digest differs from this run's is recomputed. Override it when the records
        depend on more (a file, a word list); keep it cheap, it runs for every item of
        every run. ``prompt`` is the prompt whose id is ``key``, if any. By default: for an
        explainer that needs prompts, that prompt (every field of
        :meth:`PromptRecord.to_json`) and the text the model reads (the tokenizer's chat
        template applied, when the subject has a tokenizer); otherwise nothing.
        """
        if "prompts" not in self.needs or prompt is None:
            return {}
        inputs: dict[str, Any] = {"prompt": prompt.to_json()}
        if getattr(subject, "tokenizer", None) is not None:
            inputs["text"] = render_chat(subject.tokenizer, prompt.prompt)
        return inputs


#: Notices go to this callable; by default a line on stderr (the progress's console).
Notify = Callable[[str], None]


def run_explainer(
    explainer: Explainer,
    subject,
    prompts: Sequence = (),
    store: RecordStore | None = None,
    *,
    force: bool = False,
    progress: Progress | None = None,
    notify: Notify | None = None,
    shard: tuple[int, int] | None = None,
) -> dict[str, Explanation]:
    """Run ``explainer`` on ``subject``; with a store, write as it goes and resume.

    A stored record is reused only when its ``inputs_sha256`` is this run's for that item.
    A record whose inputs changed, that predates input digests, or that is damaged (bad
    JSON, a checksum mismatch, a file missing, fields missing) is recomputed alone, and a
    notice line says so (``notify``, or stderr). A record of another explainer, config
    or model raises :class:`RecordError`: that is another run sharing the folder.

    ``shard=(rank, world)``: only that rank's share of the items (see
    :func:`~interpret_shift.core.distributed.shard_keys`) is checked, computed and returned,
    and a notice line counts what it computed; the other ranks' records are not read.
    """
    keys = explainer.items(subject, prompts)
    if shard is not None:
        keys = shard_keys(keys, *shard)
    header = _header(explainer, subject, prompts)
    by_id = {prompt.id: prompt for prompt in prompts}
    digests = {key: _digest(explainer, subject, key, by_id.get(key), header) for key in keys}
    done: dict[str, Explanation] = {}
    notices: list[str] = []
    if store is not None and not force:
        for key in keys:
            reason, record = _reusable(store, key, header, digests[key])
            if record is not None:
                done[key] = record
            elif reason:
                notices.append(f"{explainer.name} · {subject.label} · {key}: {reason}; recomputing")
    _tell(notices, notify, progress)
    todo = [key for key in keys if key not in done]
    with _progress(progress) as bar, subject.frozen():
        task = bar.add_task(
            f"{explainer.name} · {subject.label}", total=len(keys), completed=len(done)
        )
        for key, record in explainer.explain(subject, todo, prompts):
            record.meta.update(header, inputs_sha256=digests[key])
            if store is not None:
                store.save(key, record)
            done[key] = record
            bar.advance(task)
    if shard is not None:
        line = (f"{explainer.name} · {subject.label}: rank {shard[0]} of {shard[1]} computed "
                f"{len(todo)} of its {len(keys)} items, reused {len(keys) - len(todo)}")  # fmt: skip
        _tell([line], notify, progress)
    return {key: done[key] for key in keys}


def inputs_digest(explainer: Explainer, subject, key: str, prompts: Sequence = ()) -> str:
    """SHA-256 of the canonical JSON of everything that makes the record of ``key``."""
    prompt = next((p for p in prompts if p.id == key), None)
    return _digest(explainer, subject, key, prompt, _header(explainer, subject, prompts))


def _digest(explainer: Explainer, subject, key: str, prompt, header: dict) -> str:
    identity = header["subject"]
    payload = {
        "key": key,
        "explainer": explainer.name,
        "config": explainer.config_dict(),
        "fingerprint": identity["fingerprint"],
        "weights": identity["weights"],
        "dtype": identity["dtype"],
        "inputs": explainer.item_inputs(subject, key, prompt),
    }
    text = json.dumps(json_safe(payload), sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=False)  # fmt: skip
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _reusable(
    store: RecordStore, key: str, header: dict, digest: str
) -> tuple[str, Explanation | None]:
    """The stored record of ``key`` if this run would write exactly it; else why not.

    Returns ``("", None)`` when there is no record (nothing to report), ``(reason, None)``
    when one must be recomputed. Raises :class:`RecordError` for another run's record.
    """
    json_path, tensors_path = record_files(store.path(key))
    if not json_path.exists():
        if tensors_path.exists():
            return f"record incomplete ({json_path.name} missing)", None
        return "", None
    try:
        record = store.load(key)
    except RecordError as error:
        return f"record unreadable ({error.what})", None
    meta = record.meta
    subject = meta.get("subject")
    if not (isinstance(subject, dict) and {"fingerprint", "weights"} <= set(subject)
            and {"explainer", "config"} <= set(meta)):  # fmt: skip
        return "record damaged (its metadata lacks the run's identity)", None
    _check_same_run(record, header, json_path)
    if "inputs_sha256" not in meta:
        return "record written before input digests", None
    if meta["inputs_sha256"] != digest:
        return "inputs changed since the record was written", None
    return "", record


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
    for field in ("fingerprint", "weights"):  # the model's parameters, and what was streamed
        if theirs.get(field) != mine[field]:
            raise RecordError(
                f"{path} was written for another model: its subject.{field} is "
                f"{theirs.get(field)!r}, this run's is {mine[field]!r}.",
                "Use another output folder, or --force to recompute.",
            )


def _tell(notices: list[str], notify: Notify | None, progress: Progress | None) -> None:
    """One line per notice: to ``notify``, else the progress's console, else stderr."""
    if not notices:
        return
    if notify is None:
        console = progress.console if progress is not None else Console(stderr=True)

        def notify(line: str) -> None:
            console.print(line, markup=False, highlight=False, soft_wrap=True)

    for line in notices:
        notify(line)


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
