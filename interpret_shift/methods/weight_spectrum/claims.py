"""The weight-spectrum headline: where the weights changed most, and how low-rank it is."""

from __future__ import annotations

from interpret_shift.core.method import Claim, Claims, Json


def spectrum_claims(diff: Json) -> list[Claim]:
    data = diff.get("spectrum") or {}
    if "layers" not in data:
        return []
    n = sum(v is not None for row in data["relative_norm"] for v in row)
    if data["identical"]:
        return [Claim("The weights are identical: ΔW = 0 in every matrix (rank 0).",
                      "weight-spectrum", n=n, extra={"identical": True})]  # fmt: skip
    largest = data["largest"]
    limits = sorted({int(m) for row in data["max_rank"] for m in row if m})
    bound = f"{limits[0]}" if len(limits) == 1 else f"{limits[0]}–{limits[-1]}"
    text = (f"The largest weight change is in {largest['matrix']} of layer {largest['layer']} "
            f"(‖ΔW‖/‖W‖ = {largest['relative_norm']:.3g}); a median of "
            f"{data['median_rank_90']:.3g} directions holds 90 % of a matrix's change "
            f"(of at most {bound}).")  # fmt: skip
    return [Claim(text, "weight-spectrum", n=n,
                  extra={"identical": False, **largest,
                         "median_rank_90": data["median_rank_90"]})]  # fmt: skip


CLAIMS = (Claims(explainer="weight-spectrum", name="weight-spectrum-claims",
                 make=spectrum_claims),)  # fmt: skip
