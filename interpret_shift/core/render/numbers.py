"""Numbers as a report shows them: fixed decimals, p-values, a dash for what is missing."""

from __future__ import annotations

import math
from typing import Any


def finite(value: Any) -> bool:
    """A real, finite number (not a bool, not None, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def num(value: Any, digits: int = 3) -> str:
    """A number for the page: fixed decimals, scientific when tiny or huge, a dash if missing."""
    if not finite(value):
        return "–"
    if value != 0 and (abs(value) < 10**-digits or abs(value) >= 10**6):
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def format_p(p: Any) -> str:
    """p to three decimals, or in scientific notation below 0.001; a dash when missing."""
    if not finite(p):
        return "–"
    return f"{p:.1e}" if p < 0.001 else f"{p:.3f}"


def significant(p: Any, level: float = 0.05) -> bool:
    return finite(p) and p < level


def brief(value: Any) -> str:
    """A number in a sentence (claims): three significant digits, "n/a" when missing."""
    return "n/a" if value is None else f"{value:.3g}"
