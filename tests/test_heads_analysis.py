"""The Table-3 analysis on hand-made records: counts, shares and overlaps worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from interpret_shift.core.records import Explanation, RecordStore
from interpret_shift.errors import InterpretShiftError
from interpret_shift.methods.heads.analysis import (
    CountTable,
    compare_verbs,
    count_table,
    head_overlap,
    repeated_pairs,
    top_pairs,
    verb_shares,
)


def record(layer, words, pairs, sims=None, n_heads=2, n_layers=4):
    """A 'heads' record with the given (head, dim, q word, k word) pairs, words by name."""
    index = {w: i for i, w in enumerate(words)}
    rows = np.array([[h, d, index[q], index[k]] for h, d, q, k in pairs], dtype=np.int32)
    sims = np.linspace(0.9, 0.5, len(pairs)) if sims is None else np.asarray(sims)
    return Explanation(
        "heads",
        "ranked_words",
        {"pairs": rows.reshape(-1, 4), "pair_similarity": sims.astype(np.float32)},
        {"words": list(words), "layer": layer, "n_heads": n_heads, "n_layers": n_layers},
    )


def test_repeated_pairs_are_order_free_lower_cased_and_in_two_dimensions():
    words = ["write", "Poem", "poem", "story", "translate", "text", "cat"]
    pairs = [
        (0, 0, "write", "poem"), (0, 1, "Poem", "write"),  # one pair, dims 0 and 1
        (0, 1, "write", "story"), (0, 2, "story", "write"),  # one pair, dims 1 and 2
        (0, 0, "translate", "text"), (0, 0, "text", "translate"),  # one dimension only
        (0, 3, "cat", "text"),
        (1, 0, "translate", "text"), (1, 2, "text", "translate"), (1, 1, "write", "poem"),
    ]  # fmt: skip
    found = repeated_pairs(record(0, words, pairs))
    named = {(int(h), found.vocab[a], found.vocab[b]) for h, a, b in
             zip(found.head, found.lo, found.hi)}  # fmt: skip
    assert named == {(0, "poem", "write"), (0, "story", "write"), (1, "text", "translate")}
    table = count_table([record(0, words, pairs)], ["write", "Translate", "poem", "cat", "none"])
    assert table.units == ["layers.0.heads.0", "layers.0.heads.1"]
    assert table.words == ["write", "translate", "poem", "cat", "none"]
    assert table.counts.tolist() == [[2, 0, 1, 0, 0], [0, 1, 0, 0, 0]]


def test_a_record_without_pairs_counts_zero():
    table = count_table([record(1, ["a", "b"], [])], ["a"])
    assert table.counts.tolist() == [[0], [0]]


# base -> tuned count of each verb in the single head of layers 0..3
COUNTS = {
    "write": [(1, 3), (2, 2), (0, 1), (2, 1)],
    "explain": [(0, 2), (1, 0), (1, 2), (0, 1)],
    "translate": [(3, 1), (0, 1), (0, 0), (1, 3)],
    "go": [(1, 0), (2, 1), (1, 1), (0, 2)],
    "make": [(0, 1), (1, 0), (2, 0), (2, 1)],
    "take": [(1, 1), (0, 0), (1, 2), (3, 0)],
}
INSTRUCTION, GENERAL = ["write", "explain", "translate"], ["go", "make", "take"]
# worked out by hand: share of changed heads where tuned > base, layers 0-1 and 2-3
SHARES_BY_HAND = {
    "write": (1.0, 0.5),  # up, tie | up, down
    "explain": (0.5, 1.0),  # up, down | up, up
    "translate": (0.5, 1.0),  # down, up | tie, up
    "go": (0.0, 1.0),  # down, down | tie, up
    "make": (0.5, 0.0),  # up, down | down, down
    "take": (math.nan, 0.5),  # tie, tie | up, down
}


def records_from_counts(which: int) -> list[Explanation]:
    """Give each verb its count by pairing it with that many partner words in two dimensions."""
    out = []
    for layer in range(4):
        words, pairs = list(COUNTS), []
        for verb, counts in COUNTS.items():
            for j in range(counts[layer][which]):
                partner = f"{verb}-partner-{j}"
                words.append(partner)
                pairs += [(0, 0, verb, partner), (0, 5, partner, verb)]
        out.append(record(layer, words, pairs, n_heads=1, n_layers=4))
    return out


def test_verb_comparison_matches_the_hand_computed_shares():
    base, tuned = records_from_counts(0), records_from_counts(1)
    result = compare_verbs(base, tuned, INSTRUCTION, GENERAL, group_size=2)
    assert result.instruction.groups == [(0, 1), (2, 3)]
    for shares, verbs in ((result.instruction, INSTRUCTION), (result.general, GENERAL)):
        for j, verb in enumerate(verbs):
            np.testing.assert_array_equal(shares.share[:, j], SHARES_BY_HAND[verb])
    assert result.general.changed[:, 2].tolist() == [0, 2]  # 'take' in layers 0-1: no change
    for g, test in enumerate(result.tests):
        a = [SHARES_BY_HAND[v][g] for v in INSTRUCTION]
        b = [SHARES_BY_HAND[v][g] for v in GENERAL if not math.isnan(SHARES_BY_HAND[v][g])]
        assert (test.n_instruction, test.n_general) == (len(a), len(b))
        assert test.mean_instruction == pytest.approx(sum(a) / len(a))
        assert test.mean_general == pytest.approx(sum(b) / len(b))
        two = stats.ttest_ind(a, b, equal_var=False)
        assert test.t == pytest.approx(two.statistic)
        assert test.p_two_sided == pytest.approx(two.pvalue)
        # one-sided: half the two-sided p when t > 0, one minus half otherwise
        half = two.pvalue / 2
        assert test.p_greater == pytest.approx(half if two.statistic > 0 else 1 - half)
    assert (result.tests[0].first_layer, result.tests[0].last_layer) == (0, 1)


def test_records_can_come_from_a_store(tmp_path):
    store = RecordStore(tmp_path / "base")
    for r in records_from_counts(0):
        store.save(f"layer.{r.meta['layer']}", r)
    from_store = count_table(store, INSTRUCTION)
    in_memory = count_table(records_from_counts(0), INSTRUCTION)
    np.testing.assert_array_equal(from_store.counts, in_memory.counts)


def test_default_groups_are_a_quarter_of_the_depth():
    units = [f"layers.{i}.heads.0" for i in range(8)]
    layers = np.arange(8)
    base = CountTable(units, layers, ["v"], np.zeros((8, 1), dtype=int), 8)
    tuned = CountTable(units, layers, ["v"], np.array([[1], [0], [1], [1], [0], [0], [2], [0]]), 8)
    shares = verb_shares(base, tuned)
    assert shares.groups == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert shares.higher[:, 0].tolist() == [1, 2, 0, 1]
    np.testing.assert_array_equal(shares.share[:, 0], [1.0, 1.0, np.nan, 1.0])
    other = CountTable(units[:4], layers[:4], ["v"], np.zeros((4, 1), dtype=int), 8)
    with pytest.raises(InterpretShiftError, match="different heads"):
        verb_shares(base, other)


def test_head_overlap_is_jaccard_of_top_pairs_most_moved_first():
    words = ["a", "b", "c", "d", "e", "A"]
    base = record(2, words, [(0, 0, "a", "b"), (0, 1, "c", "d"), (2, 0, "a", "e")], n_heads=3)
    tuned = record(2, words, [(0, 3, "b", "A"), (0, 0, "c", "e"), (2, 1, "e", "a")], n_heads=3)
    rows = head_overlap([base], [tuned])
    assert [(r.layer, r.head) for r in rows] == [(2, 0), (2, 2), (2, 1)]
    assert rows[0].jaccard == pytest.approx(1 / 3)  # {ab, cd} vs {ab, ce}
    assert rows[1].jaccard == 1.0
    assert math.isnan(rows[2].jaccard) and rows[2].n_base == rows[2].n_tuned == 0
    # top-K keeps the most similar pairs; a pair met twice counts once
    ranked = record(0, words, [(0, 0, "c", "d"), (0, 1, "a", "b"), (0, 2, "b", "a")],
                    sims=[0.5, 0.9, 0.8])  # fmt: skip
    assert top_pairs(ranked, 0, top=1) == {("a", "b")}
    assert top_pairs(ranked, 0, top=5) == {("a", "b"), ("c", "d")}
