"""Model-level differences that need no explainer: weight deltas and next-token KL."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from interpret_shift.core.method import MODEL, Claim, Claims
from interpret_shift.errors import ModelLoadError

#: The matrices compared per layer, by canonical point (absent ones are skipped).
MATRICES = (
    "ln1",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.out",
    "ln2",
    "mlp.gate",
    "mlp.up",
    "mlp.down_in",
)


def weight_deltas(base, tuned) -> dict:
    """Relative change ||W_tuned - W_base|| / ||W_base|| per layer and matrix (Frobenius).

    Where the tuned model is the base plus a LoRA adapter (``tuned.delta_factors``), the
    change of an adapted matrix is ``||B @ A||`` from the factors, exact and without reading
    the tuned matrix; ``from_adapter`` then names those matrices.
    """
    wa, wb = base.weights, tuned.weights
    if wa.layout.n_layers != wb.layout.n_layers or base.adapter.name != tuned.adapter.name:
        raise ModelLoadError(
            "The two models have different architectures or depths; weight deltas need a "
            "base model and its own fine-tuned version.",
            "Compare a model with its instruction-tuned counterpart.",
        )
    names = [m for m in MATRICES if wa.layout.entry(m, 0) is not None]
    table = np.full((wa.layout.n_layers, len(names)), np.nan)
    factored = getattr(tuned, "delta_factors", lambda *_: None)
    from_adapter = set()
    for layer in range(wa.layout.n_layers):
        for column, name in enumerate(names):
            a, factors = wa.rows(name, layer), factored(name, layer)
            if factors is not None:
                change = _low_rank_norm(*factors)
                from_adapter.add(name.replace("mlp.down_in", "mlp.down"))
            else:
                change = (wb.rows(name, layer) - a).norm()
            table[layer, column] = float(change / a.norm().clamp_min(1e-12))
    embed = _relative_change(wa.embed(), wb.embed())
    result = {
        "matrices": [m.replace("mlp.down_in", "mlp.down") for m in names],
        "relative_change": table.tolist(),
        "per_layer": np.nanmean(table, axis=1).tolist(),
        "embed": embed,
    }
    if from_adapter:
        result["from_adapter"] = sorted(from_adapter)
    return result


def _relative_change(before: torch.Tensor, after: torch.Tensor, rows: int = 4096) -> float:
    """||after - before|| / ||before|| without a full-size difference (the embedding of a
    large model is its largest matrix; both may be the models' own parameters)."""
    squared = sum(float((after[i : i + rows] - before[i : i + rows]).double().pow(2).sum())
                  for i in range(0, before.shape[0], rows))  # fmt: skip
    return squared**0.5 / max(float(before.norm()), 1e-12)


def _low_rank_norm(b: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """||B @ A||_F from the r x r Gram matrices: trace(B^T B A A^T), in float64."""
    b, a = b.double(), a.double()
    return ((b.T @ b) * (a @ a.T)).sum().clamp_min(0).sqrt()


@torch.no_grad()
def next_token_kl(base, tuned, texts: Sequence[str], ids: Sequence[str]) -> dict:
    """KL(tuned || base) of the next-token distributions at every position of each text."""
    if getattr(base, "weights_only", False) or getattr(tuned, "weights_only", False):
        return {
            "skipped": "weight-only run: every chosen explainer reads weights only, so "
            "the models were never built and there are no next-token distributions"
        }
    if base.tokenizer.get_vocab() != tuned.tokenizer.get_vocab():
        return {"skipped": "the tokenizers differ, so next-token distributions do not align"}
    per_prompt, per_token = [], []
    for text in texts:
        encoded = tuned.tokenizer(text, return_tensors="pt")
        logp_b = _log_probs(base, encoded.input_ids)
        logp_t = _log_probs(tuned, encoded.input_ids)
        kl = (logp_t.exp() * (logp_t - logp_b)).sum(-1).clamp_min(0)  # (seq,)
        per_token.append(kl.tolist())
        per_prompt.append(float(kl.mean()))
    return {
        "prompt_ids": list(ids),
        "per_prompt": per_prompt,
        "per_token": per_token,
        "mean": float(np.mean(per_prompt)) if per_prompt else 0.0,
        "median": float(np.median(per_prompt)) if per_prompt else 0.0,
    }


def _log_probs(subject, input_ids: torch.Tensor) -> torch.Tensor:
    logits = subject.model(input_ids.to(subject.device)).logits[0].float()
    return logits.log_softmax(-1).cpu()


def _model_claims(diff: dict) -> list[Claim]:
    found = []
    kl = diff.get("kl") or {}
    if kl.get("per_prompt"):
        found.append(Claim(f"Mean next-token KL(tuned ‖ base) over the prompts: {kl['mean']:.3g} "
                           "nats.", "next-token-kl", n=len(kl["per_prompt"])))  # fmt: skip
    per_layer = (diff.get("weights") or {}).get("per_layer")
    if per_layer:
        found.append(Claim(f"Mean relative weight change per layer: "
                           f"{sum(per_layer) / len(per_layer):.3g}.", "weight-change",
                           n=len(per_layer)))  # fmt: skip
    return found


MODEL_CLAIMS = (Claims(explainer=MODEL, name="model-claims", make=_model_claims),)
