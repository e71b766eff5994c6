"""What the weight-only explainers (heads, FFN) share: one record per layer, weights read
from the loaded model or streamed from a checkpoint, and a word list named in the config."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from interpret_shift.errors import InterpretShiftError
from interpret_shift.explainers import Explainer
from interpret_shift.weights import Weights
from interpret_shift.words import WordList


class LayerExplainer(Explainer):
    """Base for explainers whose ``Config`` has ``layers``, ``stream_from`` and ``words``.

    A :class:`WordList` object may be passed as ``word_list`` instead of naming a provider;
    its name and a digest of its words are then recorded as ``words``, so a resumed run
    cannot mix word lists.
    """

    needs = frozenset({"weights"})

    def __init__(self, word_list: WordList | None = None, **options) -> None:
        if word_list is not None:
            options.setdefault("words", f"{word_list.name}:{words_digest(word_list.words)}")
        super().__init__(**options)
        self.word_list = word_list
        self._streamed: Weights | None = None

    def weights(self, subject) -> Weights:
        """The subject's weights, or the checkpoint in ``stream_from`` read layer by layer."""
        if self.config.stream_from is None:
            return subject.weights
        if self._streamed is None:
            self._streamed = Weights.from_folder(self.config.stream_from)
        return self._streamed

    def items(self, subject, prompts: Sequence = ()) -> list[str]:
        n_layers = self.weights(subject).layout.n_layers
        layers = range(n_layers) if self.config.layers is None else self.config.layers
        bad = [layer for layer in layers if not 0 <= layer < n_layers]
        if bad:
            raise InterpretShiftError(
                f"Layer {bad[0]} does not exist: the model has {n_layers} layers.",
                f"Choose layers between 0 and {n_layers - 1}.",
            )
        return [f"layer.{layer}" for layer in layers]


def words_digest(words: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]
