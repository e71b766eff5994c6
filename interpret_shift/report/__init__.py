"""The report of a compare run: ``DIR/report.html`` and a console summary.

Both read only the output folder (``summary.json`` and ``diff/<explainer>.json`` for each
explainer the summary lists, plus ``diff/model.json``), so a report can be rebuilt any time
without the models. The sections come from the caller (``registry.sections()``); without
them, the generic ones of each data kind are drawn.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from interpret_shift.core.files import atomic_write_text
from interpret_shift.core.method import MODEL, ReportSection
from interpret_shift.core.render.numbers import format_p
from interpret_shift.errors import RecordError
from interpret_shift.report.generic import GENERIC_SECTIONS
from interpret_shift.report.page import build_page

__all__ = ["REPORT_NAME", "Results", "load_results", "render_report", "print_summary"]

REPORT_NAME = "report.html"


@dataclass(frozen=True)
class Results:
    """The parsed contents of an output folder."""

    out_dir: Path
    summary: dict[str, Any]
    diffs: dict[str, dict[str, Any]]


def load_results(out_dir: str | os.PathLike[str]) -> Results:
    """Read ``summary.json`` and the diff files it lists; say clearly what is missing."""
    folder = Path(out_dir)
    if not folder.is_dir():
        raise RecordError(
            f"No output folder at {folder}.",
            "Pass the folder `interpret-shift compare --out DIR` wrote.",
        )
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise RecordError(
            f"{summary_path} does not exist: {folder} is not an output folder of "
            "`interpret-shift compare` (or the run did not finish).",
            "Run `interpret-shift compare ... --out DIR` first, then pass that DIR.",
        )
    summary = _read_json(summary_path)
    explainers = summary.get("explainers") or []
    if not isinstance(explainers, list) or not all(
        isinstance(e, dict) and isinstance(e.get("name"), str) for e in explainers
    ):
        raise RecordError(
            f'{summary_path}: \'explainers\' must be a list of {{"name", "data_kind"}} objects.',
            "Rerun `interpret-shift compare` to rewrite it.",
        )
    names = [MODEL, *(e["name"] for e in explainers)]
    diffs = {}
    for name in names:
        path = folder / "diff" / f"{name}.json"
        if path.is_file():
            diffs[name] = _read_json(path)
    return Results(folder, summary, diffs)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise RecordError(
            f"{path} is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg}).",
            "Rerun `interpret-shift compare` to rewrite it.",
        ) from error
    except (OSError, UnicodeDecodeError) as error:
        raise RecordError(f"Cannot read {path}: {error}.") from error
    if not isinstance(data, dict):
        raise RecordError(
            f"{path} holds a JSON {type(data).__name__}, not an object.",
            "Rerun `interpret-shift compare` to rewrite it.",
        )
    return data


def render_report(
    out_dir: str | os.PathLike[str], sections: Sequence[ReportSection] = GENERIC_SECTIONS
) -> Path:
    """Write ``DIR/report.html`` from the folder's JSON and return its path."""
    results = load_results(out_dir)
    target = results.out_dir / REPORT_NAME
    atomic_write_text(target, build_page(results.summary, results.diffs, sections))
    return target


def print_summary(
    out_dir: str | os.PathLike[str], console: Console | None = None, notices: Console | None = None
) -> None:
    """Print the models and the headline claims (with n and p) on ``console``, the warnings
    on ``notices`` (default: the same console)."""
    results = load_results(out_dir)
    console = console or Console()
    summary = results.summary
    console.print(_models_line(summary))
    explainers = ", ".join(e["name"] for e in summary.get("explainers") or []) or "none"
    console.print(
        f"{escape(str(summary.get('n_prompts', '–')))} prompts; explainers: {escape(explainers)}"
    )
    claims = _claims_table(summary.get("claims") or [])
    if claims is not None:
        console.print(claims)
    for warning in summary.get("warnings") or []:
        (notices or console).print(f"[yellow]warning:[/] {escape(str(warning))}")


def _models_line(summary: dict[str, Any]) -> str:
    def one(role: str) -> str:
        model = summary.get(role) or {}
        name = str(model.get("model") or role)
        label = str(model.get("label") or "")
        detail = f" ({escape(label)})" if label and label not in (role, name) else ""
        return f"[bold]{role}:[/] {escape(name)}{detail}"

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
