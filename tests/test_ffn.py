"""FFN concept explainer and rotation analysis, checked against independent computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats
from tiny import tiny_model

from interpret_shift.core.explainer import run_explainer
from interpret_shift.core.linalg import subspace_overlap
from interpret_shift.core.records import Explanation, RecordStore
from interpret_shift.core.subject import Subject
from interpret_shift.diff.generic import rotation_of as rotation
from interpret_shift.diff.generic import rotation_summary, rotations
from interpret_shift.errors import InterpretShiftError
from interpret_shift.lexicon.words import WordList
from interpret_shift.methods.ffn.analysis import (
    Labelled,
    compare_proportions,
    label_records,
    proportions,
)
from interpret_shift.methods.ffn.annotators import CANNOT_TELL, LEVELS, TASKS, Annotation
from interpret_shift.methods.ffn.annotators.lexical import LexicalAnnotator
from interpret_shift.methods.ffn.explainer import (
    FFNConcepts,
    all_tokens,
    choose_method,
    principal_components,
)

#: family -> that family's down-projection as (d_ff, d_model), read straight from the modules
DOWN = {
    "llama": lambda m, i: m.model.layers[i].mlp.down_proj.weight.T,
    "gpt2": lambda m, i: m.transformer.h[i].mlp.c_proj.weight,  # Conv1D stores (in, out)
    "gpt_neox": lambda m, i: m.gpt_neox.layers[i].mlp.dense_4h_to_h.weight.T,
    "opt": lambda m, i: m.model.decoder.layers[i].fc2.weight.T,
    "phi": lambda m, i: m.model.layers[i].mlp.fc2.weight.T,
}
R, K = 6, 5


def reference(down: torch.Tensor, unembed: torch.Tensor, k: int = K):
    """Eigenvectors of the rows' covariance in float64, and each one's top-k words by |cos|."""
    x = down.double().numpy()
    x = x - x.mean(axis=0)
    cov = x.T @ x / (x.shape[0] - 1)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    values, vectors = values[order], vectors[:, order].T
    words = unembed.double().numpy()
    norms = np.linalg.norm(words, axis=1, keepdims=True)
    words = words / np.where(norms > 0, norms, 1.0)  # OPT's padding row is all zeros
    scores = vectors @ words.T
    top = np.argsort(-np.abs(scores), axis=1)[:, :k]
    return values / values.sum(), vectors, top, np.take_along_axis(scores, top, axis=1)


def explain(model, **options):
    subject = Subject.from_model(model, source="tiny")
    return run_explainer(FFNConcepts(**options), subject)


@pytest.mark.parametrize("family", sorted(DOWN))
def test_components_and_words_match_the_covariance_eigenvectors(family):
    model = tiny_model(family)
    records = explain(model, components=R, top_k=K, svd="exact")
    assert list(records) == ["layer.0", "layer.1"]
    unembed = model.get_output_embeddings().weight
    for layer, record in enumerate(records.values()):
        shares, vectors, top, scores = reference(DOWN[family](model, layer), unembed)
        got = record.arrays["directions"].astype(np.float64)
        assert got.shape == (R, 32)
        signs = np.sign(np.sum(got * vectors[:R], axis=1))
        np.testing.assert_allclose(got, signs[:, None] * vectors[:R], atol=2e-4)
        np.testing.assert_allclose(record.arrays["explained_variance"], shares[:32], atol=1e-5)
        np.testing.assert_array_equal(record.arrays["top_indices"], top[:R])
        np.testing.assert_allclose(record.arrays["top_scores"], signs[:, None] * scores[:R],
                                   atol=2e-4)  # fmt: skip
        assert record.meta["method"] == "exact"
        assert record.meta["top_words"][0] == [f"#{i}" for i in top[0]]
        assert record.explainer == "ffn" and record.data_kind == "subspace"


def test_sign_convention_makes_each_largest_coordinate_positive():
    record = explain(tiny_model("llama"), components=R, top_k=K)["layer.1"]
    directions = record.arrays["directions"]
    largest = directions[np.arange(R), np.abs(directions).argmax(axis=1)]
    assert np.all(largest > 0)


def test_explained_variance_shares_of_the_randomized_method_are_exact():
    rng = np.random.default_rng(0)
    rows = torch.from_numpy(rng.standard_normal((300, 64)) * 0.9 ** np.arange(64)).float()
    exact = principal_components(rows, 8, method="exact")
    randomized = principal_components(rows, 8, method="randomized")
    assert randomized.method == "randomized" and randomized.shares.shape == (8,)
    assert subspace_overlap(exact.directions[:8].numpy(), randomized.directions.numpy()) > 0.99
    x = rows.double().numpy() - rows.double().numpy().mean(axis=0)
    assert randomized.total_variance == pytest.approx(np.square(x).sum() / 299, rel=1e-9)
    np.testing.assert_allclose(randomized.shares, exact.shares[:8], rtol=1e-3)
    assert float(exact.shares.sum()) == pytest.approx(1.0, abs=1e-5)


def test_auto_picks_randomized_only_for_few_components():
    assert choose_method("auto", 50, 4096) == "randomized"
    assert choose_method("auto", 50, 128) == "exact"
    assert choose_method("exact", 5, 4096) == "exact"
    with pytest.raises(InterpretShiftError, match="Unknown SVD method"):
        FFNConcepts(svd="lanczos")


def test_components_are_capped_by_the_width():
    record = explain(tiny_model("llama"), components=500, top_k=3)["layer.0"]
    assert record.arrays["directions"].shape == (32, 32)
    assert record.arrays["top_indices"].shape == (32, 3)


def test_all_tokens_decodes_every_token_on_its_own():
    class Tokenizer:
        def __len__(self):
            return 4

        def batch_decode(self, ids):
            return ["".join("abcd"[i] for i in row) for row in ids]

    words = all_tokens(Tokenizer(), 6)  # the unembedding may be padded past the tokenizer
    assert words.words == ["a", "b", "c", "d"] and words.token_ids == [[0], [1], [2], [3]]
    assert all_tokens(None, 3).words == ["#0", "#1", "#2"]


def test_unknown_layer_is_a_clear_error():
    subject = Subject.from_model(tiny_model("llama"), source="tiny")
    with pytest.raises(InterpretShiftError, match="layer 7, which does not exist"):
        FFNConcepts(layers=[0, 7]).items(subject, [])


def test_a_word_list_uses_the_mean_output_embedding_of_each_word():
    model = tiny_model("llama")
    words = WordList(["alpha", "beta", "gamma", "delta"], token_ids=[[5], [6, 7], [8], [9, 10]])
    explainer = FFNConcepts(word_list=words, components=3, top_k=2, svd="exact")
    record = run_explainer(explainer, Subject.from_model(model, source="tiny"))["layer.0"]
    unembed = model.get_output_embeddings().weight
    table = torch.stack([unembed[ids].mean(0) for ids in words.token_ids])
    _, _, top, _ = reference(DOWN["llama"](model, 0), table, k=2)
    np.testing.assert_array_equal(record.arrays["top_indices"], top[:3])
    assert record.meta["top_words"][0] == [words.words[i] for i in top[0]]
    assert record.meta["word_list"]["size"] == 4


def test_streamed_and_in_memory_records_are_identical(tmp_path):
    model = tiny_model("gpt_neox")
    model.save_pretrained(tmp_path / "ckpt")
    subject = Subject.from_model(model, source="tiny")
    options = dict(components=4, top_k=3, svd="randomized", power_iters=2)
    memory = run_explainer(FFNConcepts(**options), subject)
    streaming = Subject.from_model(model, source="tiny", weights_from=tmp_path / "ckpt")
    streamed = run_explainer(FFNConcepts(**options), streaming)
    assert list(memory) == list(streamed)
    for key in memory:
        for name, array in memory[key].arrays.items():
            np.testing.assert_array_equal(streamed[key].arrays[name], array, err_msg=name)
        assert streamed[key].meta["top_words"] == memory[key].meta["top_words"]


def test_records_round_trip_through_a_store(tmp_path):
    subject = Subject.from_model(tiny_model("phi"), source="tiny")
    store = RecordStore(tmp_path)
    written = run_explainer(FFNConcepts(components=3, top_k=2, layers=[1]), subject, store=store)
    loaded = store.load("layer.1")
    assert store.keys() == ["layer.1"]
    for name, array in written["layer.1"].arrays.items():
        np.testing.assert_array_equal(loaded.arrays[name], array)
    assert loaded.meta["top_words"] == written["layer.1"].meta["top_words"]


# -- rotation -------------------------------------------------------------------------------


def test_a_model_compared_with_itself_has_not_rotated():
    records = explain(tiny_model("llama"), components=R, top_k=2)
    found = rotations(records, records)
    assert [r.layer for r in found] == [0, 1]
    for layer in found:
        assert np.max(layer.angles) < 1e-6
        assert layer.overlap == pytest.approx(1.0, abs=1e-9)
        np.testing.assert_array_equal(layer.matched, np.stack([np.arange(R)] * 2, axis=1))
        np.testing.assert_allclose(layer.cosine, 1.0, atol=1e-6)
    assert rotation_summary(found)["mean_angle_deg"] < 1e-4


def test_rotating_the_down_projection_by_a_known_angle_is_recovered():
    theta, layer = 0.3, 1
    base = tiny_model("llama")
    before = explain(base, components=R, top_k=2, svd="exact")[f"layer.{layer}"]
    p1 = before.arrays["directions"][0].astype(np.float64)
    top = before.arrays["directions"].astype(np.float64)
    u = np.random.default_rng(0).standard_normal(32)
    u -= top.T @ np.linalg.lstsq(top.T, u, rcond=None)[0]  # orthogonal to the top-R subspace
    u /= np.linalg.norm(u)
    # rotation by theta in the plane (p1, u): p1 -> cos p1 + sin u, u -> -sin p1 + cos u
    turn = (np.eye(32) + (np.cos(theta) - 1) * (np.outer(p1, p1) + np.outer(u, u))
            + np.sin(theta) * (np.outer(u, p1) - np.outer(p1, u)))  # fmt: skip
    tuned = tiny_model("llama")
    weight = tuned.model.layers[layer].mlp.down_proj.weight  # (d, d_ff): rows W' = W R^T
    with torch.no_grad():
        weight.copy_(torch.from_numpy(turn @ weight.double().numpy()).float())
    after = explain(tuned, components=R, top_k=2, svd="exact")[f"layer.{layer}"]
    found = rotation(before, after)
    assert found.angles.max() == pytest.approx(theta, abs=1e-4)
    assert np.all(found.angles[:-1] < 1e-4)
    assert found.overlap == pytest.approx((R - 1 + np.cos(theta) ** 2) / R, abs=1e-4)
    assert found.matched[0].tolist() == [0, 0]
    assert found.cosine[0] == pytest.approx(np.cos(theta), abs=1e-4)
    assert found.max_angle_deg == pytest.approx(np.degrees(theta), abs=1e-2)


# -- concept proportions --------------------------------------------------------------------


def make_labels() -> list[Labelled]:
    """Two models, 4 layers, 3 components, 3 seeds; tasks and levels follow a fixed pattern."""
    tasks = [("coding",), ("daily writing",), ("solving math problems", "coding"),
             ("literary writing",), ("none",), ("translation",)]  # fmt: skip
    labels = []
    for m, model in enumerate(("base", "tuned")):
        for layer in range(4):
            for component in range(3):
                for seed in (0, 1, 2):
                    k = (m * 5 + layer * 3 + component * 2 + seed * (1 + m)) % 7
                    if k == 6:
                        annotation = Annotation(CANNOT_TELL, (CANNOT_TELL,), CANNOT_TELL, seed)
                    else:
                        annotation = Annotation(f"c{k}", tasks[k], LEVELS[k % 4], seed)
                    labels.append(Labelled(model, layer, component, annotation))
    return labels


def slow_share(labels, model, layers, seed, category, axis):
    mine = [x for x in labels if x.model == model and x.layer in layers
            and x.annotation.seed == seed and x.annotation.concept != CANNOT_TELL]  # fmt: skip
    values = [x.annotation.tasks if axis == "task" else (x.annotation.level,) for x in mine]
    return sum(any(category in v for v in vs) for vs in values) / len(mine)


@pytest.mark.parametrize("axis", ["task", "level"])
def test_proportions_equal_a_plain_count(axis):
    labels = make_labels()
    categories = ("coding", "writing", "math", "none") if axis == "task" else LEVELS
    table = proportions(labels, axis, categories, group_size=2)
    assert table.groups == ("all layers", "layers 0-1", "layers 2-3")
    assert table.seeds == (0, 1, 2)
    layer_sets = [range(4), range(0, 2), range(2, 4)]
    for model in ("base", "tuned"):
        assert table.shares[model].shape == (3, 3, len(categories))
        for g, layers in enumerate(layer_sets):
            for s in range(3):
                for c, category in enumerate(categories):
                    expected = slow_share(labels, model, layers, s, category, axis)
                    assert table.shares[model][g, s, c] == pytest.approx(expected)
                total = sum(x.model == model and x.layer in layers and x.annotation.seed == s
                            for x in labels)  # fmt: skip
                good = sum(x.model == model and x.layer in layers and x.annotation.seed == s
                           and x.annotation.explainable for x in labels)  # fmt: skip
                assert table.counts[model][g, s] == good
                assert table.explainable[model][g, s] == pytest.approx(good / total)


def test_default_groups_are_a_quarter_of_the_depth():
    labels = [Labelled("m", layer, 0, Annotation("x", ("coding",), "syntax")) for layer in
              range(8)]  # fmt: skip
    table = proportions(labels)
    assert table.groups == ("all layers", "layers 0-1", "layers 2-3", "layers 4-5", "layers 6-7")
    assert table.categories == (*TASKS, CANNOT_TELL)
    np.testing.assert_allclose(table.shares["m"][:, 0, TASKS.index("coding")], 1.0)


def test_compare_proportions_is_a_t_test_over_seeds():
    labels = make_labels()
    table = proportions(labels, "task", ("coding", "writing"), group_size=4)
    results = {(r.group, r.category): r for r in compare_proportions(table, "base", "tuned")}
    assert len(results) == 2 * 2
    for category in ("coding", "writing"):
        base = [slow_share(labels, "base", range(4), s, category, "task") for s in range(3)]
        tuned = [slow_share(labels, "tuned", range(4), s, category, "task") for s in range(3)]
        found = results[("all layers", category)]
        assert (found.n_base, found.n_tuned) == (3, 3)
        assert found.mean_base == pytest.approx(np.mean(base))
        assert found.std_tuned == pytest.approx(np.std(tuned))
        expected = stats.ttest_ind(base, tuned)
        if np.isnan(expected.pvalue):
            assert np.isnan(found.p)
        else:
            assert found.t == pytest.approx(expected.statistic)
            assert found.p == pytest.approx(expected.pvalue)


def test_one_seed_gives_no_p_value():
    labels = [x for x in make_labels() if x.annotation.seed == 0]
    (result, *_) = compare_proportions(proportions(labels, "level"), "base", "tuned")
    assert result.n_base == 1 and np.isnan(result.p)


def test_label_records_annotates_every_component_and_seed():
    records = [
        Explanation("ffn", "subspace", {}, {"layer": 3, "top_words": [["1", "2"], ["the", "of"]]}),
        Explanation("ffn", "subspace", {}, {"layer": 4, "top_words": [["{", "};"]]}),
    ]
    labels = label_records(records, LexicalAnnotator(), "base", seeds=(0, 9))
    assert [(x.layer, x.component, x.annotation.seed) for x in labels] == [
        (3, 0, 0), (3, 0, 9), (3, 1, 0), (3, 1, 9), (4, 0, 0), (4, 0, 9)]  # fmt: skip
    assert [x.annotation.task for x in labels[::2]] == ["solving math problems", "none", "coding"]
    assert all(x.model == "base" for x in labels)
