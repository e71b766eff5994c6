"""Byte-level BPE (GPT-2 style) spells bytes with printable stand-ins; this maps them back."""

from __future__ import annotations

from functools import cache


@cache
def byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for bytes, inverted (the standard byte-level table)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    chars, extra = list(printable), 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}
