"""What tuning changed in the attention heads' word pairs (DESIGN §3.2, the paper's Table 3).

Input: the ``heads`` explainer's records (one per layer) of a base and a tuned model.

- A head *encodes* a pair (order-free, lower-cased) when the pair occurs in more than one
  of its dimensions; a word's *count* in a head is how many such pairs contain it.
- For each verb, over the heads where its count changed between the models, the
  *share* of heads where the tuned count is higher (unchanged heads are dropped).
- Instruction verbs vs general verbs, per group of layers: Welch t-test on the shares,
  two-sided and one-sided (instruction > general), with n and means.
- Per head, the Jaccard overlap of the two models' top pairs: which heads moved most.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from interpret_shift.core.records import Explanation, RecordStore
from interpret_shift.core.stats import t_test
from interpret_shift.errors import InterpretShiftError

Records = Mapping[str, Explanation] | RecordStore | Iterable[Explanation]


@dataclass(frozen=True)
class RepeatedPairs:
    """One layer's pairs that occur in more than one dimension of their head.

    ``vocab`` is the sorted lower-cased word list; ``lo``/``hi`` index it (lo < hi).
    """

    layer: int
    n_heads: int
    vocab: np.ndarray
    head: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def repeated_pairs(record: Explanation) -> RepeatedPairs:
    """Pairs (order-free, lower-cased) found in at least two dimensions of a head."""
    vocab, lowered = np.unique([w.lower() for w in record.meta["words"]], return_inverse=True)
    pairs = np.asarray(record.arrays["pairs"], dtype=np.int64).reshape(-1, 4)
    a, b = lowered.reshape(-1)[pairs[:, 2]], lowered.reshape(-1)[pairs[:, 3]]
    rows = np.stack([pairs[:, 0], np.minimum(a, b), np.maximum(a, b), pairs[:, 1]], axis=1)
    per_dim = np.unique(rows, axis=0)  # one row per (head, pair, dimension)
    pair_rows, dims = np.unique(per_dim[:, :3], axis=0, return_counts=True)
    kept = pair_rows[dims > 1]
    return RepeatedPairs(
        int(record.meta["layer"]), int(record.meta["n_heads"]), vocab,
        kept[:, 0], kept[:, 1], kept[:, 2],
    )  # fmt: skip


@dataclass(frozen=True)
class CountTable:
    """How often each word occurs in each head's repeated pairs (units x words)."""

    units: list[str]
    layers: np.ndarray  # (units,)
    words: list[str]  # lower-cased
    counts: np.ndarray  # (units, words) int
    n_layers: int


def count_table(records: Records, words: Sequence[str]) -> CountTable:
    """Counts of ``words`` in every head of every record (a word absent from a list counts 0)."""
    records = sorted(_as_list(records), key=lambda r: int(r.meta["layer"]))
    if not records:
        raise InterpretShiftError("No 'heads' records to analyse.", "Run the heads explainer.")
    wanted = np.array([w.lower() for w in words])
    units, layers, blocks = [], [], []
    for record in records:
        found = repeated_pairs(record)
        per_head = np.zeros((found.n_heads, len(found.vocab)), dtype=np.int64)
        np.add.at(per_head, (found.head, found.lo), 1)
        np.add.at(per_head, (found.head, found.hi), 1)
        where = np.searchsorted(found.vocab, wanted).clip(max=len(found.vocab) - 1)
        known = found.vocab[where] == wanted
        blocks.append(np.where(known[None, :], per_head[:, where], 0))
        units += [f"layers.{found.layer}.heads.{h}" for h in range(found.n_heads)]
        layers += [found.layer] * found.n_heads
    n_layers = int(records[0].meta.get("n_layers") or max(layers) + 1)
    return CountTable(units, np.array(layers), list(wanted), np.concatenate(blocks), n_layers)


@dataclass(frozen=True)
class Shares:
    """Per layer group and word: share of changed heads where the tuned count is higher."""

    groups: list[tuple[int, int]]  # (first layer, last layer), inclusive
    words: list[str]
    share: np.ndarray  # (groups, words), NaN where no head changed
    changed: np.ndarray  # (groups, words): heads where the count changed
    higher: np.ndarray  # (groups, words): of those, heads where tuned > base


def verb_shares(base: CountTable, tuned: CountTable, group_size: int | None = None) -> Shares:
    """Group heads by layer (``group_size`` layers, default a quarter of the depth)."""
    if base.units != tuned.units or base.words != tuned.words:
        raise InterpretShiftError(
            "The base and tuned records cover different heads or words.",
            "Explain the same layers of both models with the same options.",
        )
    size = group_size or max(1, base.n_layers // 4)
    group = base.layers // size
    n_groups = int(math.ceil(base.n_layers / size))
    delta = np.sign(tuned.counts - base.counts)  # (units, words)
    changed = np.zeros((n_groups, len(base.words)), dtype=np.int64)
    higher = np.zeros_like(changed)
    np.add.at(changed, group, (delta != 0).astype(np.int64))
    np.add.at(higher, group, (delta > 0).astype(np.int64))
    share = np.divide(higher, changed, out=np.full(changed.shape, np.nan), where=changed > 0)
    groups = [(g * size, min((g + 1) * size, base.n_layers) - 1) for g in range(n_groups)]
    return Shares(groups, base.words, share, changed, higher)


@dataclass(frozen=True)
class GroupTest:
    """Instruction vs general verbs in one layer group: Welch t-test on their shares."""

    first_layer: int
    last_layer: int
    n_instruction: int
    n_general: int
    mean_instruction: float
    mean_general: float
    t: float
    p_two_sided: float
    p_greater: float  # H1: instruction verbs' shares are higher


@dataclass(frozen=True)
class VerbComparison:
    instruction: Shares
    general: Shares
    tests: list[GroupTest]


def compare_verbs(
    base: Records,
    tuned: Records,
    instruction_verbs: Sequence[str],
    general_verbs: Sequence[str],
    group_size: int | None = None,
) -> VerbComparison:
    """The paper's Table 3: do heads gain instruction verbs more often than general verbs?

    Verbs without any changed head in a group carry no share there and are left out of
    that group's test (n says how many took part).
    """
    base, tuned = _as_list(base), _as_list(tuned)
    shares = [
        verb_shares(count_table(base, verbs), count_table(tuned, verbs), group_size)
        for verbs in (instruction_verbs, general_verbs)
    ]
    tests = [
        welch(first, last, shares[0].share[g], shares[1].share[g])
        for g, (first, last) in enumerate(shares[0].groups)
    ]
    return VerbComparison(shares[0], shares[1], tests)


def welch(first: int, last: int, a: np.ndarray, b: np.ndarray) -> GroupTest:
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    mean_a = float(a.mean()) if a.size else math.nan
    mean_b = float(b.mean()) if b.size else math.nan
    t, p_two = t_test(a, b)
    p_greater = t_test(a, b, alternative="greater")[1]
    return GroupTest(first, last, a.size, b.size, mean_a, mean_b, t, p_two, p_greater)


@dataclass(frozen=True)
class HeadOverlap:
    """How much of a head's top pairs the two models share (1 = same, 0 = disjoint)."""

    layer: int
    head: int
    jaccard: float  # NaN when neither model has a pair
    n_base: int
    n_tuned: int


def top_pairs(record: Explanation, head: int, top: int = 100) -> set[tuple[str, str]]:
    """A head's ``top`` distinct pairs (order-free, lower-cased) by their best similarity."""
    lowered = np.array([w.lower() for w in record.meta["words"]])
    pairs = np.asarray(record.arrays["pairs"]).reshape(-1, 4)
    mine = pairs[:, 0] == head
    order = np.argsort(-np.asarray(record.arrays["pair_similarity"])[mine], kind="stable")
    q, k = lowered[pairs[mine, 2][order]], lowered[pairs[mine, 3][order]]
    keys = np.stack([np.where(q <= k, q, k), np.where(q <= k, k, q)], axis=1)
    if not len(keys):
        return set()
    _, first = np.unique(keys, axis=0, return_index=True)  # best-ranked copy of each pair
    return {tuple(pair) for pair in keys[np.sort(first)[:top]].tolist()}


def head_overlap(base: Records, tuned: Records, top: int = 100) -> list[HeadOverlap]:
    """Jaccard overlap of each head's top pairs, most-moved heads (lowest overlap) first."""
    by_layer = {int(r.meta["layer"]): r for r in _as_list(tuned)}
    rows = []
    for record in _as_list(base):
        layer = int(record.meta["layer"])
        if layer not in by_layer:
            continue
        for head in range(int(record.meta["n_heads"])):
            a, b = top_pairs(record, head, top), top_pairs(by_layer[layer], head, top)
            union = len(a | b)
            jaccard = len(a & b) / union if union else math.nan
            rows.append(HeadOverlap(layer, head, jaccard, len(a), len(b)))
    return sorted(rows, key=lambda r: (math.isnan(r.jaccard), r.jaccard, r.layer, r.head))


def _as_list(records: Records) -> list[Explanation]:
    if isinstance(records, Mapping):
        return list(records.values())
    if isinstance(records, RecordStore):
        return [record for _, record in records]
    return list(records)
