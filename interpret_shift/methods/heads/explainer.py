"""Attention heads: which word pairs a head's query/key dimensions encode (DESIGN §3.2).

For a head h, ``Q = E W_q^h`` and ``K = E W_k^h`` give every word's query and key
activation along each head dimension (input norm's weight folded in, key heads repeated
for grouped-query attention; both come from :class:`~interpret_shift.core.weights.Weights`).
A dimension whose top query words and top key words have the same sign raises the
attention score between them; among those candidate pairs, the ones that are also related
out of context (similar under a word-similarity backend, above both words' thresholds)
describe what the dimension does. No forward pass; a subject that streams its weights
(``weights_from``) is read one layer at a time from its safetensors checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from typing import Literal

import numpy as np
import torch
from einops import rearrange

from interpret_shift.core.options import at_least
from interpret_shift.core.records import Explanation
from interpret_shift.errors import InterpretShiftError
from interpret_shift.lexicon.similarity import similarity_backend, thresholds
from interpret_shift.lexicon.words import WordList, load_words
from interpret_shift.methods.layer_explainer import LayerExplainer, words_digest


@dataclasses.dataclass
class WordSpace:
    """Everything about the words a layer is explained with, computed once per model."""

    words: WordList
    embeddings: torch.Tensor  # (n, d_model), the input embedding rows
    vectors: torch.Tensor  # (n, dim), unit vectors of the similarity backend
    thresholds: torch.Tensor  # (n,), per-word similarity bar
    lowered: torch.Tensor  # (n,), equal for words that count as the same (see ``self_pairs``)


def head_pairs(
    Q: torch.Tensor, K: torch.Tensor, space: WordSpace, top_k: int
) -> dict[str, torch.Tensor]:
    """One head's dimensions by energy and, per dimension, its related same-sign word pairs.

    ``Q`` and ``K`` are ``(d_head, n_words)``: one row per dimension, so that the top-k
    runs along contiguous memory. Returns ``dim_order`` and ``energy`` (d_head,),
    ``top_q``/``top_k`` word indices (d_head, k) by rank, and ``pairs`` (P, 3) of
    (dimension, q word, k word) with ``similarity`` (P,), ordered by dimension rank, then
    similarity descending. All dimensions and word pairs are done at once: the pair masks
    are (d_head, k, k) boolean tensors.
    """
    k = min(top_k, Q.shape[1])
    energy, order = (Q.square().sum(1) + K.square().sum(1)).sort(descending=True, stable=True)
    Q, K = Q[order], K[order]
    q_top = Q.abs().topk(k, dim=1).indices  # (d_head, k) word indices in rank order
    k_top = K.abs().topk(k, dim=1).indices
    q_sign = Q.gather(1, q_top).sign()
    k_sign = K.gather(1, k_top).sign()
    sim = torch.bmm(space.vectors[q_top], space.vectors[k_top].transpose(1, 2))
    keep = (
        (q_sign[:, :, None] * k_sign[:, None, :] > 0)
        & (sim > space.thresholds[q_top][:, :, None])
        & (sim > space.thresholds[k_top][:, None, :])
        & (space.lowered[q_top][:, :, None] != space.lowered[k_top][:, None, :])
    )
    rank, qi, ki = keep.nonzero(as_tuple=True)  # row-major: rank, then q rank, then k rank
    similarity = sim[rank, qi, ki]
    by_sim = similarity.sort(descending=True, stable=True).indices
    by_rank = rank[by_sim].sort(stable=True).indices
    pick = by_sim[by_rank]
    rank, qi, ki = rank[pick], qi[pick], ki[pick]
    pairs = torch.stack([order[rank], q_top[rank, qi], k_top[rank, ki]], dim=1)
    return {
        "dim_order": order,
        "energy": energy,
        "top_q": q_top,
        "top_k": k_top,
        "pairs": pairs,
        "similarity": similarity[pick],
    }


def layer_pairs(
    W_q: torch.Tensor, W_k: torch.Tensor, space: WordSpace, top_k: int
) -> dict[str, np.ndarray]:
    """:func:`head_pairs` for every head of a layer, as record arrays.

    ``W_q``/``W_k`` are ``(n_heads, d_model, d_head)``. Pairs of all heads are concatenated
    into ``pairs`` (P, 4) = (head, dimension, q word, k word), heads in order.
    """
    words_t = space.embeddings.T.contiguous()  # (d_model, n_words)
    # one matmul per layer: (heads, d_head, d_model) @ (d_model, n_words)
    Q = rearrange(W_q, "h d e -> h e d").contiguous() @ words_t
    K = rearrange(W_k, "h d e -> h e d").contiguous() @ words_t
    per_head = [head_pairs(Q[h], K[h], space, top_k) for h in range(W_q.shape[0])]
    heads = torch.cat([torch.full((len(r["pairs"]), 1), h) for h, r in enumerate(per_head)])
    pairs = torch.cat([heads, torch.cat([r["pairs"] for r in per_head])], dim=1)
    stack = {name: torch.stack([r[name] for r in per_head]) for name in
             ("dim_order", "energy", "top_q", "top_k")}  # fmt: skip
    arrays = {name: value.numpy().astype(np.int32) for name, value in stack.items()}
    arrays["energy"] = stack["energy"].numpy().astype(np.float32)
    arrays["pairs"] = pairs.numpy().astype(np.int32).reshape(-1, 4)
    arrays["pair_similarity"] = torch.cat([r["similarity"] for r in per_head]).numpy()
    return arrays


def same_word_ids(words: WordList, rule: str = "lowercase") -> np.ndarray:
    """One id per word; a pair of words with equal ids is a self pair and is dropped.

    ``lowercase``: words equal once lower-cased ("The", "the") share an id. ``exact`` (the
    paper's code): only identical strings do.
    """
    if rule == "exact":
        return np.unique(words.words, return_inverse=True)[1].reshape(-1)
    return words.lowered_ids()


class HeadPatterns(LayerExplainer):
    """Per layer, per head: dimensions by energy and the related word pairs each one links.

    Options: ``top_k`` words per dimension; ``words`` (a word-list provider name),
    ``words_path``, ``n_words`` and ``word_rule`` (how words become tokens: ``shorter`` or
    ``paper``); ``similarity`` (a backend name) and ``similarity_path``; ``baseline`` words
    (None: the whole list) and ``z`` for the thresholds; ``self_pairs`` (``lowercase``: drop
    pairs of words equal once lower-cased; ``exact``, the paper's: drop only identical
    words); ``layers`` (None = all). A :class:`WordList` object may be passed as
    ``word_list`` instead of naming a provider (its name is then recorded as ``words``).
    """

    name = "heads"
    data_kind = "ranked_words"
    description = "word pairs each attention-head dimension links (W_q, W_k)"

    @dataclasses.dataclass
    class Config:
        top_k: int = dataclasses.field(default=100, metadata=at_least(1))
        similarity: str = "model-embedding"
        similarity_path: str | None = None
        words: str = "vocabulary"
        words_path: str | None = None
        n_words: int | None = dataclasses.field(default=10_000, metadata=at_least(2))
        # None: every word of the list is in the baseline (the paper's code)
        baseline: int | None = dataclasses.field(default=3000, metadata=at_least(1))
        z: float = dataclasses.field(default=1.96, metadata=at_least(0))
        layers: list[int] | None = None
        word_rule: Literal["shorter", "paper"] = "shorter"  # lexicon.words.word_token_ids
        self_pairs: Literal["lowercase", "exact"] = "lowercase"

    def explain(
        self, subject, keys: Sequence[str], prompts: Sequence = ()
    ) -> Iterator[tuple[str, Explanation]]:
        if not keys:
            return
        weights = subject.weights
        space = self.word_space(subject)
        meta = {
            "words": space.words.words,
            "word_list": {"name": space.words.name, "size": len(space.words),
                          "sha256": words_digest(space.words.words)},
            "similarity": self.config.similarity,
            "n_layers": weights.layout.n_layers,
            "n_heads": weights.layout.n_heads,
            "d_head": weights.layout.d_head,
            "top_k": min(self.config.top_k, len(space.words)),
        }  # fmt: skip
        for key in keys:
            layer = int(key.split(".")[1])
            with torch.inference_mode():
                arrays = layer_pairs(weights.W_q(layer), weights.W_k(layer), space,
                                     self.config.top_k)  # fmt: skip
            units = [f"layers.{layer}.heads.{h}" for h in range(weights.layout.n_heads)]
            yield key, Explanation(self.name, self.data_kind, arrays,
                                   dict(meta, layer=layer, units=units))  # fmt: skip

    def word_space(self, subject) -> WordSpace:
        """Words, their embeddings, similarity vectors and thresholds (once per subject)."""
        key = ("heads.word_space", repr(self.config), id(self.word_list))
        return subject.memo(key, lambda: self._word_space(subject))

    def _word_space(self, subject) -> WordSpace:
        config = self.config
        words = self.word_list or load_words(
            config.words, subject, path=config.words_path, size=config.n_words,
            resources=self.resources,
        )  # fmt: skip
        words = words.top(config.n_words).tokenized(
            getattr(subject, "tokenizer", None), config.word_rule
        )
        if len(words) < 2:
            raise InterpretShiftError(
                f"The word list {words.name!r} has {len(words)} word(s).", "Use a longer list."
            )
        backend = similarity_backend(config.similarity, self.resources)
        baseline = len(words) if config.baseline is None else config.baseline
        with torch.inference_mode():
            vectors = backend.vectors(words, subject, path=config.similarity_path).float()
            space = WordSpace(
                words=words,
                embeddings=words.embeddings(subject.weights, "input"),
                vectors=vectors,
                thresholds=thresholds(vectors, words.most_frequent(baseline), config.z),
                lowered=torch.from_numpy(same_word_ids(words, config.self_pairs)),
            )
        return space
