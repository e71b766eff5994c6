"""Weight-delta spectrum (issue 17 method 4): per layer, the singular spectrum of every
matrix's change ΔW = W_tuned - W_base.

Per matrix: ||ΔW||_F relative to ||W_base||_F, the stable rank, the fewest directions
holding 50/90/99 % of the change's energy, the top singular values; for the matrices that
write into the residual stream (attention out, MLP down), the words each top output
direction of ΔW writes (its cosine with the tuned model's output embeddings); and the
principal angles between the top subspaces of ΔW and of W_base, on the output and on the
input side. Weights only: one layer is an item, read one tensor at a time from each
model (streamed when the subjects stream), so layers can be run apart.

A tuned subject that carries a low-rank adapter may offer ``delta_factors(role, layer)``
returning ``(B, A)`` with ΔW = B @ A in the orientation of ``weights.rows(role, layer)``;
the spectrum then comes exactly from the factors (``meta["methods"]`` says so).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from interpret_shift.core.explainer import Explainer
from interpret_shift.core.linalg import principal_angles
from interpret_shift.core.options import at_least, chosen_layers
from interpret_shift.core.records import Explanation
from interpret_shift.errors import InputError
from interpret_shift.methods.weight_spectrum.spectrum import (
    FRACTIONS,
    Spectrum,
    of_factors,
    of_matrix,
    top_directions,
)

#: Canonical matrices of a layer, in report order (absent ones are skipped).
ROLES = ("attn.q", "attn.k", "attn.v", "attn.out", "mlp.gate", "mlp.up", "mlp.down_in")
#: Matrices whose output is added to the residual stream: their directions are words.
WRITES = ("attn.out", "mlp.down_in")
#: ``auto`` takes the exact SVD up to this short side, the randomised one above.
EXACT_UP_TO = 2048


def display(role: str) -> str:
    return role.replace("mlp.down_in", "mlp.down")


class WeightSpectrum(Explainer):
    """Per layer: how many directions each matrix's change spans and what it writes.

    Options: ``directions`` (top singular directions named by words and compared by angle),
    ``top_words`` per end of a direction, ``keep_values`` (singular values stored, and
    computed by the randomised SVD), ``svd`` (auto, exact, randomized), ``power_iters``,
    ``seed``, ``layers`` (None = all).
    """

    name = "weight-spectrum"
    data_kind = "weight_spectrum"
    needs = frozenset({"pair", "weights"})
    description = "singular spectrum of each weight change: effective rank, words, angles"

    @dataclasses.dataclass
    class Config:
        directions: int = dataclasses.field(default=4, metadata=at_least(1))
        top_words: int = dataclasses.field(default=8, metadata=at_least(1))
        keep_values: int = dataclasses.field(default=256, metadata=at_least(1))
        svd: Literal["auto", "exact", "randomized"] = "auto"
        power_iters: int = dataclasses.field(default=8, metadata=at_least(0))
        seed: int = 0
        layers: list[int] | None = None

    def items(self, pair, prompts: Sequence = ()) -> list[str]:
        layouts = [subject.weights.layout for subject in pair.subjects]
        n_layers = layouts[0].n_layers
        if layouts[1].n_layers != n_layers:
            raise InputError(
                f"The two models have {n_layers} and {layouts[1].n_layers} layers; a weight "
                "change needs one architecture.",
                "Compare a model with its own tuned version.",
            )
        layers = chosen_layers(self.name, self.config.layers, n_layers, pair=True)
        return [f"layer.{layer}" for layer in layers]

    def explain(
        self, pair, keys: Sequence[str], prompts: Sequence = ()
    ) -> Iterator[tuple[str, Explanation]]:
        if not keys:
            return
        words = pair.memo(("weight-spectrum", "unembed"), lambda: _unit_unembed(pair))
        for key in keys:
            layer = int(key.removeprefix("layer."))
            with torch.inference_mode():
                yield key, self._layer(pair, layer, words)

    def _method(self, shape: torch.Size) -> str:
        if self.config.svd != "auto":
            return self.config.svd
        return "exact" if min(shape) <= EXACT_UP_TO else "randomized"

    def _spectrum(self, pair, role: str, layer: int, w_base: torch.Tensor) -> Spectrum:
        factors = getattr(pair.tuned, "delta_factors", None)
        found = factors(role, layer) if callable(factors) else None
        if found is not None:
            b, a = (torch.as_tensor(f).detach().float().cpu() for f in found)
            if b.ndim != 2 or a.ndim != 2 or (b.shape[0], a.shape[1]) != tuple(w_base.shape) \
                    or b.shape[1] != a.shape[0]:  # fmt: skip
                raise InputError(
                    f"The adapter's factors of {role} in layer {layer} have shapes "
                    f"{tuple(b.shape)} and {tuple(a.shape)}, which do not multiply to the "
                    f"weight's {tuple(w_base.shape)}.",
                    "delta_factors must return (B, A) with B @ A shaped like weights.rows().",
                )
            return of_factors(b, a)
        w_tuned = pair.tuned.weights.rows(role, layer)
        if w_tuned.shape != w_base.shape:
            raise InputError(
                f"{role} of layer {layer} is {tuple(w_base.shape)} in the base model and "
                f"{tuple(w_tuned.shape)} in the tuned one.",
                "Compare a model with its own tuned version.",
            )
        config = self.config
        return of_matrix(w_tuned - w_base, self._method(w_base.shape), config.keep_values,
                         power_iters=config.power_iters, seed=config.seed)  # fmt: skip

    def _layer(self, pair, layer: int, words: tuple[torch.Tensor, list[str]]) -> Explanation:
        config = self.config
        weights = pair.base.weights
        roles = [role for role in ROLES if weights.layout.entry(role, layer) is not None]
        count, keep, k = len(roles), config.keep_values, config.directions
        arrays: dict[str, np.ndarray] = {
            "frobenius": np.zeros(count),
            "relative_norm": np.zeros(count),
            "sigma_max": np.zeros(count),
            "stable_rank": np.zeros(count),
            "energy_rank": np.zeros((count, len(FRACTIONS))),
            "numerical_rank": np.zeros(count, np.int64),
            "max_rank": np.zeros(count, np.int64),
            "singular_values": np.zeros((count, keep)),
            "angles_out": np.full((count, k), np.nan),
            "angles_in": np.full((count, k), np.nan),
        }
        methods, written = [], {}
        for i, role in enumerate(roles):
            w_base = weights.rows(role, layer)
            found = self._spectrum(pair, role, layer, w_base)
            methods.append(found.method)
            arrays["frobenius"][i] = found.energy**0.5
            arrays["relative_norm"][i] = found.energy**0.5 / max(float(w_base.norm()), 1e-12)
            arrays["sigma_max"][i] = float(found.values[0]) if len(found.values) else 0.0
            arrays["stable_rank"][i] = found.stable_rank
            arrays["energy_rank"][i] = found.energy_ranks()
            arrays["numerical_rank"][i] = found.numerical_rank
            arrays["max_rank"][i] = min(w_base.shape)
            values = found.values[:keep].numpy()
            arrays["singular_values"][i, : len(values)] = values
            left, right = top_directions(found, k)
            if len(left):
                base_top = self._top_of(w_base, k)
                arrays["angles_out"][i, : len(left)] = _degrees(left, base_top[0])
                arrays["angles_in"][i, : len(left)] = _degrees(right, base_top[1])
            if role in WRITES:
                written[display(role)] = _words(left, found.values, words, config.top_words)
        arrays = {name: a.astype(np.float32) if a.dtype == np.float64 else a
                  for name, a in arrays.items()}  # fmt: skip
        meta: dict[str, Any] = {
            "layer": layer,
            "roles": roles,
            "matrices": [display(role) for role in roles],
            "methods": methods,
            "source": "adapter factors" if "adapter factors" in methods else "weights",
            "fractions": list(FRACTIONS),
            "words": written,
        }
        return Explanation(self.name, self.data_kind, arrays, meta)

    def _top_of(self, w: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The top ``k`` left and right singular vectors of W (rows), for the angles."""
        config = self.config
        found = of_matrix(w, self._method(w.shape), max(k, 1), power_iters=config.power_iters,
                          seed=config.seed)  # fmt: skip
        return found.left[:, :k].T, found.right[:, :k].T


def _degrees(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Principal angles in degrees between the spans of the rows of ``a`` and ``b``."""
    angles = np.degrees(principal_angles(a.double().numpy(), b.double().numpy()))
    return angles[: len(a)]


def _unit_unembed(pair) -> tuple[torch.Tensor, list[str]]:
    """The tuned model's output embeddings, unit rows, and each row's token decoded."""
    table = pair.tuned.weights.unembed()
    tokenizer = pair.tokenizer
    size = table.shape[0] if tokenizer is None else min(table.shape[0], len(tokenizer))
    names = ([f"#{i}" for i in range(size)] if tokenizer is None
             else tokenizer.batch_decode([[i] for i in range(size)]))  # fmt: skip
    return F.normalize(table[:size].float(), dim=1), names


def _words(
    left: torch.Tensor, values: torch.Tensor, words: tuple[torch.Tensor, list[str]], top: int
) -> list[dict[str, Any]]:
    """Per top output direction: its singular value and the words at either end."""
    unit, names = words
    found = []
    for j, direction in enumerate(left):
        scores = unit @ direction
        high = scores.topk(min(top, len(scores)))
        low = (-scores).topk(min(top, len(scores)))
        found.append({
            "sigma": float(values[j]),
            "promoted": [names[i] for i in high.indices.tolist()],
            "promoted_scores": high.values.tolist(),
            "suppressed": [names[i] for i in low.indices.tolist()],
            "suppressed_scores": (-low.values).tolist(),
        })  # fmt: skip
    return found
