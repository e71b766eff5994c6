"""The saliency method's headline: did the tuned model rely more on the instruction?"""

from __future__ import annotations

from interpret_shift.core.method import Claim, Claims, Json
from interpret_shift.core.render.numbers import brief

SIGNIFICANCE = 0.01


def instruction_claims(diff: Json) -> list[Claim]:
    score = (diff.get("instruction-score") or {}).get("overall")
    if not score:
        return []
    p = score["p"]
    shifted = p is not None and p < SIGNIFICANCE
    verdict = (
        f"The tuned model relies more on the instruction words than the base model (p < {SIGNIFICANCE})."
        if shifted
        else "No significant increase of the instruction scores after tuning."
    )
    text = (f"{verdict} Mean instruction score {brief(score['mean_tuned'])} (tuned) vs "
            f"{brief(score['mean_base'])} (base), one-sided Welch t-test.")  # fmt: skip
    return [Claim(text, "instruction-scores", n=score["n_base"] + score["n_tuned"], p=p,
                  extra={"shift_found": shifted})]  # fmt: skip


CLAIMS = (Claims(explainer="saliency", name="instruction-score", make=instruction_claims),)
