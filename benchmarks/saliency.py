"""Saliency explainer vs the paper's one-backward-per-token method, on the same model and data.

Model: random llama, 4 layers, hidden 256, 4 heads, 8,192-token vocabulary, float32, two
threads. Data: 8 prompts of 64 random token ids, each with a given 32-token response.

Methods, all exact, timed round-robin in one process:
- explainer: ``gradient_x_input`` with the explainer's default options (one forward per
  chunk of response positions, one vmapped backward over the chunk's targets);
- the paper's method (the reference the speed-up is quoted against), as its code
  (``Generator.input_explain``) does it for a batch of prompts: one forward of the batch
  with the softmax at every position, then per response token all gradients zeroed and a
  retained-graph ``.backward()`` of that token's probability, parameters trainable (so
  each backward runs over the whole batch and fills parameter gradients too). Run on the
  8 prompts at once; DESIGN.md §5 measured it at about 5 response tokens/s;
- the same, one prompt per call (the batch size of the paper's run script);
- per-token, frozen: per response token a fresh forward of its prompt and a backward of
  its probability, parameters frozen (the obvious loop; the correctness reference);
- replicated: one copy of the text per target, cut after its target, all copies of a
  chunk in one forward and one backward (the alternative discussed in docs/saliency.md);
- inseq ``input_x_gradient`` (probability target) where inseq is installed (``make bench``
  installs it), through a word-level tokenizer that maps ``w<id>`` to token id ``<id>``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import logging  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from interpret_shift.methods.saliency.explainer import SaliencyExplainer, gradient_x_input  # noqa: E402

PROMPTS, PROMPT_TOKENS, RESPONSE_TOKENS, VOCAB = 8, 64, 32, 8192
REPEATS, REPLICA_CHUNK = 3, 64
PAPER = "paper's method"
Pairs = list[tuple[torch.Tensor, torch.Tensor]]
Method = Callable[[torch.nn.Module, Pairs], list[np.ndarray]]


def build() -> tuple[torch.nn.Module, Pairs]:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=VOCAB, hidden_size=256, intermediate_size=688,
                         num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                         max_position_embeddings=256)  # fmt: skip
    model = LlamaForCausalLM(config).eval().requires_grad_(False)
    ids = torch.randint(3, VOCAB, (PROMPTS, PROMPT_TOKENS + RESPONSE_TOKENS))  # 0-2: specials
    return model, [(row[:PROMPT_TOKENS], row[PROMPT_TOKENS:]) for row in ids]


def explainer(model, pairs: Pairs) -> list[np.ndarray]:
    config = SaliencyExplainer.Config()
    size = config.batch_size
    return [
        s
        for i in range(0, len(pairs), size)
        for s, _ in gradient_x_input(model, pairs[i : i + size], "prob", config.target_chunk)
    ]


def paper_method(model, pairs: Pairs) -> list[np.ndarray]:
    """The paper's algorithm on one batch (all texts have the same length here)."""
    model.requires_grad_(True)
    try:
        texts = torch.stack([torch.cat(pair) for pair in pairs])
        E = model.get_input_embeddings()(texts).detach().requires_grad_(True)
        probs = model(inputs_embeds=E).logits.softmax(-1)
        out = []
        for row, (prompt, response) in enumerate(pairs):
            n = len(prompt)
            targets = probs[row, torch.arange(n - 1, n - 1 + len(response)), response]
            columns = []
            for j in range(len(response)):
                model.zero_grad(set_to_none=False)
                E.grad = None
                targets[j].backward(retain_graph=True)
                columns.append((E.grad[row, :n] * E[row, :n]).sum(-1).detach())
            out.append(torch.stack(columns, 1).numpy())
        return out
    finally:
        model.zero_grad(set_to_none=True)
        model.requires_grad_(False)


def paper_method_per_prompt(model, pairs: Pairs) -> list[np.ndarray]:
    return [s for pair in pairs for s in paper_method(model, [pair])]


def per_token_frozen(model, pairs: Pairs) -> list[np.ndarray]:
    embed, out = model.get_input_embeddings(), []
    for prompt, response in pairs:
        ids, n = torch.cat([prompt, response])[None], len(prompt)
        columns = []
        for j, token in enumerate(response.tolist()):
            E = embed(ids).requires_grad_(True)
            prob = model(inputs_embeds=E).logits[0, n + j - 1].softmax(-1)[token]
            (grad,) = torch.autograd.grad(prob, E)
            columns.append((grad[0, :n] * E[0, :n]).sum(-1).detach())
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


def inseq_method(model) -> Method | None:
    """inseq's input_x_gradient, or None when inseq is not installed."""
    try:
        import inseq
    except ImportError:
        return None
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = {"<unk>": 0, "<pad>": 1, "<s>": 2}
    vocab = specials | {f"w{i}": i for i in range(len(specials), VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="<s>",
    )  # fmt: skip
    attributor = inseq.load_model(model, "input_x_gradient", tokenizer=tokenizer)
    # inseq warns on every call that it attributes one prompt at a time (said once, below),
    # captum that the embeddings did not require gradients (it sets that itself).
    logging.getLogger("inseq").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require grad")

    def text(ids: torch.Tensor) -> str:
        return " ".join(f"w{i}" for i in ids.tolist())

    def run(model, pairs: Pairs) -> list[np.ndarray]:
        out = attributor.attribute(
            [text(prompt) for prompt, _ in pairs],
            generated_texts=[text(torch.cat(pair)) for pair in pairs],
            attribute_target=False, show_progress=False,
        )  # fmt: skip
        return [
            attribution.target_attributions[:PROMPT_TOKENS].sum(-1).numpy()
            for attribution in out.sequence_attributions
        ]

    return run


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    torch.set_num_threads(2)
    model, pairs = build()
    methods: dict[str, Method] = {
        "explainer": explainer,
        PAPER: paper_method,
        "paper's, per prompt": paper_method_per_prompt,
        "per-token, frozen": per_token_frozen,
        "replicated": replicated,
    }
    inseq = inseq_method(model)
    if inseq is None:
        print("inseq: not installed, skipped (make bench installs it)")
    else:
        print("inseq: installed; with given responses it attributes one prompt at a time")
        methods["inseq"] = inseq
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
        print(f"{name:>20}: median {medians[name]:6.2f} s ({', '.join(f'{t:.2f}' for t in values)}"
              f"), {tokens / medians[name]:6.1f} response tokens/s, "
              f"max |diff| vs frozen {error:.1e} of max |s|")  # fmt: skip
    print(f"peak RSS: {rss_before:.0f} MB before, {rss_explainer:.0f} MB after the explainer "
          f"(+{rss_explainer - rss_before:.0f} MB)")  # fmt: skip
    for name in methods:
        if name not in ("explainer", PAPER):
            print(f"explainer vs {name}: {medians[name] / medians['explainer']:.1f}x")
    speedup = medians[PAPER] / medians["explainer"]
    print(f"saliency_speedup_vs_per_token_backward: {speedup:.1f}")


if __name__ == "__main__":
    main()
