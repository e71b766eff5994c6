"""The head-pattern explainer equals a slow, obvious per-word / per-dimension computation."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from tiny import tiny_model

from interpret_shift.core.explainer import run_explainer
from interpret_shift.core.records import RecordStore
from interpret_shift.core.subject import Subject
from interpret_shift.errors import InterpretShiftError
from interpret_shift.lexicon.words import WordList
from interpret_shift.methods.heads.explainer import HeadPatterns

FAMILIES = ["llama", "gpt2", "gpt_neox", "phi3", "gemma2"]
TOP_K, BASELINE = 24, 40


def synthetic_words(case_pair: bool = False) -> WordList:
    """Single-token words, two multi-token words and maybe a case pair sharing one row."""
    words = [f"w{i}" for i in range(5, 96)] + ["multi", "triple"]
    ids = [[i] for i in range(5, 96)] + [[3, 4], [10, 11, 12]]
    if case_pair:  # identical rows tie in every ranking: kept out of the exact comparisons
        words, ids = words + ["Dup", "dup"], ids + [[21], [21]]
    return WordList(words, token_ids=ids, name="synthetic")


# -- the slow reference, from the raw model weights ------------------------------------------


def raw_query_key(model, family: str, layer: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W_q rows, W_k rows, input-norm scale) read directly from the model's parameters."""
    config = model.config
    d, heads = config.hidden_size, config.num_attention_heads
    d_head = getattr(config, "head_dim", None) or d // heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    if family in ("llama", "gemma2"):
        block = model.model.layers[layer]
        q, k = block.self_attn.q_proj.weight, block.self_attn.k_proj.weight
        scale = block.input_layernorm.weight + (1.0 if family == "gemma2" else 0.0)
    elif family == "phi3":
        block = model.model.layers[layer]
        fused = block.self_attn.qkv_proj.weight  # rows: all q, then all k, then all v
        q, k = fused[: heads * d_head], fused[heads * d_head : (heads + kv) * d_head]
        scale = block.input_layernorm.weight
    elif family == "gpt2":
        block = model.transformer.h[layer]
        fused = block.attn.c_attn.weight  # Conv1D: (d_in, 3 d_out)
        q, k = fused[:, :d].T, fused[:, d : 2 * d].T
        scale = block.ln_1.weight
    elif family == "gpt_neox":
        block = model.gpt_neox.layers[layer]
        fused = block.attention.query_key_value.weight.reshape(heads, 3, d_head, d)
        q, k = fused[:, 0].reshape(heads * d_head, d), fused[:, 1].reshape(heads * d_head, d)
        scale = block.input_layernorm.weight
    else:
        raise ValueError(family)
    as_np = lambda t: t.detach().double().numpy()  # noqa: E731
    return as_np(q), as_np(k), as_np(scale)


def slow_layer(model, family, layer, words: WordList, top_k=TOP_K, baseline=BASELINE):
    """Everything with Python loops over heads, dimensions, words and pairs."""
    config = model.config
    heads = config.num_attention_heads
    d_head = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    table = model.get_input_embeddings().weight.detach().double().numpy()
    E = [np.mean([table[i] for i in ids], axis=0) for ids in words.token_ids]
    n = len(E)
    unit = [e / math.sqrt(sum(x * x for x in e)) for e in E]
    cos = lambda a, b: float(unit[a] @ unit[b])  # noqa: E731
    threshold = []
    for i in range(n):
        sims = [cos(i, j) for j in range(baseline)]
        mean = sum(sims) / len(sims)
        std = math.sqrt(sum((s - mean) ** 2 for s in sims) / len(sims))
        threshold.append(mean + 1.96 * std)
    q_rows, k_rows, scale = raw_query_key(model, family, layer)
    result = {}
    for h in range(heads):
        kv_head = h // (heads // kv)
        Q = [[sum(E[i][j] * scale[j] * q_rows[h * d_head + r][j] for j in range(len(scale)))
              for r in range(d_head)] for i in range(n)]  # fmt: skip
        K = [[float(E[i] * scale @ k_rows[kv_head * d_head + r]) for r in range(d_head)]
             for i in range(n)]  # fmt: skip
        energy = [sum(Q[i][r] ** 2 + K[i][r] ** 2 for i in range(n)) for r in range(d_head)]
        order = sorted(range(d_head), key=lambda r: -energy[r])
        dims = []
        for r in order:
            top_q = sorted(range(n), key=lambda i: -abs(Q[i][r]))[:top_k]
            top_k_ = sorted(range(n), key=lambda i: -abs(K[i][r]))[:top_k]
            pairs = []
            for a in top_q:
                for b in top_k_:
                    s = cos(a, b)
                    if (Q[a][r] * K[b][r] > 0 and s > threshold[a] and s > threshold[b]
                            and words.words[a].lower() != words.words[b].lower()):  # fmt: skip
                        pairs.append((a, b, s))
            dims.append((r, energy[r], top_q, top_k_, pairs))
        result[h] = dims
    return result


def check_against_slow(record, slow):
    pairs = record.arrays["pairs"]
    sims = record.arrays["pair_similarity"]
    for h, dims in slow.items():
        assert record.arrays["dim_order"][h].tolist() == [r for r, *_ in dims]
        np.testing.assert_allclose(record.arrays["energy"][h], [e for _, e, *_ in dims],
                                   rtol=1e-4)  # fmt: skip
        mine = pairs[:, 0] == h
        for rank, (r, _, top_q, top_k_, expected) in enumerate(dims):
            assert record.arrays["top_q"][h, rank].tolist() == top_q
            assert record.arrays["top_k"][h, rank].tolist() == top_k_
            at = mine & (pairs[:, 1] == r)
            got = {(int(a), int(b)): float(s) for (_, _, a, b), s in zip(pairs[at], sims[at])}
            assert set(got) == {(a, b) for a, b, _ in expected}, (h, r)
            for a, b, s in expected:
                assert got[(a, b)] == pytest.approx(s, abs=1e-5)
            assert np.all(np.diff(sims[at]) <= 0), "pairs ranked by similarity"
        # dimensions appear in energy order
        seen = [int(r) for r in pairs[mine, 1]]
        ranks = [record.arrays["dim_order"][h].tolist().index(r) for r in seen]
        assert ranks == sorted(ranks)


@pytest.mark.parametrize("family", FAMILIES)
def test_explainer_equals_slow_reference(family):
    model = tiny_model(family)
    subject = Subject.from_model(model, source=family)
    words = synthetic_words()
    records = run_explainer(HeadPatterns(word_list=words, top_k=TOP_K, baseline=BASELINE),
                            subject)  # fmt: skip
    assert list(records) == ["layer.0", "layer.1"]
    for layer in (0, 1):
        record = records[f"layer.{layer}"]
        assert record.meta["words"] == words.words
        assert record.meta["units"] == [f"layers.{layer}.heads.{h}" for h in range(4)]
        assert len(record.arrays["pairs"]) > 0
        check_against_slow(record, slow_layer(model, family, layer, words))


def test_case_variants_are_never_paired():
    """'Dup' and 'dup' share an embedding row: same-sign, similarity 1, yet never a pair."""
    subject = Subject.from_model(tiny_model("llama"))
    words = synthetic_words(case_pair=True)
    explainer = HeadPatterns(word_list=words, top_k=len(words), baseline=BASELINE, layers=[0])
    record = run_explainer(explainer, subject)["layer.0"]
    a, b = words.words.index("Dup"), words.words.index("dup")
    assert not any({int(q), int(k)} == {a, b} for q, k in record.arrays["pairs"][:, 2:])
    # without the case filter they would have been paired: every word is in every top list,
    # their similarity is 1 and some dimension gives them the same sign
    space = explainer.word_space(subject)
    Q = space.embeddings @ subject.weights.W_q(0)[0]
    K = space.embeddings @ subject.weights.W_k(0)[0]
    assert float(space.vectors[a] @ space.vectors[b]) > float(space.thresholds[[a, b]].max())
    assert bool((Q[a] * K[b] > 0).any())


def test_records_resume_and_round_trip(tmp_path):
    subject = Subject.from_model(tiny_model("llama"), source="llama")
    store = RecordStore(tmp_path)
    explainer = HeadPatterns(word_list=synthetic_words(), top_k=10, baseline=BASELINE)
    first = run_explainer(explainer, subject, store=store)
    assert store.keys() == ["layer.0", "layer.1"]
    again = run_explainer(explainer, subject, store=store)  # resumed: read from disk
    for key in first:
        for name, array in first[key].arrays.items():
            np.testing.assert_array_equal(again[key].arrays[name], array)
        assert again[key].meta["words"] == first[key].meta["words"]


def test_streaming_from_a_checkpoint_equals_the_loaded_model(tmp_path):
    model = tiny_model("llama", seed=3)
    model.save_pretrained(tmp_path)
    subject = Subject.from_model(model)
    words = synthetic_words()
    loaded = run_explainer(HeadPatterns(word_list=words, top_k=12, baseline=BASELINE), subject)
    streaming = Subject.from_model(model, weights_from=tmp_path)
    streamed = run_explainer(HeadPatterns(word_list=words, top_k=12, baseline=BASELINE), streaming)
    for key in loaded:
        for name, array in loaded[key].arrays.items():
            np.testing.assert_allclose(streamed[key].arrays[name], array, rtol=1e-6)


def test_layer_choice_and_errors():
    subject = Subject.from_model(tiny_model("gpt2"))
    explainer = HeadPatterns(word_list=synthetic_words(), layers=[1])
    assert explainer.items(subject, []) == ["layer.1"]
    with pytest.raises(InterpretShiftError, match="layer 5, which does not exist"):
        HeadPatterns(word_list=synthetic_words(), layers=[5]).items(subject, [])
    with pytest.raises(InterpretShiftError, match="no option 'topk'"):
        HeadPatterns(topk=3)
    with pytest.raises(InterpretShiftError, match="Unknown similarity backend 'glove'"):
        run_explainer(HeadPatterns(word_list=synthetic_words(), similarity="glove"), subject)
    with pytest.raises(InterpretShiftError, match="no tokenizer"):
        run_explainer(HeadPatterns(words="instruction-verbs"), subject)


def test_smollm2_one_layer_with_its_own_embeddings(smollm2):
    """All 9 heads of one layer of SmolLM2-135M-Instruct, 2,500 vocabulary words, K = 100."""
    start = time.perf_counter()
    explainer = HeadPatterns(words="vocabulary", n_words=2500, layers=[6])
    record = run_explainer(explainer, smollm2)["layer.6"]
    elapsed = time.perf_counter() - start
    words = record.meta["words"]
    assert len(words) == 2500 and "the" in words and all(w.isalpha() for w in words)
    pairs, sims = record.arrays["pairs"], record.arrays["pair_similarity"]
    assert record.arrays["top_q"].shape == (9, 64, 100)
    assert set(np.unique(pairs[:, 0])) <= set(range(9)) and len(pairs) > 100
    # head 0's strongest dimension, recomputed directly with the model's own tensors
    model = smollm2.model
    block = model.model.layers[6]
    space = explainer.word_space(smollm2)
    E = space.embeddings.double()
    scale = block.input_layernorm.weight.double()
    r = int(record.arrays["dim_order"][0, 0])
    q = E @ (scale * block.self_attn.q_proj.weight[r].double())
    k = E @ (scale * block.self_attn.k_proj.weight[r].double())  # kv head 0 serves head 0
    unit = torch.nn.functional.normalize(E, dim=1)
    top_q, top_k = q.abs().argsort(descending=True)[:100], k.abs().argsort(descending=True)[:100]
    expected = {
        (int(a), int(b))
        for a in top_q for b in top_k
        if q[a] * k[b] > 0 and words[a].lower() != words[b].lower()
        and (sim := float(unit[a] @ unit[b])) > space.thresholds[a] + 1e-6
        and sim > space.thresholds[b] + 1e-6
    }  # fmt: skip
    at = (pairs[:, 0] == 0) & (pairs[:, 1] == r)
    got = {(int(a), int(b)) for a, b in pairs[at, 2:]}
    assert expected <= got and len(got - expected) <= 2  # (float32 ties at the threshold)
    assert np.all(sims[at][:-1] >= sims[at][1:])
    assert elapsed < 30, f"one SmolLM2 layer took {elapsed:.1f} s"
