"""The FFN method's headline: how far the components rotated."""

from __future__ import annotations

from interpret_shift.core.method import Claim, Claims, Json


def rotation_claims(diff: Json) -> list[Claim]:
    rotation = (diff.get("rotation") or {}).get("summary")
    if not rotation or not rotation.get("layers"):
        return []
    return [Claim(f"FFN principal components rotated by {rotation['mean_angle_deg']:.3g}° on "
                  f"average (subspace overlap {rotation['mean_overlap']:.3g}).", "rotation",
                  n=rotation["layers"])]  # fmt: skip


CLAIMS = (Claims(explainer="ffn", name="ffn-claims", make=rotation_claims),)
