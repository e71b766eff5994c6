"""The difference lens's headline: where the two models' residual streams part, and the
words the difference writes at the last layer."""

from __future__ import annotations

import math

from interpret_shift.core.method import Claim, Claims, Json
from interpret_shift.core.render.numbers import brief

WHERE = {"prompt": "prompt positions", "response": "first response positions"}


def _largest(values: list) -> tuple[int, float] | None:
    finite = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    return max(finite, key=lambda item: item[1]) if finite else None


def lens_claims(diff: Json) -> list[Claim]:
    norms = diff.get("norm-by-layer")
    if not norms:
        return []
    layers = norms["layers"]
    groups = [g for g in WHERE if (norms.get(g) or {}).get("positions")]
    if not groups:
        return []
    n = sum(norms[g]["positions"] for g in groups)
    if all(norms[g]["first_layer"] is None for g in groups):
        text = ("The residual streams of the two models are identical on these inputs: the "
                "difference is zero after every layer.")  # fmt: skip
        return [Claim(text, "diff-lens", n=n, extra={"first_layer": None})]
    claims = []
    for g in groups:
        peak = _largest(norms[g]["relative"]["mean"])
        first = norms[g]["first_layer"]
        if peak is None or first is None:
            continue
        text = (f"On the {WHERE[g]}, the residual streams first differ after {layers[first]} "
                f"and differ most, relative to the activation of the base model, after "
                f"{layers[peak[0]]} (mean |Δh| / |h_base| = {brief(peak[1])} over prompts).")  # fmt: skip
        claims.append(Claim(text, "diff-lens", n=norms[g]["positions"],
                            extra={"group": g, "first_layer": first, "peak_layer": peak[0]}))  # fmt: skip
    tokens = diff.get("lens-tokens")
    if tokens:
        for g_index, g in enumerate(tokens["groups"]):
            promoted = tokens["promoted"][g_index][tokens["readouts"].index("tuned")][-1]
            if promoted:
                listed = ", ".join(f"“{t['token']}”" for t in promoted[:5])
                claims.append(Claim(f"After the last layer, the difference on the {WHERE[g]} "
                                    f"promotes {listed} (read by the unembedding of the tuned model).",
                                    "diff-lens"))  # fmt: skip
    return claims


CLAIMS = (Claims(explainer="diff-lens", name="diff-lens", make=lens_claims),)
