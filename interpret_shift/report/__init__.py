"""The report of a compare run: ``DIR/report.html`` and a console summary.

Both read only the output folder (``summary.json`` and ``diff/<name>.json``), so a report
can be rebuilt any time without the models. A diff file that is absent (its explainer was
not run) drops its sections; nothing else is required but ``summary.json``.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from interpret_shift.errors import InterpretShiftError
from interpret_shift.report.figures import format_p
from interpret_shift.report.html import build_page, num

__all__ = ["REPORT_NAME", "DIFF_FILES", "Results", "load_results", "render_report", "print_summary"]

REPORT_NAME = "report.html"
#: ``diff/<name>.json`` files the report reads, each optional.
DIFF_FILES = ("model", "saliency", "heads", "ffn")


@dataclass(frozen=True)
class Results:
    """The parsed contents of an output folder."""

    out_dir: Path
    summary: dict[str, Any]
    diffs: dict[str, dict[str, Any]]


def load_results(out_dir: str | os.PathLike[str]) -> Results:
    """Read ``summary.json`` and whichever diff files exist; say clearly what is missing."""
    folder = Path(out_dir)
    if not folder.is_dir():
        raise InterpretShiftError(
            f"No output folder at {folder}.",
            "Pass the folder `interpret-shift compare --out DIR` wrote.",
        )
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise InterpretShiftError(
            f"{summary_path} does not exist: {folder} is not an output folder of "
            "`interpret-shift compare` (or the run did not finish).",
            "Run `interpret-shift compare ... --out DIR` first, then pass that DIR.",
        )
    diffs = {}
    for name in DIFF_FILES:
        path = folder / "diff" / f"{name}.json"
        if path.is_file():
            diffs[name] = _read_json(path)
    return Results(folder, _read_json(summary_path), diffs)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise InterpretShiftError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}).",
            "Rerun `interpret-shift compare` to rewrite it.",
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise InterpretShiftError(f"Cannot read {path}: {error}.") from error
    if not isinstance(data, dict):
        raise InterpretShiftError(
            f"{path} holds a JSON {type(data).__name__}, not an object.",
            "Rerun `interpret-shift compare` to rewrite it.",
        )
    return data


def render_report(out_dir: str | os.PathLike[str], *, strict: bool = False) -> Path:
    """Write ``DIR/report.html`` from the folder's JSON and return its path.

    A section whose data has the wrong shape is replaced by a visible note (and listed
    under the summary's warnings) so one bad file does not cost the whole report;
    ``strict=True`` raises :class:`InterpretShiftError` instead.
    """
    results = load_results(out_dir)
    page = build_page(results.summary, results.diffs, strict=strict)
    target = results.out_dir / REPORT_NAME
    partial = target.with_name(f".{REPORT_NAME}.partial")
    partial.write_text(page, encoding="utf-8")
    partial.replace(target)  # atomic: a browser never sees half a page
    return target


# -- console ---------------------------------------------------------------------------------


def print_summary(out_dir: str | os.PathLike[str], console: Console | None = None) -> None:
    """Print the models, the headline claims and the key tests as rich tables."""
    results = load_results(out_dir)
    console = console or Console()
    summary = results.summary
    console.print(_models_line(summary))
    explainers = ", ".join(map(str, summary.get("explainers") or [])) or "none"
    console.print(
        f"{escape(str(summary.get('n_prompts', '–')))} prompts; explainers: {escape(explainers)}"
    )
    claims = _claims_table(summary.get("claims") or [])
    if claims is not None:
        console.print(claims)
    tests = _tests_table(results.diffs)
    if tests is not None:
        console.print(tests)
    for line in _measurements(results.diffs):
        console.print(line)
    for warning in summary.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {escape(str(warning))}")


def _models_line(summary: dict[str, Any]) -> str:
    def one(role: str) -> str:
        model = summary.get(role) or {}
        label = str(model.get("label") or model.get("model") or role)
        name = str(model.get("model") or "")
        detail = f" ({escape(name)})" if name and name != label else ""
        return f"[bold]{role}[/] {escape(label)}{detail}"

    return f"{one('base')} → {one('tuned')}"


def _claims_table(claims: list[dict[str, Any]]) -> Table | None:
    if not claims:
        return None
    table = Table(title="Summary", title_justify="left")
    table.add_column("section")
    table.add_column("claim", ratio=1)
    table.add_column("n", justify="right")
    table.add_column("p", justify="right")
    for claim in claims:
        n = claim.get("n")
        table.add_row(
            escape(str(claim.get("section", ""))),
            escape(str(claim.get("text", ""))),
            "–" if n is None else escape(str(n)),
            format_p(claim.get("p")),
        )
    return table


def _tests_table(diffs: dict[str, dict[str, Any]]) -> Table | None:
    """One row per key test: instruction scores, verb shares, significant concept shifts."""
    rows = [*_score_rows(diffs), *_verb_rows(diffs), *_concept_rows(diffs)]
    if not rows:
        return None
    table = Table(title="Key tests", title_justify="left")
    for name, justify in (
        ("test", "left"),
        ("group", "left"),
        ("n", "right"),
        ("means", "right"),
        ("t", "right"),
        ("p", "right"),
    ):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*map(escape, row))
    return table


def _score_rows(diffs: dict[str, dict[str, Any]]) -> list[list[str]]:
    scores = diffs.get("saliency", {}).get("instruction-score")
    if not isinstance(scores, dict) or "overall" not in scores:
        return []
    groups = [("all", scores["overall"]), *sorted((scores.get("by_group") or {}).items())]
    return [
        [
            "instruction score, tuned > base (Welch)",
            str(group),
            f"{r.get('n_base')} / {r.get('n_tuned')}",
            f"{num(r.get('mean_base'))} → {num(r.get('mean_tuned'))}",
            num(r.get("t"), 2),
            format_p(r.get("p")),
        ]
        for group, r in groups
    ]


def _verb_rows(diffs: dict[str, dict[str, Any]]) -> list[list[str]]:
    shares = diffs.get("heads", {}).get("verb-shares")
    if not isinstance(shares, dict):
        return []
    return [
        [
            "verb shares, instruction > general (Welch)",
            _layers(g.get("layers", [])),
            f"{g['instruction'].get('n')} / {g['general'].get('n')}",
            f"{num(g['instruction'].get('mean'))} vs {num(g['general'].get('mean'))}",
            num(g.get("t"), 2),
            format_p(g.get("p_greater")),
        ]
        for g in shares.get("groups") or []
    ]


def _concept_rows(diffs: dict[str, dict[str, Any]]) -> list[list[str]]:
    concepts = diffs.get("ffn", {}).get("concepts")
    if not isinstance(concepts, dict):
        return []
    return [
        [
            f"FFN concept share: {t.get('axis')} {t.get('category')}",
            _layers(t.get("group", [])),
            str(t.get("n")),
            f"{num(t.get('mean_base'))} → {num(t.get('mean_tuned'))}",
            "–",
            format_p(t.get("p")),
        ]
        for t in concepts.get("tests") or []
        if _significant(t.get("p"))
    ]


def _significant(p: Any) -> bool:
    return isinstance(p, int | float) and math.isfinite(p) and p < 0.05


def _layers(span: Any) -> str:
    if not span:
        return "–"
    first, last = span[0], span[-1]
    return f"L{first}" if first == last else f"L{first}–{last}"


def _measurements(diffs: dict[str, dict[str, Any]]) -> list[str]:
    """Headline numbers that are not tests: KL and FFN rotation."""
    lines = []
    kl = diffs.get("model", {}).get("kl")
    if isinstance(kl, dict) and "skipped" in kl:
        lines.append(f"next-token KL: skipped ({escape(str(kl['skipped']))})")
    elif isinstance(kl, dict):
        n = len(kl.get("per_prompt") or [])
        lines.append(
            f"next-token KL over {n} prompts: mean {num(kl.get('mean'))}, "
            f"median {num(kl.get('median'))}"
        )
    rotation = diffs.get("ffn", {}).get("rotation")
    if isinstance(rotation, dict):
        overall = rotation.get("summary") or {}
        lines.append(
            f"FFN rotation over {len(rotation.get('layers') or [])} layers: mean angle "
            f"{num(overall.get('mean_angle_deg'), 1)}°, mean overlap "
            f"{num(overall.get('mean_overlap'))}"
        )
    return lines
