"""HTML fragments for report sections, from jinja2 templates with autoescape.

Captions and table cells are HTML: build them from ``escape``-d data (or format numbers
with :mod:`interpret_shift.core.render.numbers`); headers, alt texts and everything else
are escaped by the templates. Images are shown at 100 CSS px per figure inch, so all figures share one
type size.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Sequence
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup, escape

from interpret_shift.core.render.numbers import format_p, significant

__all__ = ["Markup", "escape", "environment", "figure", "image", "p_cell", "slug", "table"]

from interpret_shift.core.render import DPI


@functools.cache
def environment(package: str = "interpret_shift.core.render") -> Environment:
    """A jinja2 environment over ``package``'s ``templates`` folder, autoescaping HTML."""
    return Environment(
        loader=PackageLoader(package, "templates"),
        autoescape=select_autoescape(["html", "j2"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _blocks() -> Any:
    return environment().get_template("blocks.html.j2").module


def _css_width(png: str) -> int:
    width = int.from_bytes(base64.b64decode(png[:32])[16:20], "big")  # PNG IHDR width
    return round(width * 100 / DPI)


def image(png: str, alt: str) -> Markup:
    return Markup(_blocks().image(png, alt, _css_width(png)))


def figure(png: str, alt: str, caption: str) -> Markup:
    """A ``<figure>`` with one image; ``caption`` is HTML built from escaped parts."""
    return Markup(_blocks().figure(png, alt, _css_width(png), Markup(caption)))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], first_numeric: int = 1) -> Markup:
    """A compact table; cells are HTML, columns from ``first_numeric`` on right-aligned."""
    cells = [[Markup(cell) for cell in row] for row in rows]
    return Markup(_blocks().table(headers, cells, first_numeric))


def p_cell(p: Any) -> Markup:
    """A p-value cell, bold when below 0.05."""
    text = format_p(p)
    return Markup("<strong>{}</strong>").format(text) if significant(p) else Markup(escape(text))


def slug(text: Any) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")
