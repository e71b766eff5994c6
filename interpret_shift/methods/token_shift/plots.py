"""The token shift's figure: the share of each class by response position."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from interpret_shift.core.render.plots import floats, new_figure, png, styled

#: One colour per class, also used for the coloured response text.
CLASS_COLORS = {"unshifted": "#D9E6F2", "marginal": "#F6C177", "shifted": "#D1495B"}


@styled
def position_curve(positions: Any, unshifted: Any, marginal: Any, shifted: Any, n: Any) -> str:
    """Stacked shares of the three classes per response position, with the number of
    prompts that reach each position beneath."""
    x = np.asarray(positions, dtype=float)
    shares = [np.nan_to_num(floats(values)) for values in (unshifted, marginal, shifted)]
    figure = new_figure(7.0, 3.8)
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    below = np.zeros(len(x))
    for name, share in reversed(list(zip(CLASS_COLORS, shares))):  # shifted from 0 up
        top.bar(x, share, bottom=below, width=0.85, color=CLASS_COLORS[name], label=name)
        below = below + share
    top.set_ylim(0, 1)
    top.set_ylabel("share of tokens")
    top.grid(axis="x", visible=False)
    figure.legend(loc="outside upper left", ncols=3)
    bottom.bar(x, floats(n), width=0.85, color="#8a8f98")
    bottom.set_ylabel("prompts")
    bottom.set_xlabel("response position (0 = first response token)")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    return png(figure)
