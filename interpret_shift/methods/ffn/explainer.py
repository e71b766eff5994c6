"""Feed-forward concepts: principal components of each layer's down-projection (DESIGN §3.3).

Each FFN neuron writes one row of ``W_down`` (d_ff x d_model) into the residual stream.
The principal directions of those rows (centred) are the directions the layer writes
along most; projecting them onto the normalised output embeddings of a word list names
them with the words they promote or suppress. Only the weights are read, never a forward
pass; a subject that streams its weights (``weights_from``) is read one tensor at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from interpret_shift.core.linalg import centre, orient, svd_exact, svd_randomized
from interpret_shift.core.options import at_least
from interpret_shift.core.records import Explanation
from interpret_shift.core.resources import Resources
from interpret_shift.core.weights import Weights
from interpret_shift.errors import InterpretShiftError
from interpret_shift.lexicon.words import WordList, load_words
from interpret_shift.methods.layer_explainer import LayerExplainer, words_digest

SVD_METHODS = ("auto", "exact", "randomized")


@dataclass(frozen=True)
class Components:
    """The top principal directions of one matrix's rows and their share of the variance.

    ``shares`` holds every component's share for the exact SVD and the top ones for the
    randomised SVD; both are exact because ``total_variance`` comes from the Frobenius norm.
    """

    directions: torch.Tensor  # (R, d), orthonormal rows, sign-normalised
    shares: torch.Tensor  # explained variance / total variance, descending
    total_variance: float
    method: str


def choose_method(method: str, rank: int, width: int) -> str:
    """``auto`` takes the randomised SVD when the components wanted are few next to the width."""
    if method not in SVD_METHODS:
        raise InterpretShiftError(
            f"Unknown SVD method {method!r}.", f"Use one of: {', '.join(SVD_METHODS)}."
        )
    if method == "auto":
        return "randomized" if rank * 4 < width else "exact"
    return method


def principal_components(
    rows: torch.Tensor,
    components: int,
    *,
    method: str = "auto",
    oversample: int | None = None,
    power_iters: int = 8,
    seed: int = 0,
) -> Components:
    """Principal directions of the rows of ``rows`` (n x d), explained variance s^2 / (n - 1).

    The randomised SVD's defaults (oversample = R, 8 power iterations) suit trained FFN
    weights, whose spectra decay slowly: on SmolLM2-135M they keep the top-50 subspace
    overlap with the exact SVD at about 0.99 or more (docs/ffn.md).
    """
    centred = centre(rows.float())
    n, width = centred.shape
    rank = min(components, n, width)
    method = choose_method(method, rank, width)
    if method == "exact":
        values, right = svd_exact(centred)
    else:
        generator = torch.Generator().manual_seed(seed)
        values, right = svd_randomized(
            centred,
            rank,
            oversample=rank if oversample is None else oversample,
            power_iters=power_iters,
            generator=generator,
        )
    total = float(centred.square().sum(dtype=torch.float64)) / max(n - 1, 1)
    variance = values.double().square() / max(n - 1, 1)
    shares = variance / total if total > 0 else torch.zeros_like(variance)
    return Components(orient(right[:rank]), shares.float(), total, method)


def top_words(
    directions: torch.Tensor, unit_words: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each direction, the ``k`` words with the largest |cosine| and their signed scores.

    ``unit_words`` are L2-normalised embedding rows (V x d); returns two (R x k) tensors.
    """
    scores = directions @ unit_words.T  # (R, V)
    index = scores.abs().topk(min(k, scores.shape[1]), dim=1).indices
    return index, scores.gather(1, index)


def all_tokens(tokenizer, size: int) -> WordList:
    """Every token decoded on its own (ids as ``#17`` without a tokenizer).

    Unlike the whole-word ``vocabulary`` list this keeps numbers, code symbols, pieces of
    words and other scripts: FFN components often speak of exactly those.
    """
    count = size if tokenizer is None else min(size, len(tokenizer))
    if tokenizer is None:
        words = [f"#{i}" for i in range(count)]
    else:
        words = tokenizer.batch_decode([[i] for i in range(count)])
    return WordList(words, token_ids=[[i] for i in range(count)], name="tokens")


def down_rows(weights: Weights, layer: int) -> tuple[torch.Tensor, dict | None]:
    """The neurons' write vectors of one layer, and for an MoE layer how they are grouped.

    A dense layer gives ``W_down``. A mixture-of-experts layer gives every routed
    expert's rows stacked (expert 0 first), then the shared expert's: each row is still
    one neuron's write into the residual stream, whichever expert it belongs to, so the
    principal directions are those of everything the layer can write. The grouping goes
    into the record so rows and components can be traced back to experts.
    """
    count = weights.n_experts(layer)
    if count == 0:
        return weights.W_down(layer), None
    experts = weights.W_down_experts(layer)  # (experts, d_ff, d)
    shared = weights.W_down_shared(layer)
    parts = [experts.flatten(0, 1)] + ([] if shared is None else [shared])
    grouping = {
        "count": count,
        "neurons_per_expert": int(experts.shape[1]),
        "shared_neurons": 0 if shared is None else int(shared.shape[0]),
        "layout": "stacked",
    }
    return torch.cat(parts), grouping


class FFNConcepts(LayerExplainer):
    """Per layer: the top principal directions of W_down, named by the words they point to.

    Options: ``components`` (R) and ``top_k`` words per component; ``svd`` (auto, exact,
    randomized) with ``oversample`` (None: R), ``power_iters`` and ``seed`` for the
    randomised one; ``words`` ("tokens": every token decoded, the default; or a word-list
    provider name), ``words_path``, ``n_words``, ``word_rule`` (``shorter`` or ``paper``:
    how a provider's words become tokens); ``layers`` (None = all). A :class:`WordList`
    may be passed as ``word_list`` instead of naming one.
    """

    name = "ffn"
    data_kind = "subspace"
    description = "principal components of each FFN down-projection, named by words"

    @dataclasses.dataclass
    class Config:
        components: int = dataclasses.field(default=50, metadata=at_least(1))
        top_k: int = dataclasses.field(default=30, metadata=at_least(1))
        svd: str = "auto"
        oversample: int | None = dataclasses.field(default=None, metadata=at_least(0))  # None: R
        power_iters: int = dataclasses.field(default=8, metadata=at_least(0))
        seed: int = 0
        words: str = "tokens"
        words_path: str | None = None
        n_words: int | None = dataclasses.field(default=None, metadata=at_least(1))
        layers: list[int] | None = None
        # how a word-list provider's words become tokens (lexicon.words.word_token_ids);
        # the default "tokens" list is token ids already and is not affected
        word_rule: Literal["shorter", "paper"] = "shorter"

    def __init__(
        self, resources: Resources | None = None, word_list: WordList | None = None, **options
    ) -> None:
        super().__init__(resources, word_list, **options)
        choose_method(self.config.svd, 1, 1)  # fail on a bad name before any work

    def words(self, subject, weights: Weights) -> tuple[WordList, torch.Tensor]:
        """The words that name components and their unit-norm output embeddings (V x d)."""
        config, tokenizer = self.config, getattr(subject, "tokenizer", None)
        if self.word_list is None and config.words == "tokens":
            table = weights.unembed()
            words = all_tokens(tokenizer, table.shape[0]).top(config.n_words)
            matrix = table[: len(words)]
        else:
            words = self.word_list or load_words(
                config.words, subject, path=config.words_path, size=config.n_words,
                resources=self.resources,
            )  # fmt: skip
            words = words.top(config.n_words).tokenized(tokenizer, config.word_rule)
            matrix = words.embeddings(weights, "output")
        return words, F.normalize(matrix.float(), dim=1)

    def explain(
        self, subject, keys: Sequence[str], prompts: Sequence = ()
    ) -> Iterator[tuple[str, Explanation]]:
        if not keys:
            return
        config = self.config
        weights = subject.weights
        words, unit_words = self.words(subject, weights)
        word_meta = {"name": words.name, "size": len(words), "sha256": words_digest(words.words)}
        for key in keys:
            layer = int(key.removeprefix("layer."))
            with torch.inference_mode():
                down, experts = down_rows(weights, layer)
                found = principal_components(
                    down,
                    config.components,
                    method=config.svd,
                    oversample=config.oversample,
                    power_iters=config.power_iters,
                    seed=config.seed,
                )
                index, scores = top_words(found.directions, unit_words, config.top_k)
            yield (
                key,
                Explanation(
                    explainer=self.name,
                    data_kind=self.data_kind,
                    arrays={
                        "directions": found.directions.numpy().astype(np.float32),
                        "explained_variance": found.shares.numpy().astype(np.float32),
                        "total_variance": np.array([found.total_variance]),
                        "top_indices": index.numpy().astype(np.int64),
                        "top_scores": scores.numpy().astype(np.float32),
                    },
                    meta={
                        "layer": layer,
                        "unit": f"layers.{layer}.mlp.down_in",
                        "units": [f"layers.{layer}.ffn.pc.{r}" for r in range(index.shape[0])],
                        "method": found.method,
                        "n_neurons": int(down.shape[0]),
                        "word_list": word_meta,
                        "top_words": [[words.words[i] for i in row] for row in index.tolist()],
                        **({"experts": experts} if experts else {}),
                    },
                ),
            )
