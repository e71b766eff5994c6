"""Saliency explainer vs the paper's one-backward-per-token method, on the same model and data.

Two parts. First (skipped with ``--skip-legacy``), the 8-prompt comparison below. Then,
for issue 15, single prompts of (n prompt, m response) tokens = (64, 32), (32, 128) and
(16, 256) on the 4-layer llama and on a SmolLM2-shaped llama (30 layers, hidden 576, 9
heads, 3 KV heads, MLP 1536, vocabulary 49,152, random weights), each run through the
explainer with ``mode`` reverse, forward and auto (chunks from the default budget), inseq
where installed and the paper's method (on the SmolLM2 shape: its forward and its first
16 backwards, scaled to m, as each of its backwards covers the whole text). Medians of 3
round-robin runs on the small model, 1 run on the SmolLM2 shape. Last, in a fresh
process, the explainer (auto) with a 1 GiB budget on the SmolLM2 shape, (256, 256):
its peak RSS growth (VmHWM reset through /proc/self/clear_refs after a warm-up, minus
VmRSS before the run) over the budget. ``--quick``: small shapes on the small model only.

Model: random llama, 4 layers, hidden 256, 4 heads, 8,192-token vocabulary, float32, two
threads. Data: 8 prompts of 64 random token ids, each with a given 32-token response.

The 8-prompt comparison. Methods, all exact, timed round-robin in one process:
- explainer: ``gradient_x_input`` as the explainer's reverse mode ran before issue 15
  (chunks of 16 response positions: one forward per chunk, one vmapped backward over the
  chunk's targets);
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
REPEATS, REPLICA_CHUNK, LEGACY_CHUNK = 3, 64, 16
#: The three modes take well under a second on the small model, where 3 repeats leave
#: noise of 25 %: they are repeated this often there (inseq and the paper's method 3 times).
MODE_REPEATS = 15
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
    """The reverse mode as the explainer ran it before issue 15 (chunks of 16 targets)."""
    size = SaliencyExplainer.Config().batch_size
    return [
        s
        for i in range(0, len(pairs), size)
        for s, _ in gradient_x_input(model, pairs[i : i + size], "prob", LEGACY_CHUNK)
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


def word_tokenizer(vocab_size: int = VOCAB):
    """Maps ``w<id>`` to token id ``<id>`` (ids 0-2 are specials), so texts are exact ids."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = {"<unk>": 0, "<pad>": 1, "<s>": 2}
    vocab = specials | {f"w{i}": i for i in range(len(specials), vocab_size)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
        eos_token="<s>",
    )  # fmt: skip


def text(ids: torch.Tensor) -> str:
    return " ".join(f"w{i}" for i in ids.tolist())


def inseq_method(model, vocab_size: int = VOCAB) -> Method | None:
    """inseq's input_x_gradient, or None when inseq is not installed."""
    try:
        import inseq
    except ImportError:
        return None
    tokenizer = word_tokenizer(vocab_size)
    attributor = inseq.load_model(model, "input_x_gradient", tokenizer=tokenizer)
    # inseq warns on every call that it attributes one prompt at a time (said once, below),
    # captum that the embeddings did not require gradients (it sets that itself).
    logging.getLogger("inseq").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require grad")

    def run(model, pairs: Pairs) -> list[np.ndarray]:
        out = attributor.attribute(
            [text(prompt) for prompt, _ in pairs],
            generated_texts=[text(torch.cat(pair)) for pair in pairs],
            attribute_target=False, show_progress=False,
        )  # fmt: skip
        return [
            attribution.target_attributions[: len(prompt)].sum(-1).numpy()
            for attribution, (prompt, _) in zip(out.sequence_attributions, pairs)
        ]

    return run


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def legacy() -> None:
    """The 8-prompt comparison with the paper's method (docs/saliency.md, "Cost")."""
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
    print(f"model: llama 4 layers, hidden 256, 4 heads, vocab {VOCAB}, float32, 2 threads; "
          f"{PROMPTS} prompts x {PROMPT_TOKENS} tokens, {RESPONSE_TOKENS} given response "
          f"tokens; explainer: reverse mode, batch_size=1, target_chunk={LEGACY_CHUNK}")  # fmt: skip
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


# -- issue 15: the modes per shape, and memory within a budget --------------------------------
SHAPES = [(64, 32), (32, 128), (16, 256)]
QUICK_SHAPES = [(16, 8), (8, 32), (4, 64)]
MODELS = {
    "llama 4x256": dict(vocab_size=VOCAB, hidden_size=256, intermediate_size=688,
                        num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4),
    "SmolLM2-shaped": dict(vocab_size=49152, hidden_size=576, intermediate_size=1536,
                           num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3,
                           tie_word_embeddings=True),
}  # fmt: skip
#: The paper's method on the SmolLM2 shape: a forward, then this many of its m backwards,
#: timed and scaled to m (each of its backwards covers the whole text, so steps cost alike).
PAPER_STEPS = 16
BUDGET, MEMORY_SHAPE = 2**30, (256, 256)


def random_llama(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    config = LlamaConfig(**MODELS[name], max_position_embeddings=1024)
    return LlamaForCausalLM(config).eval().requires_grad_(False)


def saliency_run(subject, pair, mode: str) -> tuple[np.ndarray, dict]:
    """The explainer itself, on one prompt whose text is its token ids."""
    from interpret_shift.core.prompts import PromptRecord

    prompt = PromptRecord("p", text(pair[0]), response=text(pair[1]))
    explainer = SaliencyExplainer(mode=mode, chat_template=False)
    ((_, record),) = explainer.explain(subject, ["p"], [prompt])
    assert record.arrays["input_ids"].tolist() == pair[0].tolist()
    return record.arrays["attribution"], record.meta


def paper_seconds(model, pair, steps: int | None) -> float:
    """The paper's method on one prompt, its backwards timed on the first ``steps`` tokens."""
    prompt, response = pair
    m = len(response) if steps is None else min(steps, len(response))
    model.requires_grad_(True)
    try:
        start = time.perf_counter()
        E = model.get_input_embeddings()(torch.cat(pair)[None]).detach().requires_grad_(True)
        probs = model(inputs_embeds=E).logits.softmax(-1)
        n = len(prompt)
        targets = probs[0, torch.arange(n - 1, n - 1 + len(response)), response]
        forward = time.perf_counter() - start
        start = time.perf_counter()
        for j in range(m):
            model.zero_grad(set_to_none=False)
            E.grad = None
            targets[j].backward(retain_graph=True)
            (E.grad[0, :n] * E[0, :n]).sum(-1)
        backward = time.perf_counter() - start
        return forward + backward * len(response) / m
    finally:
        model.zero_grad(set_to_none=True)
        model.requires_grad_(False)


def shapes(quick: bool) -> dict[str, float]:
    from interpret_shift.core.subject import Subject

    results: dict[tuple[str, tuple[int, int]], dict[str, float]] = {}
    for name in MODELS if not quick else ["llama 4x256"]:
        model = random_llama(name)
        vocab = MODELS[name]["vocab_size"]
        subject = Subject.from_model(model, word_tokenizer(vocab), source=name)
        inseq = inseq_method(model, vocab)
        big = name != "llama 4x256"
        repeats = 1 if big or quick else REPEATS
        for n, m in QUICK_SHAPES if quick else SHAPES:
            torch.manual_seed(n * 1000 + m)
            ids = torch.randint(3, vocab, (n + m,))
            pair = (ids[:n], ids[n:])
            saliency_run(subject, (pair[0][:4], pair[1][:2]), "forward")  # warm up
            times: dict[str, list[float]] = {}
            out: dict[str, np.ndarray] = {}
            chosen = ""
            for repeat in range(MODE_REPEATS if repeats > 1 else 1):  # round-robin
                for mode in ("reverse", "forward", "auto"):
                    start = time.perf_counter()
                    out[mode], meta = saliency_run(subject, pair, mode)
                    times.setdefault(mode, []).append(time.perf_counter() - start)
                    if mode == "auto":
                        chosen = f"{meta['mode']}, chunk {meta['chunk']}"
                if repeat >= repeats:
                    continue
                if inseq is not None:
                    start = time.perf_counter()
                    (out["inseq"],) = inseq(model, [pair])
                    times.setdefault("inseq", []).append(time.perf_counter() - start)
                steps = PAPER_STEPS if big else None
                times.setdefault(PAPER, []).append(paper_seconds(model, pair, steps))
            row = {key: statistics.median(values) for key, values in times.items()}
            results[(name, (n, m))] = row
            scale = np.abs(out["reverse"]).max()
            error = max(np.abs(out[key] - out["reverse"]).max() / scale for key in out)
            best = min(row["reverse"], row["forward"])
            line = " | ".join(f"{key} {value:7.2f} s" for key, value in row.items())
            print(f"{name:>15} {str((n, m)):>10}: {line} | auto chose {chosen}; auto/best "
                  f"{row['auto'] / best:.2f}; max |diff| vs reverse {error:.1e} of max |s|",
                  flush=True)  # fmt: skip
    ratios = [row["auto"] / min(row["reverse"], row["forward"]) for row in results.values()]
    summary = {"saliency_auto_vs_best_mode": max(ratios)}
    if all("inseq" in row for row in results.values()):
        summary["saliency_speedup_vs_inseq_min"] = min(
            row["inseq"] / row["auto"] for row in results.values()
        )
        long = results.get(("SmolLM2-shaped", (16, 256)))
        if long is not None:
            summary["saliency_speedup_vs_inseq_long"] = long["inseq"] / long["auto"]
    return summary


def rss(field: str) -> int:
    """A field of /proc/self/status in bytes (VmRSS: now, VmHWM: peak)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_child(quick: bool) -> None:
    """In a fresh process: the explainer under a budget; prints peak RSS growth and budget."""
    from interpret_shift.core.subject import Subject

    name = "llama 4x256" if quick else "SmolLM2-shaped"
    budget = BUDGET // 8 if quick else BUDGET
    n, m = (64, 64) if quick else MEMORY_SHAPE
    model = random_llama(name)
    vocab = MODELS[name]["vocab_size"]
    subject = Subject.from_model(model, word_tokenizer(vocab), source=name)
    subject.memory_budget = budget
    ids = torch.randint(3, vocab, (n + m,))
    pair = (ids[:n], ids[n:])
    saliency_run(subject, (pair[0][:4], pair[1][:2]), "auto")  # libraries and kernels loaded
    with open("/proc/self/clear_refs", "w", encoding="ascii") as refs:
        refs.write("5")  # resets VmHWM to the current RSS
    before = rss("VmRSS")
    start = time.perf_counter()
    _, meta = saliency_run(subject, pair, "auto")
    seconds = time.perf_counter() - start
    print(f"{rss('VmHWM') - before} {budget} {meta['mode']} {meta['chunk']} {seconds:.1f} {name}")


def start_memory(quick: bool):
    import subprocess
    import sys

    command = [sys.executable, __file__, "--memory-child"] + (["--quick"] if quick else [])
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


def memory(quick: bool, child) -> float:
    line = child.communicate()[0].split()
    if child.returncode:
        raise RuntimeError("the memory check failed")
    peak, budget, mode, chunk, seconds, name = int(line[0]), int(line[1]), *line[2:5], line[5:]
    n, m = (64, 64) if quick else MEMORY_SHAPE
    print(f"memory: {' '.join(name)}, ({n}, {m}), budget {budget / 2**20:.0f} MiB: auto chose "
          f"{mode}, chunk {chunk}, {seconds} s; peak RSS growth {peak / 2**20:.0f} MiB "
          f"(a fresh process, VmHWM reset after a warm-up, minus VmRSS before the run)")  # fmt: skip
    return peak / budget


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes on the small model")
    parser.add_argument("--skip-legacy", action="store_true", help="skip the 8-prompt table")
    parser.add_argument(
        "--overlap-memory", action="store_true", help="run the memory check alongside the timings"
    )
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.memory_child:
        memory_child(args.quick)
        return
    if not args.skip_legacy and not args.quick:
        legacy()
    # The memory check runs in a fresh process: by default after the timings; with
    # --overlap-memory alongside them (faster on 2 cores, the timings get noisier).
    child = start_memory(args.quick) if args.overlap_memory else None
    summary = shapes(args.quick)
    summary["saliency_peak_over_budget"] = memory(args.quick, child or start_memory(args.quick))
    for key, value in summary.items():
        print(f"{key}: {value:.2f}")


if __name__ == "__main__":
    main()
