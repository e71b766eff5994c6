"""What the weight-only explainers (heads, FFN) share: one record per layer, weights read
from the subject (its loaded model, or the checkpoint it streams from), and a word list
named in the config."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Sequence
from typing import Any

from interpret_shift.core.explainer import Explainer
from interpret_shift.core.files import path_identity
from interpret_shift.core.options import chosen_layers
from interpret_shift.core.resources import Resources
from interpret_shift.lexicon.words import WordList


class LayerExplainer(Explainer):
    """Base for explainers whose ``Config`` has ``layers`` and ``words``.

    A :class:`WordList` object may be passed as ``word_list`` instead of naming a provider;
    its name and a digest of its words are then recorded as ``words``, so a resumed run
    cannot mix word lists. Where the weights come from is the subject's business
    (``Subject.weights_from``), never the explainer's.
    """

    needs = frozenset({"weights"})

    def __init__(
        self, resources: Resources | None = None, word_list: WordList | None = None, **options
    ) -> None:
        if word_list is not None:
            options.setdefault("words", f"{word_list.name}:{words_digest(word_list.words)}")
        super().__init__(resources, **options)
        self.word_list = word_list

    def items(self, subject, prompts: Sequence = ()) -> list[str]:
        layers = chosen_layers(self.name, self.config.layers, subject.weights.layout.n_layers)
        return [f"layer.{layer}" for layer in layers]

    def item_inputs(self, subject, key: str, prompt=None) -> dict[str, Any]:
        """The layer, the word list's identity and every file option's identity.

        A :class:`WordList` passed as ``word_list``: its name and a digest of its words.
        A provider named in ``words``: its name (what it yields from the model and
        tokenizer is covered by the subject's identity). Every ``*_path`` option that is
        set (``words_path``, ``similarity_path``): its content digest (see
        :func:`~interpret_shift.core.files.path_identity`), so an edited file is noticed.
        """
        if self.word_list is not None:
            words = {"name": self.word_list.name, "sha256": words_digest(self.word_list.words)}
        else:
            words = {"name": getattr(self.config, "words", None)}
        files = {
            f.name: path_identity(getattr(self.config, f.name))
            for f in dataclasses.fields(self.config)
            if f.name.endswith("_path") and getattr(self.config, f.name) is not None
        }
        return {"layer": key, "words": words, "files": files}


def words_digest(words: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(words).encode()).hexdigest()[:16]
