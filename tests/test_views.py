"""Typed views check a record's arrays and metadata and name the record when they are wrong."""

from __future__ import annotations

import numpy as np
import pytest

from interpret_shift import Explanation, RecordError, view
from interpret_shift.core.views import RankedWords, Subspace, TokenAttribution, UnitScalars


def attribution(**changes) -> Explanation:
    arrays = {"attribution": np.ones((3, 2), np.float32), "prompt_mask": np.array([0, 1, 1]),
              "instruction_mask": np.array([0, 1, 0])}  # fmt: skip
    meta = {"key": "p7", "tokens": ["<s>", "Hi", "there"], "response": "ok"}
    arrays.update(changes.pop("arrays", {}))
    meta.update(changes.pop("meta", {}))
    return Explanation("probe", "token_attribution", arrays, meta)


def test_a_well_formed_record_gives_its_view():
    seen = view(attribution())
    assert isinstance(seen, TokenAttribution)
    assert seen.prompt(np.arange(3)).tolist() == [1, 2]
    assert seen.context_mask.tolist() == [False, False, False]  # optional, absent: all False
    assert seen.instruction_mask.dtype == bool


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"arrays": {"attribution": np.ones(3)}}, "'attribution' has 1 dimensions"),
        ({"arrays": {"prompt_mask": np.ones(4)}}, "'prompt_mask' has 4 entries for 3 tokens"),
        ({"meta": {"tokens": ["a"]}}, "lists 1 tokens for 3 rows"),
        ({"arrays": {"attribution": np.array([["a", "b"]] * 3)}}, "dtype <U1"),
    ],
)
def test_a_malformed_record_is_refused_with_its_name(change, words):
    with pytest.raises(RecordError, match="'p7' of explainer 'probe'") as error:
        view(attribution(**change))
    assert words in error.value.what


def test_each_data_kind_checks_its_own_fields():
    ranked = Explanation("heads", "ranked_words",
                         {"pairs": np.array([[0, 0, 0, 5]]), "pair_similarity": np.ones(1)},
                         {"key": "layer.0", "words": ["a", "b"], "units": ["h0"]})  # fmt: skip
    with pytest.raises(RecordError, match="outside its word list"):
        RankedWords.of(ranked)
    subspace = Explanation("ffn", "subspace",
                           {"directions": np.eye(3), "explained_variance": np.ones(2)},
                           {"key": "layer.1", "layer": 1})  # fmt: skip
    with pytest.raises(RecordError, match="2 variances for 3 directions"):
        Subspace.of(subspace)
    scalars = Explanation("lens", "unit_scalars", {"values": np.ones(2)}, {"units": ["a"]})
    with pytest.raises(RecordError, match="names 1 units for 2 values"):
        UnitScalars.of(scalars)
    with pytest.raises(RecordError, match="no view"):
        view(Explanation("x", "graph", {}, {}))
    with pytest.raises(RecordError, match="is not a subspace record"):
        Subspace.of(scalars)


def test_pair_sets_are_order_free_and_lower_cased():
    record = Explanation("heads", "ranked_words",
                         {"pairs": np.array([[0, 3, 0, 1], [0, 4, 1, 0], [1, 0, 2, 1]]),
                          "pair_similarity": np.ones(3)},
                         {"words": ["Cat", "dog", "fish"], "units": ["h0", "h1"]})  # fmt: skip
    assert RankedWords.of(record).pair_sets() == [{("cat", "dog")}, {("dog", "fish")}]
