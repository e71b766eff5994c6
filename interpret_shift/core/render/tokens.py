"""Prompts as coloured token spans (HTML): background = a value in 0..1, underline = span type."""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

from interpret_shift.core.bytelevel import byte_decoder
from interpret_shift.core.render.plots import DENSITY_CMAP, floats

_HEX_BYTE = re.compile(r"<0x([0-9A-Fa-f]{2})>")


def clean_token(token: str) -> str:
    """A token as the text it stands for: ``Ġ``/``▁`` become spaces, ``Ċ``/``<0x0A>`` newlines.

    Byte-level BPE tokens are decoded only when they decode to valid UTF-8, so a
    SentencePiece token that happens to use Latin-1 letters is left alone.
    """
    decoder = byte_decoder()
    if token and all(ch in decoder for ch in token) and any(ord(ch) > 127 for ch in token):
        try:
            return bytes(decoder[ch] for ch in token).decode("utf-8")
        except UnicodeDecodeError:
            pass
    text = token.replace("▁", " ").replace("Ġ", " ").replace("Ċ", "\n").replace("ĉ", "\t")
    return _HEX_BYTE.sub(_hex_char, text)


def _hex_char(match: re.Match[str]) -> str:
    value = int(match.group(1), 16)
    return chr(value) if value < 128 else match.group(0)


def density_color(value: float) -> tuple[str, str]:
    """Background and text colour for a density in 0..1 (white text on dark backgrounds)."""
    if not np.isfinite(value) or value <= 0.005:
        return "transparent", "inherit"
    return _density_palette()[min(int(value * 100), 100)]


@functools.cache
def _density_palette() -> tuple[tuple[str, str], ...]:
    """101 precomputed colours: a colormap lookup per token is slow on long prompts."""
    colors = colormaps[DENSITY_CMAP](0.08 + 0.84 * np.linspace(0, 1, 101))
    return tuple(
        (to_hex((r, g, b)), "#ffffff" if 0.299 * r + 0.587 * g + 0.114 * b < 0.55 else "#1b1f24")
        for r, g, b, _ in colors
    )


def token_spans(tokens: Sequence[str], density: Any, instruction: Any, context: Any) -> str:
    """The prompt as coloured token spans: background = density, underline = span type."""
    values = floats(density) if len(tokens) else np.zeros(0)
    ins = _mask(instruction, len(tokens))
    ctx = _mask(context, len(tokens))
    spans = [_span(t, values[i], ins[i], ctx[i]) for i, t in enumerate(tokens)]
    return f'<div class="tokens">{"".join(spans)}</div>'


def _mask(mask: Any, length: int) -> list[bool]:
    values = list(mask or [])
    return [bool(v) for v in values[:length]] + [False] * (length - len(values))


def _span(token: str, value: float, instruction: bool, context: bool) -> str:
    background, color = density_color(value)
    kinds = [k for k, on in (("ins", instruction), ("ctx", context)) if on]
    words = {"ins": "instruction", "ctx": "context"}
    title = f"density {value:.2f}" if np.isfinite(value) else "density –"
    title += "".join(f" · {words[k]}" for k in kinds)
    text = clean_token(token)
    shown = html.escape(text.replace("\n", "↵\n")) if text else '<span class="empty">∅</span>'
    classes = " ".join(["tok", *kinds])
    style = f"background:{background};color:{color}"
    return f'<span class="{classes}" style="{style}" title="{html.escape(title)}">{shown}</span>'


def density_legend() -> str:
    """The colour scale and the two span markers, as an HTML fragment."""
    stops = ", ".join(density_color(v)[0] for v in np.linspace(0.01, 1, 8))
    return (
        '<div class="legend">'
        '<span class="scale"><span>density 0</span>'
        f'<span class="bar" style="background:linear-gradient(90deg, #ffffff, {stops})"></span>'
        "<span>1</span></span>"
        '<span class="tok ins">instruction token</span>'
        '<span class="tok ctx">context token</span>'
        "</div>"
    )
