"""``compare``: explain a base and a tuned model the same way, diff them, write a report.

Output folder::

    DIR/records/<explainer>/<base|tuned>/   one record per item (resumable)
    DIR/records/<explainer>/pair/          the same, for a pair explainer (both models at once)
    DIR/diff/<explainer>.json              the diff metrics of that explainer
    DIR/diff/model.json                    weight deltas and next-token KL
    DIR/summary.json                       models, explainers, warnings and headline claims
    DIR/report.html                        the self-contained report

Everything that can be checked is checked before the first model runs: explainer names,
their options, and that streamed weights belong to their model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from interpret_shift import demo
from interpret_shift.core import distributed
from interpret_shift.core.explainer import Explainer, run_explainer
from interpret_shift.core.files import json_safe, write_json
from interpret_shift.core.method import MODEL, DiffContext
from interpret_shift.core.pair import SIDES, Pair
from interpret_shift.core.prompts import PromptRecord, read_prompts, render_chat
from interpret_shift.core.records import RecordStore
from interpret_shift.diff import analyse_pair, diff_records
from interpret_shift.diff.model import next_token_kl, weight_deltas
from interpret_shift.errors import InputError
from interpret_shift.pipeline.checks import check_output, check_pair, check_prompts
from interpret_shift.pipeline.presets import preset_options
from interpret_shift.plugins import Registry, load_registry
from interpret_shift.report import load_results, print_summary, render_report
from interpret_shift.report.page import notebook_html


def load_prompt_set(source: str | Path) -> list[PromptRecord]:
    """A JSONL prompt file, or ``demo`` for the embedded pair's held-out prompts."""
    if str(source) == "demo":
        source = demo.prompts_path()
        if not source.exists():
            raise InputError(
                f"The embedded demo prompts are not installed ({source} is missing).",
                "Pass a JSONL prompt file with --prompts (format: docs/formats.md).",
            )
    prompts = read_prompts(source)
    check_prompts(prompts, source)
    return prompts


@dataclass(frozen=True)
class Comparison:
    """What ``compare`` wrote: the output folder, its summary, the sections that draw it.

    In a notebook it shows itself: the headline claims, then every report section.
    """

    out: Path
    summary: dict[str, Any]
    sections: tuple = ()

    @property
    def claims(self) -> list[dict[str, Any]]:
        return self.summary["claims"]

    def _repr_html_(self) -> str:
        results = load_results(self.out)
        return notebook_html(results.summary, results.diffs, self.sections)


@dataclass(frozen=True)
class Planned:
    """One explainer, ready to run: the instance and the options of its diff metrics."""

    explainer: Explainer
    diff_options: dict[str, Any]

    @property
    def reads_pair(self) -> bool:
        """A pair explainer reads both models at once (``compare`` only)."""
        return "pair" in self.explainer.needs


def plan(
    registry: Registry, names: Sequence[str] | None, options: dict[str, dict[str, Any]]
) -> list[Planned]:
    """Build every explainer (default: the built-in ones) and check every option before any
    work starts."""
    names = list(names) if names is not None else registry.builtin_explainers()
    if not names:
        raise InputError(
            "No explainer was chosen (--explainers is empty).",
            f"Name at least one of: {', '.join(sorted(registry.explainers()))}.",
        )
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise InputError(
            f"--set names {unknown[0]!r}, which is not among the explainers run "
            f"({', '.join(names)}).",
            "Check the spelling, or add it to --explainers.",
        )
    return [Planned(*registry.prepare(name, options.get(name, {}))) for name in names]


def preflight(planned: Sequence[Planned], subjects: Sequence, prompts) -> None:
    """What needs the models: streamed weights are theirs, every explainer's items exist
    (e.g. its layers), a pair explainer accepts the pair (e.g. one tokenizer). Runs before
    the first record is written."""
    for subject in subjects:
        subject.check_weights()
    for step in planned:
        if step.reads_pair:
            step.explainer.items(Pair(*subjects), prompts)
        else:
            for subject in subjects:
                step.explainer.items(subject, prompts)


def align_templates(base, tuned) -> list[str]:
    """Feed both models the same text: the tuned model's chat template, if only it has one."""
    warnings = []
    template_a = getattr(base.tokenizer, "chat_template", None)
    template_b = getattr(tuned.tokenizer, "chat_template", None)
    if template_b and not template_a:
        base.tokenizer.chat_template = template_b
        warnings.append("The base model has no chat template; both models were given the "
                        "tuned model's template, so they read identical text.")  # fmt: skip
    elif template_a != template_b:
        warnings.append("The chat templates differ: each model reads its own template.")
    return warnings


def compare(
    base,
    tuned,
    prompts: Sequence[PromptRecord],
    out: str | Path,
    *,
    registry: Registry | None = None,
    explainers: Sequence[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    force: bool = False,
    console: Console | None = None,
    preset: str | None = None,
) -> Comparison | None:
    """Run everything on two loaded subjects; the summary is also in DIR/summary.json.

    ``registry`` defaults to ``load_registry()``; ``explainers`` to the built-in ones.
    ``preset`` (e.g. ``"paper"``, see :data:`~interpret_shift.pipeline.presets.PRESETS`)
    sets options first; ``options`` override it. It is recorded as ``summary["preset"]``.

    In a process group of several ranks (``torchrun``, see :mod:`interpret_shift.core.distributed`)
    each rank first computes its share of every explainer's records; rank 0 then does the
    rest from the stored records and returns the comparison, the other ranks return ``None``.
    """
    registry = registry or load_registry()
    explainers = list(explainers) if explainers is not None else registry.builtin_explainers()
    options = preset_options(preset, options, explainers)
    planned = plan(registry, explainers, options)
    check_prompts(prompts)
    out = check_output(out)
    check_pair(base, tuned)
    preflight(planned, (base, tuned), prompts)
    console = console or Console(stderr=True)
    warnings = align_templates(base, tuned)
    ranks = distributed.current()
    if ranks is not None:
        jobs = [(step.explainer, RecordStore(out / "records" / step.explainer.name / side), subject)
                for step in planned for side, subject in _runs(step, base, tuned)]  # fmt: skip
        compute_shares(jobs, prompts, force, console, ranks)
        if not ranks.is_main:
            return None
    claims: list[dict[str, Any]] = []
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console)  # fmt: skip
    with progress:
        for step in planned:
            explainer, name = step.explainer, step.explainer.name
            records = {}
            for side, subject in _runs(step, base, tuned):
                store = RecordStore(out / "records" / name / side)
                records[side] = run_explainer(explainer, subject, prompts, store,
                                              force=force and ranks is None,
                                              progress=progress)  # fmt: skip
                warnings += record_warnings(name, side, records[side])
            task = progress.add_task(f"diff · {name}", total=1)
            context = DiffContext(name, step.diff_options, registry.resources())
            metrics = registry.diff_metrics_for(name, explainer.data_kind)
            if step.reads_pair:
                diff = analyse_pair(records["pair"], metrics, context)
            else:
                diff = diff_records(records["base"], records["tuned"], metrics, context)
            diff = json_safe(diff)
            write_json(out / "diff" / f"{name}.json", diff)
            claims += _claims(registry, name, explainer.data_kind, diff)
            progress.advance(task)
        model = model_metrics(base, tuned, prompts, out, force, progress)
        claims += _claims(registry, MODEL, None, model)
    summary = {
        "preset": preset,
        "base": base.provenance(),
        "tuned": tuned.provenance(),
        "n_prompts": len(prompts),
        "explainers": [
            {"name": p.explainer.name, "data_kind": p.explainer.data_kind} for p in planned
        ],  # fmt: skip
        "warnings": warnings,
        "claims": claims,
    }
    write_json(out / "summary.json", summary)
    sections = tuple(registry.sections())
    render_report(out, sections)
    print_summary(out, console=Console(), notices=console)  # results on stdout
    return Comparison(out, summary, sections)


def _runs(step: Planned, base, tuned) -> list[tuple[str, Any]]:
    """Where the records of ``step`` go, and what they are computed on."""
    return [("pair", Pair(base, tuned))] if step.reads_pair else list(zip(SIDES, (base, tuned)))


def compute_shares(
    jobs: Sequence[tuple[Explainer, RecordStore, Any]],
    prompts: Sequence[PromptRecord],
    force: bool,
    console: Console,
    ranks: distributed.Ranks,
) -> None:
    """This rank's share of each job's records (explainer, store, subject), then wait for
    every other rank.

    Afterwards every record is stored, so rank 0's full pass only reads them (``force``
    has been applied to each share already). Only rank 0 draws progress bars.
    """
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        disable=not ranks.is_main)  # fmt: skip
    with progress:
        for explainer, store, subject in jobs:
            run_explainer(explainer, subject, prompts, store, force=force, progress=progress,
                          shard=ranks.shard)  # fmt: skip
    distributed.barrier(ranks, "the end of the shares")


def record_warnings(name: str, side: str, records: dict) -> list[str]:
    """What explainers noted on their records (e.g. a response cut by the context length)."""
    return [f"{name} · {side} · {key}: {note}" for key, record in records.items()
            for note in record.meta.get("warnings") or []]  # fmt: skip


def _claims(registry: Registry, name: str, data_kind: str | None, diff: dict) -> list[dict]:
    return [claim.to_json(name) for maker in registry.claims_for(name, data_kind)
            for claim in maker.make(diff)]  # fmt: skip


def model_metrics(base, tuned, prompts, out: Path, force: bool, progress) -> dict[str, Any]:
    """Weight deltas and KL; reused from DIR when the same two models and prompts made them."""
    path = out / "diff" / f"{MODEL}.json"
    ids = [p.id for p in prompts]
    texts = [render_chat(tuned.tokenizer, p.prompt) for p in prompts]
    identity = [base.fingerprint, tuned.fingerprint, [list(pair) for pair in zip(ids, texts)]]
    if path.exists() and not force:
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            cached = {}  # damaged: recomputed below
        if isinstance(cached, dict) and cached.get("identity") == identity:
            return cached
    task = progress.add_task("weight deltas and next-token KL", total=2)
    with base.frozen(), tuned.frozen():
        result = {"identity": identity, "weights": weight_deltas(base, tuned)}
        progress.advance(task)
        result["kl"] = next_token_kl(base, tuned, texts, ids)
    progress.advance(task)
    write_json(path, result)
    return json_safe(result)


def explain(
    subject,
    prompts: Sequence[PromptRecord],
    out: str | Path,
    *,
    registry: Registry | None = None,
    explainers: Sequence[str] | None = None,
    options: dict[str, dict[str, Any]] | None = None,
    force: bool = False,
    preset: str | None = None,
) -> dict[str, dict] | None:
    """Run explainers on one subject; records in ``out/records/<explainer>/<label>/``.

    ``preset`` sets options first, as in :func:`compare`; ``options`` override it. In a
    process group of several ranks, each computes its share first, as in :func:`compare`;
    rank 0 returns every record, the other ranks ``None``.
    """
    registry = registry or load_registry()
    if explainers is None:
        explainers = [name for name in registry.builtin_explainers()
                      if "pair" not in registry.explainers()[name].needs]  # fmt: skip
    options = preset_options(preset, options, explainers)
    planned = plan(registry, explainers, options)
    for step in planned:
        if step.reads_pair:
            raise InputError(
                f"{step.explainer.name} reads a base and a tuned model at once; `explain` "
                "has one model.",
                f"Run it with `compare`, or leave {step.explainer.name} out of --explainers.",
            )
    out = check_output(out)
    preflight(planned, (subject,), prompts)
    stores = [RecordStore(Path(out) / "records" / step.explainer.name / subject.label)
              for step in planned]  # fmt: skip
    ranks = distributed.current()
    if ranks is not None:
        jobs = [(step.explainer, store, subject) for step, store in zip(planned, stores)]
        compute_shares(jobs, prompts, force, Console(stderr=True), ranks)
        if not ranks.is_main:
            return None
    results = {}
    for step, store in zip(planned, stores):
        results[step.explainer.name] = run_explainer(step.explainer, subject, prompts, store,
                                                     force=force and ranks is None)  # fmt: skip
    return results
