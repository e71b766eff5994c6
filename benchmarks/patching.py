"""Cross-model patching: the batched ways vs one forward per patched point.

Two random-weight llamas (8 layers, d_model 512, d_ff 1376, 16k vocabulary; the "tuned"
one the base plus noise), 8 prompts of 64 tokens (48 prompt + 16 response), both
directions, the three components (residual stream, attention out, MLP out) at every layer:
48 patched runs per prompt. The ways share everything else (the clean runs that capture
the source activations, the scoring) and differ only in how the patched rows are run:

* one forward per patched point (``copies``, ``batch_size`` 1): the obvious loop, the baseline;
* ``copies``: all points of a direction in one batch, the input copied once per point;
* ``growing``: one batch that grows at each layer from the clean run's activations, so no
  layer below a patched point is recomputed;
* ``lean`` (what the explainer runs where the model allows it): the growing batch that
  also skips the attention and MLP work a patch replaces, and the last layer's MLP at the
  positions whose logits are not read.

Prints the median wall time of each and, last, ``patching_speedup_vs_per_layer: X`` (the
one-forward-per-point time over the lean batch's).

    .venv/bin/python benchmarks/patching.py [--repeats 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from interpret_shift.core.subject import Subject  # noqa: E402
from interpret_shift.methods.patching.patch import (  # noqa: E402
    COMPONENTS,
    STRATEGIES,
    choose_strategy,
    clean_run,
    patched_scores,
)

LAYERS, PROMPTS, PROMPT_TOKENS, RESPONSE_TOKENS = 8, 8, 48, 16


def bench_pair() -> tuple[Subject, Subject]:
    config = AutoConfig.for_model(
        "llama", vocab_size=16_000, hidden_size=512, intermediate_size=1376,
        num_hidden_layers=LAYERS, num_attention_heads=8, num_key_value_heads=8,
    )  # fmt: skip
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    tuned = AutoModelForCausalLM.from_config(config).eval().requires_grad_(False)
    with torch.no_grad():
        tuned.load_state_dict(base.state_dict())
        for parameter in tuned.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.01)
    return Subject.from_model(base, source="base"), Subject.from_model(tuned, source="tuned")


def patch_all(pair, inputs, batch_size: int, strategy: str) -> list[np.ndarray]:
    """Both directions of every prompt: the summed log-prob of each patched run."""
    names = [f"layers.{layer}.{c}" for c in COMPONENTS for layer in range(LAYERS)]
    found = []
    for ids, tokens in inputs:
        runs = [clean_run(subject, ids, len(tokens), names) for subject in pair]
        for receiver, source in ((0, 1), (1, 0)):
            patches = [(name, runs[source][1][name]) for name in names]
            logp, _ = patched_scores(pair[receiver], ids, tokens, runs[source][0], patches,
                                     batch_size, strategy, runs[receiver][1])  # fmt: skip
            found.append(logp.numpy())
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)
    pair = bench_pair()
    generator = torch.Generator().manual_seed(1)
    inputs = []
    for _ in range(PROMPTS):
        sequence = torch.randint(3, 16_000, (PROMPT_TOKENS + RESPONSE_TOKENS,),
                                 generator=generator)  # fmt: skip
        inputs.append((sequence[:-1], sequence[PROMPT_TOKENS:]))  # the last token is not fed
    rows = len(COMPONENTS) * LAYERS
    assert all(choose_strategy(subject, COMPONENTS) == "lean" for subject in pair)
    ways = {strategy: (rows, strategy) for strategy in STRATEGIES} | {"single": (1, "copies")}
    for strategy in STRATEGIES:
        patch_all(pair, inputs[:1], rows, strategy)  # warm up
    # interleaved per prompt, so a change in the load of the shared machine hits every way alike
    times: dict[str, list[float]] = {way: [0.0] * args.repeats for way in ways}
    found: dict[str, list[np.ndarray]] = {way: [] for way in ways}
    for repeat in range(args.repeats):
        for prompt in inputs:
            for way, (size, strategy) in ways.items():
                start = time.perf_counter()
                result = patch_all(pair, [prompt], size, strategy)
                times[way][repeat] += time.perf_counter() - start
                if repeat == 0:
                    found[way] += result
        print("  " + ", ".join(f"{way} {times[way][repeat]:.2f} s" for way in ways), flush=True)
    median = {way: statistics.median(times[way]) for way in ways}
    gap = max(float(np.abs(x - y).max())
              for way in STRATEGIES for x, y in zip(found[way], found["single"]))  # fmt: skip
    print(f"patched runs: {PROMPTS} prompts x 2 directions x {rows} points, "
          f"{PROMPT_TOKENS + RESPONSE_TOKENS} tokens, clean runs included")  # fmt: skip
    print(f"one forward per point: {median['single']:.2f} s (median of {args.repeats})")
    for way in reversed(STRATEGIES):
        print(f"{way} ({rows} points per forward): {median[way]:.2f} s, "
              f"{median['single'] / median[way]:.2f}x")  # fmt: skip
    ratios = [s / g for s, g in zip(times["single"], times["lean"])]
    print("one forward per point / lean, per repeat: " + ", ".join(f"{r:.2f}" for r in ratios))
    print(f"largest log-prob difference from one forward per point: {gap:.2e} nats")
    print(f"patching_speedup_vs_per_layer: {median['single'] / median['lean']:.2f}")


if __name__ == "__main__":
    main()
