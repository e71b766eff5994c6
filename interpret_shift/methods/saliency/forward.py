"""Forward-mode saliency: one Jacobian-vector product per prompt position, all targets at once.

Gradient x input is a directional derivative: for prompt position i,

    s[i, j] = sum_d  d t_j / d E[i, d] * E[i, d]  =  (d/dh) t_j(E + h * V_i) at h = 0,

with V_i equal to E at position i and zero elsewhere. One forward-mode pass along V_i
gives row i for every response target j. Rows are batched: ``torch.func.vmap`` over the
tangents of a chunk of positions, the primal computation shared, so a chunk costs one
forward plus one tangent pass per position (see docs/saliency.md for when this beats the
reverse mode).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from interpret_shift.core.placement import input_device


@contextlib.contextmanager
def forward_differentiable(model: nn.Module) -> Iterator[None]:
    """Run ``model``'s attention through eager attention, which has a forward derivative.

    The fused CPU kernel of scaled-dot-product attention has none (NotImplementedError).
    Its math backend has, but eager attention was faster for the tangent passes (2.3 s
    against 2.9 s on the benchmark's 4-layer llama, (32, 128)). Any implementation other
    than eager is swapped for it during the pass and restored afterwards, also after an
    exception; the math backend stays on as a guard for code that calls SDPA directly.
    """
    implementation = getattr(model.config, "_attn_implementation", None)
    swap = implementation not in (None, "eager")
    if swap:
        model.set_attn_implementation("eager")
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            yield
    finally:
        if swap:
            model.set_attn_implementation(implementation)


def forward_saliency(
    model: nn.Module,
    prompt: Sequence[int],
    response: Sequence[int],
    target: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    position_chunk: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Raw saliency (n, m) float32 and the targets' values (m,) of one (prompt, response).

    ``target`` maps float32 logits (m, vocab) and token ids (m,) to values (m,).
    ``position_chunk`` prompt positions share one vmapped tangent pass; memory grows with
    it (each tangent carries a copy of the activations and of the m x vocab logits).
    """
    n, m = len(prompt), len(response)
    if m == 0:
        return np.zeros((n, 0), np.float32), np.zeros(0, np.float32)
    embed = model.get_input_embeddings()
    device = input_device(model)  # an offloaded embedding's weight is on 'meta'
    wide = torch.promote_types(embed.weight.dtype, torch.float32)
    ids = torch.as_tensor([*prompt, *response[:-1]], dtype=torch.long, device=device)[None]
    tokens = torch.as_tensor(list(response), dtype=torch.long, device=device)
    with torch.no_grad():
        E = embed(ids)  # (1, T, d); the last response token is never an input

    def values(inputs: torch.Tensor) -> torch.Tensor:
        # logits_to_keep=m: the positions n-1 .. n+m-2, which predict the m targets
        logits = model(inputs_embeds=inputs, logits_to_keep=m, use_cache=False).logits[0]
        return target(logits.to(wide), tokens)

    def tangent_pass(tangent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.func.jvp(values, (E,), (tangent,))

    rows, value = [], None
    with torch.no_grad(), forward_differentiable(model):
        for start in range(0, n, position_chunk):
            positions = torch.arange(start, min(n, start + position_chunk), device=device)
            tangents = torch.zeros((len(positions), *E.shape), dtype=E.dtype, device=device)
            tangents[torch.arange(len(positions)), 0, positions] = E[0, positions]
            primal, derivative = torch.func.vmap(tangent_pass)(tangents)
            rows.append(derivative.to(wide).float().cpu())
            value = primal[0]
            del tangents, primal, derivative
        if value is None:  # no prompt positions: only the values
            value = values(E)
    s = torch.cat(rows).numpy() if rows else np.zeros((0, m), np.float32)
    return s, value.detach().float().cpu().numpy()
