"""Page assembly for ``report.html``: the sections that apply, rendered into one template.

Which sections: for each explainer of the run, its own sections whose keys its diff has;
then the generic sections of its data kind, with the keys no own section reads or covers.
A section's code that fails raises (a bug is not shown to the user as bad data); a diff
that says ``{"skipped": why}`` is listed as skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from importlib import metadata, resources
from typing import Any

from markupsafe import Markup

from interpret_shift.core.method import MODEL, Json, ReportSection, SectionContext
from interpret_shift.core.render.html import environment
from interpret_shift.core.render.numbers import format_p


@dataclass(frozen=True)
class Drawn:
    """A section as drawn for one explainer."""

    id: str
    title: str
    lede: str
    body: Markup
    explainer: str
    keys: tuple[str, ...]
    claims: tuple[Json, ...] = ()


def choose(
    sections: Iterable[ReportSection], explainer: str, data_kind: str | None, diff: Json
) -> list[tuple[ReportSection, str]]:
    """The sections to draw for one explainer's diff, with their final ids, in order."""
    sections = sorted(sections, key=lambda s: s.order)
    own = [s for s in sections if s.explainer == explainer]
    claimed = {key for s in own for key in (*s.keys, *s.covers)}
    chosen = [(s, s.id) for s in own if any(k in diff for k in s.keys)]
    for section in sections:
        if section.explainer is None and section.data_kind == data_kind:
            free = [k for k in section.keys if k in diff and k not in claimed]
            if free:
                chosen.append((section, f"{explainer}-{section.id}"))
    return chosen


def labels(summary: Json) -> tuple[str, str]:
    return _label(summary, "base"), _label(summary, "tuned")


def _label(summary: Json, role: str) -> str:
    model = summary.get(role) or {}
    return str(model.get("label") or model.get("model") or role)


def draw(summary: Json, diffs: Mapping[str, Json], sections: Sequence[ReportSection]):
    """Every applicable section, drawn, and the notes of what was skipped."""
    drawn, skipped = [], []
    kinds = {e["name"]: e.get("data_kind") for e in summary.get("explainers") or []}
    for explainer in [MODEL, *kinds]:
        diff = diffs.get(explainer)
        if diff is None:
            continue
        for key, value in list(diff.items()):
            if isinstance(value, dict) and "skipped" in value:
                skipped.append(f"{explainer} · {key}: {value['skipped']}")
        usable = {k: v for k, v in diff.items() if not (isinstance(v, dict) and "skipped" in v)}
        context = SectionContext(explainer, kinds.get(explainer) or "", summary, labels(summary))
        for section, section_id in choose(sections, explainer, kinds.get(explainer), usable):
            body = Markup(section.build(usable, context))
            drawn.append(Drawn(section_id, section.title if section.explainer else
                               f"{section.title} · {explainer}", section.lede, body, explainer,
                               (section_id, section.id, *section.keys)))  # fmt: skip
    return drawn, skipped


def _slug(text: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def _claim_section(claim: Json, drawn: Sequence[Drawn]) -> Drawn | None:
    """The drawn section a claim's topic names (by id or key), else its explainer's first."""
    topic, explainer = _slug(claim.get("topic", "")), claim.get("section")
    mine = [d for d in drawn if d.explainer == explainer]
    return next((d for d in mine if topic in map(_slug, d.keys)), mine[0] if mine else None)


def _stat(claim: Json) -> str:
    parts = []
    if claim.get("n") is not None:
        parts.append(f"n = {claim['n']}")
    if claim.get("p") is not None:
        parts.append(f"p = {format_p(claim['p'])}")
    return " · ".join(parts)


def build_page(summary: Json, diffs: Mapping[str, Json], sections: Sequence[ReportSection]) -> str:
    """The whole page as one string."""
    drawn, skipped = draw(summary, diffs, sections)
    claims, by_section = [], {}
    for claim in summary.get("claims") or []:
        home = _claim_section(claim, drawn)
        shown = {"text": claim.get("text", ""), "stat": _stat(claim),
                 "anchor": home.id if home else None,
                 "tag": home.title if home else claim.get("section", "")}  # fmt: skip
        claims.append(shown)
        if home:
            by_section.setdefault(home.id, []).append(shown)
    drawn = [replace(d, claims=tuple(by_section.get(d.id, ()))) for d in drawn]
    explainers = ", ".join(e["name"] for e in summary.get("explainers") or []) or "none"
    facts = [("Prompts", summary.get("n_prompts", "–")), ("Explainers run", explainers),
             ("Sections", ", ".join(d.title for d in drawn) or "none")]  # fmt: skip
    if skipped:
        facts.append(("Skipped", "; ".join(skipped)))
    models = [
        {"role": role, "label": _label(summary, role), "source": m.get("model", "–"),
         "adapter": m.get("adapter", "–"), "dtype": m.get("dtype", "–"),
         "weights": (m.get("weights") or {}).get("source", "–"),
         "fingerprint": str(m.get("fingerprint") or "")}
        for role, m in (("base", summary.get("base") or {}), ("tuned", summary.get("tuned") or {}))
    ]  # fmt: skip
    css = resources.files("interpret_shift.report").joinpath("templates/report.css").read_text()
    page = environment("interpret_shift.report").get_template("page.html.j2")
    return page.render(labels=labels(summary), models=models, sections=drawn, claims=claims,
                       facts=facts, warnings=summary.get("warnings") or [], css=Markup(css),
                       version=_version())  # fmt: skip


def _version() -> str:
    try:
        return metadata.version("interpret-shift")
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def notebook_html(
    summary: Json, diffs: Mapping[str, Json], sections: Sequence[ReportSection]
) -> str:
    """The claims and the sections without the page around them (for ``_repr_html_``)."""
    drawn, _ = draw(summary, diffs, sections)
    template = environment("interpret_shift.report").get_template("notebook.html.j2")
    css = resources.files("interpret_shift.report").joinpath("templates/report.css").read_text()
    claims = [{"text": c.get("text", ""), "stat": _stat(c)} for c in summary.get("claims") or []]
    return template.render(claims=claims, sections=drawn, css=Markup(css), labels=labels(summary))
