"""The patching headline: from which layer on the residual stream carries the change, and
which single sublayer recovers the most of it."""

from __future__ import annotations

from interpret_shift.core.method import Claim, Claims, Json

NAMES = {"resid_post": "residual stream", "attn.out": "attention", "mlp.out": "MLP"}
WHAT = {"into_base": ("tuned", "base"), "into_tuned": ("base", "tuned")}


def patching_claims(diff: Json) -> list[Claim]:
    data = diff.get("recovery") or {}
    if "directions" not in data:
        return []
    found = []
    for direction in data["directions"]:
        entry = data[direction]
        source, receiver = WHAT[direction]
        if entry["reason"]:
            found.append(Claim(
                f"Patching {source} activations into the {receiver} model: the recovered share "
                f"is undefined ({entry['reason']}).", "patching-recovery", n=0,
                extra={"direction": direction, "undefined": True}))  # fmt: skip
            continue
        found.append(_claim(data, direction, source, receiver))
    return found


def _claim(data: Json, direction: str, source: str, receiver: str) -> Claim:
    entry, layers = data[direction], data["layers"]
    text = f"Patching {source} activations into the {receiver} model"
    extra: Json = {"direction": direction, "undefined": False}
    if "resid_post" in data["components"]:
        median = entry["resid_post"]["median"]
        half = next((layers[i] for i, v in enumerate(median) if v is not None and v >= 0.5), None)
        extra["half_recovered_from_layer"] = half
        text += (f": the residual stream after layer {half} is the first to recover at least "
                 f"half of the log-probability difference to the {source} model (median)"
                 if half is not None else ": no single layer's residual stream recovers half of "
                 f"the log-probability difference to the {source} model (median)")  # fmt: skip
    best = None
    for component in data["components"]:
        if component == "resid_post":
            continue
        for i, value in enumerate(entry[component]["median"]):
            if value is not None and (best is None or value > best[0]):
                best = (value, component, layers[i])
    if best is not None:
        extra.update(best_component=best[1], best_layer=best[2], best_recovery=best[0])
        text += (
            f"; of single sublayers the {NAMES[best[1]]} of layer {best[2]} recovers the "
            f"most ({best[0]:.3g})"
        )
    return Claim(text + ".", "patching-recovery", n=entry["n"], extra=extra)


CLAIMS = (Claims(explainer="patching", name="patching-claims", make=patching_claims),)
