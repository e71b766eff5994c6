"""A pair: the base and the tuned subject seen as one, for methods that need both at once.

Most explainers read one model at a time and the diff engine compares their records. A
*pair explainer* (``needs`` contains ``"pair"``: token distribution shift, patching, ...)
reads both models in one computation; the runner hands it a :class:`Pair` wherever it would
hand a :class:`~interpret_shift.core.subject.Subject`, so records, digests, reuse and
resumption work the same: a pair record belongs to exactly these two models. ``compare``
has checked before that the two share one architecture, shape and tokenizer.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

SIDES = ("base", "tuned")


def shape(subject) -> tuple[str, int, int | None]:
    """What must agree for two models' activations to mean the same thing: the adapter,
    the number of layers and the width of the residual stream."""
    width = getattr(subject.model.config, "hidden_size", None)
    return subject.adapter.name, subject.layout.n_layers, width


@dataclass
class Pair:
    """Two subjects, base and tuned. ``tokenizer`` is the tuned model's: pair methods feed
    both models the text of the tuned model's chat template."""

    base: Any
    tuned: Any
    label: str = "pair"
    memo_store: dict = field(default_factory=dict, repr=False)  # per pair, like Subject.memo

    @property
    def subjects(self) -> tuple[Any, Any]:
        return self.base, self.tuned

    @property
    def tokenizer(self):
        return self.tuned.tokenizer

    @property
    def fingerprint(self) -> str:
        both = f"{self.base.fingerprint}+{self.tuned.fingerprint}"
        return hashlib.sha256(both.encode("ascii")).hexdigest()[:16]

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        if key not in self.memo_store:
            self.memo_store[key] = compute()
        return self.memo_store[key]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        with self.base.frozen(), self.tuned.frozen():
            yield

    def provenance(self) -> dict:
        base, tuned = self.base.provenance(), self.tuned.provenance()
        return {
            "label": self.label,
            "fingerprint": self.fingerprint,
            "weights": {"base": base["weights"], "tuned": tuned["weights"]},
            "dtype": "+".join(dict.fromkeys((base["dtype"], tuned["dtype"]))),
            "base": base,
            "tuned": tuned,
        }
