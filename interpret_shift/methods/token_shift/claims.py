"""The token shift's headline: how much of the tuned model's output the base model would
have produced anyway."""

from __future__ import annotations

from interpret_shift.core.method import Claim, Claims, Json
from interpret_shift.core.render.numbers import brief


def quoted(token: str) -> str:
    """A token in a sentence: in typographic quotes, which the page shows as they are."""
    return f"“{token}”"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def shift_claims(diff: Json) -> list[Claim]:
    overall = (diff.get("shift-ratio") or {}).get("overall")
    if not overall or not overall["n_tokens"]:
        return []
    n = overall["n_tokens"]
    if overall["unshifted"] == 1.0:
        text = (f"No token of the responses of the tuned model is shifted: each of the {n} is "
                "the top choice of the base model on the same prefix.")  # fmt: skip
        return [Claim(text, "token-shift", n=n, extra={"shift_ratio": 0.0})]
    text = (
        f"{_percent(overall['shifted'])} of the response tokens of the tuned model are shifted "
        f"(rank > 3 under the base model), {_percent(overall['marginal'])} marginal (rank 2-3) "
        f"and {_percent(overall['unshifted'])} unshifted, over {n} tokens of "
        f"{overall['n_prompts']} prompts; mean KL(tuned ‖ base) {brief(overall['mean_kl'])} nats."
    )
    claims = [Claim(text, "token-shift", n=n, extra={"shift_ratio": overall["shifted"]})]
    tokens = (diff.get("top-shifted") or {}).get("tokens") or []
    if tokens:
        listed = ", ".join(f"{quoted(t['token'])} ({t['shifted']}×)" for t in tokens[:5])
        claims.append(Claim(f"The tokens the tuned model most often says where the base model "
                            f"would not: {listed}.", "token-shift", n=n))  # fmt: skip
    return claims


CLAIMS = (Claims(explainer="token-shift", name="token-shift", make=shift_claims),)
