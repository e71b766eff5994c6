"""Saliency explainer core vs one backward per response token, on the same model and data.

Model: random llama, 4 layers, hidden 256, 4 heads, 8,192-token vocabulary, float32, two
threads. Data: 8 prompts of 64 random token ids, each with a given 32-token response.

Methods, all exact, all with frozen parameters, timed round-robin in one process:
- explainer: ``gradient_x_input`` with the explainer's default options (one forward per
  chunk of response positions, one vmapped backward over the chunk's targets);
- per-token backward (the paper's method, the reference the speedup is quoted against): per
  response token a forward over the whole text and a ``.backward()`` of that token's
  probability, parameters left trainable as in the paper's code (so the backward also fills
  parameter gradients; DESIGN.md §5 measured it at ~5 response tokens/s here);
- per-token, frozen: the same with frozen parameters (the fairest one-backward-per-token
  loop; the explainer's correctness reference);
- retained graph: one forward per prompt, then one retained-graph backward per response
  token;
- replicated: one copy of the text per target, cut after its target, all copies of a
  chunk in one forward and one backward (the alternative discussed in docs/saliency.md);
- inseq ``input_x_gradient``: tried, skipped with a message (not installed here).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from interpret_shift.explainers.saliency import SaliencyExplainer, gradient_x_input  # noqa: E402

PROMPTS, PROMPT_TOKENS, RESPONSE_TOKENS, VOCAB = 8, 64, 32, 8192
REPEATS, REPLICA_CHUNK = 3, 64
Pairs = list[tuple[torch.Tensor, torch.Tensor]]


def build() -> tuple[torch.nn.Module, Pairs]:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=256, intermediate_size=688,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=256)  # fmt: skip
    model = LlamaForCausalLM(config).eval().requires_grad_(False)
    ids = torch.randint(3, VOCAB, (PROMPTS, PROMPT_TOKENS + RESPONSE_TOKENS))
    return model, [(row[:PROMPT_TOKENS], row[PROMPT_TOKENS:]) for row in ids]


def explainer(model, pairs: Pairs) -> list[np.ndarray]:
    config = SaliencyExplainer.Config()
    size = config.batch_size
    return [
        s
        for i in range(0, len(pairs), size)
        for s, _ in gradient_x_input(model, pairs[i : i + size], "prob", config.target_chunk)
    ]


def per_token_backward(model, pairs: Pairs) -> list[np.ndarray]:
    """The paper's method: parameters trainable, so each backward fills their gradients too."""
    model.requires_grad_(True)
    try:
        return per_token_frozen(model, pairs)
    finally:
        model.zero_grad(set_to_none=True)
        model.requires_grad_(False)


def per_token_frozen(model, pairs: Pairs) -> list[np.ndarray]:
    embed, out = model.get_input_embeddings(), []
    for prompt, response in pairs:
        ids, n = torch.cat([prompt, response])[None], len(prompt)
        columns = []
        for j, token in enumerate(response.tolist()):
            E = embed(ids)
            if E.is_leaf:  # frozen parameters: the embeddings are the graph's input
                E.requires_grad_(True)
            E.retain_grad()
            prob = model(inputs_embeds=E).logits[0, n + j - 1].softmax(-1)[token]
            prob.backward()
            model.zero_grad(set_to_none=True)
            columns.append((E.grad[0, :n] * E[0, :n]).sum(-1).detach().clone())
        out.append(torch.stack(columns, 1).numpy())
    return out


def retained_graph(model, pairs: Pairs) -> list[np.ndarray]:
    embed, out = model.get_input_embeddings(), []
    for prompt, response in pairs:
        ids, n = torch.cat([prompt, response])[None], len(prompt)
        E = embed(ids).requires_grad_(True)
        probs = model(inputs_embeds=E).logits.softmax(-1)
        targets = probs[0, torch.arange(n - 1, n + len(response) - 1), response]
        columns = []
        for j in range(len(response)):
            E.grad = None
            targets[j].backward(retain_graph=True)
            columns.append((E.grad[0, :n] * E[0, :n]).sum(-1).detach().clone())
        out.append(torch.stack(columns, 1).numpy())
    return out


def replicated(model, pairs: Pairs) -> list[np.ndarray]:
    embed = model.get_input_embeddings()
    copies = [(p, j) for j in range(RESPONSE_TOKENS) for p in range(len(pairs))]  # by length
    out = [np.zeros((PROMPT_TOKENS, RESPONSE_TOKENS), np.float32) for _ in pairs]
    for start in range(0, len(copies), REPLICA_CHUNK):
        chunk = copies[start : start + REPLICA_CHUNK]
        texts = [torch.cat(pairs[p])[: PROMPT_TOKENS + j] for p, j in chunk]
        ids = torch.nn.utils.rnn.pad_sequence(texts, batch_first=True)
        where = torch.tensor([[PROMPT_TOKENS + j - 1] for _, j in chunk])
        tokens = torch.stack([pairs[p][1][j] for p, j in chunk])
        E = embed(ids).requires_grad_(True)
        logits = model(inputs_embeds=E, logits_to_keep=where).logits[:, 0]
        prob = logits.softmax(-1).gather(1, tokens[:, None]).sum()
        (grad,) = torch.autograd.grad(prob, E)
        s = (grad[:, :PROMPT_TOKENS] * E[:, :PROMPT_TOKENS]).sum(-1).detach()
        for row, (p, j) in enumerate(chunk):
            out[p][:, j] = s[row].numpy()
    return out


def inseq_note() -> str:
    try:
        import inseq  # noqa: F401
    except ImportError:
        return "inseq: not installed, skipped"
    return "inseq: installed, but it needs a tokenizer and this setup has none; skipped"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    torch.set_num_threads(2)
    model, pairs = build()
    methods = {
        "explainer": explainer,
        "per-token backward": per_token_backward,
        "per-token, frozen": per_token_frozen,
        "retained graph": retained_graph,
        "replicated": replicated,
    }
    print(inseq_note())
    rss_before = peak_rss_mb()
    for method in methods.values():  # warm up on one prompt; the explainer first, for its RSS
        method(model, pairs[:1])
        if method is explainer:
            rss_explainer = peak_rss_mb()
    times: dict[str, list[float]] = {name: [] for name in methods}
    results: dict[str, list[np.ndarray]] = {}
    for _ in range(REPEATS):  # round-robin, so that load changes hit every method alike
        for name, method in methods.items():
            start = time.perf_counter()
            results[name] = method(model, pairs)
            times[name].append(time.perf_counter() - start)

    reference = np.stack(results["per-token, frozen"])
    scale = np.abs(reference).max()
    tokens = PROMPTS * RESPONSE_TOKENS
    config = SaliencyExplainer.Config()
    print(f"model: llama 4 layers, hidden 256, 4 heads, vocab {VOCAB}, float32, 2 threads; "
          f"{PROMPTS} prompts x {PROMPT_TOKENS} tokens, {RESPONSE_TOKENS} given response "
          f"tokens; explainer batch_size={config.batch_size}, "
          f"target_chunk={config.target_chunk}")  # fmt: skip
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        error = np.abs(np.stack(results[name]) - reference).max() / scale
        print(f"{name:>18}: median {medians[name]:6.2f} s ({', '.join(f'{t:.2f}' for t in values)}"
              f"), {tokens / medians[name]:6.1f} response tokens/s, "
              f"max |diff| vs frozen {error:.1e} of max |s|")  # fmt: skip
    print(f"peak RSS: {rss_before:.0f} MB before, {rss_explainer:.0f} MB after the explainer "
          f"(+{rss_explainer - rss_before:.0f} MB)")  # fmt: skip
    for name in ("per-token, frozen", "retained graph", "replicated"):
        print(f"explainer vs {name}: {medians[name] / medians['explainer']:.1f}x")
    speedup = medians["per-token backward"] / medians["explainer"]
    print(f"saliency_speedup_vs_per_token_backward: {speedup:.1f}")


if __name__ == "__main__":
    main()
