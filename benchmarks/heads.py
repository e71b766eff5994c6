"""Head-pattern explainer vs a direct per-dimension implementation of the same method.

Model: random llama, 4 layers, hidden 256, 8 heads (d_head 32), 8,192-token vocabulary
used as an 8k-word list, K = 100, the model's own embeddings as similarity backend.

The slow reference does what a direct reading of the method does: per word, its threshold
from a matrix-vector product; per head and dimension, topk of |Q| and |K|, then a Python
loop over the K x K candidate pairs. It is timed on a subset of heads and dimensions and
scaled linearly to the whole model (every dimension costs the same); the output says so.
Its pairs are checked against the explainer's on that subset.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from interpret_shift.core.subject import Subject  # noqa: E402
from interpret_shift.lexicon.words import WordList  # noqa: E402
from interpret_shift.methods.heads.explainer import HeadPatterns  # noqa: E402

LAYERS, HIDDEN, HEADS, VOCAB, TOP_K, BASELINE = 4, 256, 8, 8192, 100, 3000
SUBSET_HEADS, SUBSET_DIMS = 2, 4  # slow reference: heads x dims of layer 0
REPEATS = 3


def build() -> tuple[Subject, WordList]:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=512,
                         num_hidden_layers=LAYERS, num_attention_heads=HEADS,
                         num_key_value_heads=HEADS)  # fmt: skip
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.input_layernorm.weight.add_(torch.randn(HIDDEN) * 0.3)
    words = WordList([f"w{i}" for i in range(VOCAB)], token_ids=[[i] for i in range(VOCAB)])
    return Subject.from_model(model, source="bench-llama"), words


def fast(subject: Subject, words: WordList) -> dict:
    explainer = HeadPatterns(word_list=words, top_k=TOP_K, baseline=BASELINE)
    keys = explainer.items(subject, [])
    return dict(explainer.explain(subject, keys, []))


def slow_thresholds(unit: torch.Tensor) -> list[float]:
    base = unit[:BASELINE]
    out = []
    for i in range(unit.shape[0]):  # one word at a time
        sims = base @ unit[i]
        out.append(float(sims.mean() + 1.96 * sims.std(correction=0)))
    return out


def slow_head(subject, layer: int, h: int):
    """Per head: queries, keys and the dimensions by energy."""
    E = subject.weights.embed()
    Q, K = E @ subject.weights.W_q(layer)[h], E @ subject.weights.W_k(layer)[h]
    energy = (Q**2).sum(0) + (K**2).sum(0)
    return Q, K, sorted(range(Q.shape[1]), key=lambda r: -float(energy[r]))


def slow_dim(Q, K, r: int, unit, thresholds) -> set[tuple[int, int]]:
    """Per dimension: top words, then one candidate pair at a time."""
    top_q = torch.topk(Q[:, r].abs(), TOP_K).indices.tolist()
    top_k = torch.topk(K[:, r].abs(), TOP_K).indices.tolist()
    q_col, k_col = Q[:, r].tolist(), K[:, r].tolist()
    pairs = []
    for a in top_q:
        for b in top_k:
            if a == b or q_col[a] * k_col[b] <= 0:
                continue
            sim = float(unit[a] @ unit[b])
            if sim > thresholds[a] and sim > thresholds[b]:
                pairs.append((sim, a, b))
    return {(a, b) for _, a, b in sorted(pairs, reverse=True)}


def median_time(run, repeats: int = REPEATS) -> tuple[float, object]:
    run()  # warm-up
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    torch.set_num_threads(2)
    subject, words = build()
    d_head = HIDDEN // HEADS
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    fast(subject, words)  # warm-up
    times = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        records = fast(subject, words)
        times.append(time.perf_counter() - start)
    t_fast = statistics.median(times)
    rss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    unit = torch.nn.functional.normalize(subject.weights.embed(), dim=1)
    start = time.perf_counter()
    thr = slow_thresholds(unit)
    t_thr = time.perf_counter() - start
    t_head, heads = median_time(lambda: [slow_head(subject, 0, h) for h in range(SUBSET_HEADS)])
    t_dims, found = median_time(lambda: {
        (h, r): slow_dim(Q, K, r, unit, thr)
        for h, (Q, K, order) in enumerate(heads) for r in order[:SUBSET_DIMS]
    })  # fmt: skip
    total_heads, total_dims = LAYERS * HEADS, LAYERS * HEADS * d_head
    t_slow = (t_thr + t_head * total_heads / SUBSET_HEADS
              + t_dims * total_dims / (SUBSET_HEADS * SUBSET_DIMS))  # fmt: skip

    pairs = records["layer.0"].arrays["pairs"]
    for (h, r), expected in found.items():
        at = (pairs[:, 0] == h) & (pairs[:, 1] == r)
        got = {(int(a), int(b)) for a, b in pairs[at, 2:]}
        assert got == expected, f"head {h} dim {r}: explainer and reference disagree"

    n_pairs = sum(len(rec.arrays["pairs"]) for rec in records.values())
    print(f"model: llama {LAYERS} layers, hidden {HIDDEN}, {HEADS} heads x {d_head} dims; "
          f"{VOCAB} words, K={TOP_K}, baseline {BASELINE}; torch threads 2")  # fmt: skip
    print(f"explainer, all {LAYERS} layers: median {t_fast:.3f} s over {REPEATS} "
          f"({', '.join(f'{t:.3f}' for t in times)}), {n_pairs} pairs")  # fmt: skip
    print(f"peak RSS: {rss_before:.0f} MB before, {rss_peak:.0f} MB after the explainer "
          f"(+{rss_peak - rss_before:.0f} MB)")  # fmt: skip
    print(f"slow reference: thresholds one word at a time {t_thr:.2f} s (measured in full); "
          f"Q/K of {SUBSET_HEADS} heads {t_head:.3f} s -> x{total_heads // SUBSET_HEADS}; "
          f"{SUBSET_HEADS} heads x {SUBSET_DIMS} dims {t_dims:.3f} s -> x"
          f"{total_dims // (SUBSET_HEADS * SUBSET_DIMS)} (scaled linearly); "
          f"{t_slow:.1f} s estimated in total")  # fmt: skip
    print(f"pairs of the {len(found)} reference dimensions equal the explainer's")
    print(f"heads_speedup_vs_loop: {t_slow / t_fast:.1f}")


if __name__ == "__main__":
    main()
