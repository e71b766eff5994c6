"""Typed views of records, one per data kind: what the diff engine and reports may rely on.

A record is arrays plus metadata; a view checks that the keys, dtypes and shapes its data
kind promises are there and consistent, and fails with a :class:`RecordError` that names
the record. Generic diff metrics and report sections read records only through views, so
a new explainer of a known data kind is compared and shown without code of its own.

| data kind | arrays | metadata |
|---|---|---|
| ``token_attribution`` | ``attribution`` (tokens x targets), ``prompt_mask`` (tokens); optional ``instruction_mask``, ``context_mask`` | ``tokens``; optional ``response``, ``group`` |
| ``ranked_words`` | ``pairs`` (P x 4: unit, feature, word a, word b), ``pair_similarity`` (P) | ``words``, ``units`` |
| ``subspace`` | ``directions`` (R x d), ``explained_variance`` (>= R) | ``layer``; optional ``top_words`` (R lists) |
| ``unit_scalars`` | ``values`` (units) | optional ``units`` (names) |
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from interpret_shift.errors import RecordError

DATA_KINDS = ("token_attribution", "ranked_words", "subspace", "unit_scalars")


def _array(record, key: str, *, ndim: int, numeric: bool = True, optional: bool = False):
    arrays = record.arrays
    if key not in arrays:
        if optional:
            return None
        raise _bad(record, f"has no array {key!r}")
    value = np.asarray(arrays[key])
    if value.ndim != ndim:
        raise _bad(record, f"array {key!r} has {value.ndim} dimensions, not {ndim}")
    if numeric and not (np.issubdtype(value.dtype, np.number) or value.dtype == bool):
        raise _bad(record, f"array {key!r} has dtype {value.dtype}, not a number type")
    return value


def _meta(record, key: str, kind: type | tuple[type, ...], *, optional: bool = False):
    if key not in record.meta:
        if optional:
            return None
        raise _bad(record, f"has no metadata field {key!r}")
    value = record.meta[key]
    if not isinstance(value, kind):
        raise _bad(record, f"metadata field {key!r} is a {type(value).__name__}")
    return value


def _bad(record, what: str) -> RecordError:
    name = record.meta.get("key") or record.meta.get("prompt_id") or "?"
    return RecordError(
        f"Record {name!r} of explainer {record.explainer!r} ({record.data_kind}) {what}.",
        f"A {record.data_kind} record must follow the table in interpret_shift/core/views.py; "
        "fix the explainer, or rerun with --force if the record is old.",
    )


def _check_kind(record, data_kind: str) -> None:
    if record.data_kind != data_kind:
        raise _bad(record, f"is not a {data_kind} record")


@dataclass(frozen=True)
class TokenAttribution:
    """Attribution of each target (response token) to each input token."""

    attribution: np.ndarray  # (tokens, targets)
    prompt_mask: np.ndarray  # (tokens,) bool: the user's prompt, without template tokens
    instruction_mask: np.ndarray  # (tokens,) bool, all False when not annotated
    context_mask: np.ndarray  # (tokens,) bool
    tokens: list[str]
    response: str
    group: str | None

    @classmethod
    def of(cls, record) -> TokenAttribution:
        _check_kind(record, "token_attribution")
        attribution = _array(record, "attribution", ndim=2)
        n = attribution.shape[0]
        masks = {}
        for key in ("prompt_mask", "instruction_mask", "context_mask"):
            mask = _array(record, key, ndim=1, optional=key != "prompt_mask")
            mask = np.zeros(n, bool) if mask is None else mask.astype(bool)
            if mask.shape != (n,):
                raise _bad(record, f"array {key!r} has {mask.shape[0]} entries for {n} tokens")
            masks[key] = mask
        tokens = _meta(record, "tokens", list)
        if len(tokens) != n:
            raise _bad(record, f"lists {len(tokens)} tokens for {n} rows of 'attribution'")
        return cls(attribution.astype(np.float64), **masks, tokens=[str(t) for t in tokens],
                   response=str(record.meta.get("response") or ""),
                   group=record.meta.get("group"))  # fmt: skip

    def prompt(self, values: np.ndarray) -> np.ndarray:
        """``values`` (per token) restricted to the user's prompt tokens."""
        return values[self.prompt_mask]


@dataclass(frozen=True)
class RankedWords:
    """Per unit (head, neuron, ...), ranked word pairs that the unit links."""

    pairs: np.ndarray  # (P, 4) int: unit, feature (e.g. head dimension), word a, word b
    similarity: np.ndarray  # (P,)
    words: list[str]
    units: list[str]

    @classmethod
    def of(cls, record) -> RankedWords:
        _check_kind(record, "ranked_words")
        pairs = _array(record, "pairs", ndim=2)
        similarity = _array(record, "pair_similarity", ndim=1)
        words, units = _meta(record, "words", list), _meta(record, "units", list)
        if pairs.shape[1:] != (4,) or len(similarity) != len(pairs):
            raise _bad(record, f"has pairs of shape {pairs.shape} and {len(similarity)} scores")
        if len(pairs) and (pairs[:, 2:].max() >= len(words) or pairs.min() < 0):
            raise _bad(record, "has pairs whose word index is outside its word list")
        if len(pairs) and pairs[:, 0].max() >= len(units):
            raise _bad(record, "has pairs whose unit is outside its list of units")
        return cls(pairs.astype(np.int64), similarity.astype(np.float64), words, units)

    def pair_sets(self) -> list[set[tuple[str, str]]]:
        """Per unit, its pairs as order-free, lower-cased word pairs."""
        sets: list[set[tuple[str, str]]] = [set() for _ in self.units]
        for unit, _, a, b in self.pairs.tolist():
            first, second = self.words[a].lower(), self.words[b].lower()
            sets[unit].add((min(first, second), max(first, second)))
        return sets


@dataclass(frozen=True)
class Subspace:
    """The top directions one unit (a layer's matrix) writes along, with their variance."""

    directions: np.ndarray  # (R, d), orthonormal rows
    explained_variance: np.ndarray  # (>= R,) shares, descending
    layer: int
    top_words: list[list[str]] | None

    @classmethod
    def of(cls, record) -> Subspace:
        _check_kind(record, "subspace")
        directions = _array(record, "directions", ndim=2)
        variance = _array(record, "explained_variance", ndim=1)
        if len(variance) < len(directions):
            raise _bad(record, f"has {len(variance)} variances for {len(directions)} directions")
        top = _meta(record, "top_words", list, optional=True)
        if top is not None and len(top) != len(directions):
            raise _bad(record, f"names {len(top)} components for {len(directions)} directions")
        layer = _meta(record, "layer", int)
        return cls(directions.astype(np.float64), variance.astype(np.float64), layer, top)


@dataclass(frozen=True)
class UnitScalars:
    """One number per unit (layer, head, ...)."""

    values: np.ndarray  # (units,)
    units: list[str]

    @classmethod
    def of(cls, record) -> UnitScalars:
        _check_kind(record, "unit_scalars")
        values = _array(record, "values", ndim=1)
        units = _meta(record, "units", list, optional=True) or [str(i) for i in range(len(values))]
        if len(units) != len(values):
            raise _bad(record, f"names {len(units)} units for {len(values)} values")
        return cls(values.astype(np.float64), [str(u) for u in units])


VIEWS: Mapping[str, Any] = {
    "token_attribution": TokenAttribution,
    "ranked_words": RankedWords,
    "subspace": Subspace,
    "unit_scalars": UnitScalars,
}


def view(record):
    """The typed view of ``record`` for its data kind (a :class:`RecordError` if it has none)."""
    if record.data_kind not in VIEWS:
        raise _bad(record, f"has a data kind with no view (known: {', '.join(DATA_KINDS)})")
    return VIEWS[record.data_kind].of(record)
