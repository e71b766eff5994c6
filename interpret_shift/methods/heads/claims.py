"""The head-pattern method's headlines: how much heads kept, and the verb test per group."""

from __future__ import annotations

from interpret_shift.core.method import Claim, Claims, Json
from interpret_shift.core.render.numbers import brief
from interpret_shift.core.stats import layers_label


def head_claims(diff: Json) -> list[Claim]:
    found = []
    overlap = diff.get("head-overlap")
    if overlap:
        values = [v for row in overlap["jaccard"] for v in row if v is not None]
        if values:
            found.append(Claim(f"Attention heads keep on average {brief(sum(values) / len(values))} "
                               "of their top word pairs (Jaccard overlap, 1 = unchanged).",
                               "head-overlap", n=len(values)))  # fmt: skip
    for test in (diff.get("verb-shares") or {}).get("groups", []):
        if test["p_greater"] is None:
            continue  # too few verbs changed in this layer group to test
        found.append(Claim(f"{layers_label(*test['layers']).capitalize()}: share of heads gaining "
                           f"instruction verbs {brief(test['instruction']['mean'])} vs general verbs "
                           f"{brief(test['general']['mean'])} (Welch, one-sided).", "verb-shares",
                           n=test["instruction"]["n"] + test["general"]["n"],
                           p=test["p_greater"]))  # fmt: skip
    return found


CLAIMS = (Claims(explainer="heads", name="head-claims", make=head_claims),)
