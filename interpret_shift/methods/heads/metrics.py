"""The head-pattern method's comparisons: overlap of each head's top pairs, and instruction
verbs vs general verbs per layer group (the paper's Table 3)."""

from __future__ import annotations

from typing import Any

import numpy as np

from interpret_shift.core.method import DiffContext, DiffMetric, Records
from interpret_shift.errors import InterpretShiftError
from interpret_shift.lexicon.words import load_words
from interpret_shift.methods.heads.analysis import compare_verbs
from interpret_shift.methods.heads.analysis import head_overlap as overlaps


def head_overlap(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    found = overlaps(base, tuned, top=int(context.options.get("top_pairs", 100)))
    n_layers = max(o.layer for o in found) + 1
    n_heads = max(o.head for o in found) + 1
    table = np.full((n_layers, n_heads), np.nan)
    for o in found:
        table[o.layer, o.head] = o.jaccard
    return {"n_layers": n_layers, "n_heads": n_heads,
            "jaccard": [[float(v) for v in row] for row in table]}  # fmt: skip


def verb_shares(base: Records, tuned: Records, context: DiffContext) -> dict[str, Any]:
    try:
        general = load_words("general-verbs", resources=context.resources).words
    except InterpretShiftError as error:
        return {"skipped": error.what}
    instruction = load_words("instruction-verbs", resources=context.resources).words
    result = compare_verbs(base, tuned, instruction, general)
    return {"groups": [
        {"layers": [t.first_layer, t.last_layer],
         "instruction": {"n": t.n_instruction, "mean": float(t.mean_instruction)},
         "general": {"n": t.n_general, "mean": float(t.mean_general)},
         "t": float(t.t), "p": float(t.p_two_sided), "p_greater": float(t.p_greater)}
        for t in result.tests
    ]}  # fmt: skip


DIFF_METRICS = (
    DiffMetric(explainer="heads", name="head-overlap", compute=head_overlap,
               options={"top_pairs": 100}, minimums={"top_pairs": 1},
               description="Jaccard of top pairs per head"),
    DiffMetric(explainer="heads", name="verb-shares", compute=verb_shares,
               description="instruction vs general verbs per layer group (the paper's Table 3)"),
)  # fmt: skip
