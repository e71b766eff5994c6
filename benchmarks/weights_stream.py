"""Peak memory of reading every canonical matrix through the streaming path.

Builds a llama-family checkpoint of about 0.9 GB in a temporary folder (shards written
tensor by tensor, so building it needs little memory), then, in a fresh process, reads
embed, unembed and every layer's W_q, W_k and W_down with ``Weights.from_folder`` and
reports the growth of peak resident memory (VmHWM, reset after imports) over the
process's baseline as a ratio to the checkpoint's size. Last line: ``stream_peak_rss_ratio: X``.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = dict(
    hidden_size=1024,
    intermediate_size=2816,
    num_hidden_layers=12,
    num_attention_heads=16,
    num_key_value_heads=4,
    vocab_size=32000,
    tie_word_embeddings=False,
)


def build(folder: Path) -> int:
    import torch
    from safetensors.torch import save_file
    from transformers import LlamaConfig

    config = LlamaConfig(**CONFIG)
    config.architectures = ["LlamaForCausalLM"]
    config.save_pretrained(folder)
    d, ff, kv = config.hidden_size, config.intermediate_size, 1024 // 16 * 4
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=generator) * 0.02

    shards = [
        {
            "model.embed_tokens.weight": rand(config.vocab_size, d),
            "model.norm.weight": torch.ones(d),
        }
    ]
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        shards.append(
            {
                p + "input_layernorm.weight": torch.ones(d),
                p + "post_attention_layernorm.weight": torch.ones(d),
                p + "self_attn.q_proj.weight": rand(d, d),
                p + "self_attn.k_proj.weight": rand(kv, d),
                p + "self_attn.v_proj.weight": rand(kv, d),
                p + "self_attn.o_proj.weight": rand(d, d),
                p + "mlp.gate_proj.weight": rand(ff, d),
                p + "mlp.up_proj.weight": rand(ff, d),
                p + "mlp.down_proj.weight": rand(d, ff),
            }
        )
    shards.append({"lm_head.weight": rand(config.vocab_size, d)})
    index, total = {}, 0
    for n, shard in enumerate(shards):
        name = f"model-{n + 1:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, folder / name, metadata={"format": "pt"})
        index.update(dict.fromkeys(shard, name))
        total += sum(t.numel() * t.element_size() for t in shard.values())
        del shard
    (folder / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": index})
    )
    return total


def rss(field: str) -> int:
    """A memory figure of this process from /proc (VmRSS now, VmHWM the peak), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def read_all(folder: str) -> None:
    """Runs in a fresh process: prints baseline and peak RSS in bytes."""
    import torch  # noqa: F401  (imports are part of the baseline)

    from interpret_shift.core.weights import Weights

    baseline = rss("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    weights = Weights.from_folder(folder)
    checksum = float(weights.embed().sum()) + float(weights.unembed().sum())
    for layer in range(weights.layout.n_layers):
        for matrix in (weights.W_q(layer), weights.W_k(layer), weights.W_down(layer)):
            checksum += float(matrix.sum())
    peak = rss("VmHWM")
    print(json.dumps({"baseline": baseline, "peak": peak, "checksum": checksum}))


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--read":
        read_all(sys.argv[2])
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        size = build(folder)
        print(
            f"checkpoint: {size / 1e9:.2f} GB in {len(list(folder.glob('*.safetensors')))} "
            f"shards, built in {time.perf_counter() - started:.1f} s"
        )
        started = time.perf_counter()
        out = subprocess.run(
            [sys.executable, __file__, "--read", str(folder)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        result = json.loads(out.strip().splitlines()[-1])
        growth = result["peak"] - result["baseline"]
        print(f"read every canonical matrix in {time.perf_counter() - started:.1f} s")
        print(
            f"baseline RSS after imports: {result['baseline'] / 1e6:.0f} MB; "
            f"peak RSS: {result['peak'] / 1e6:.0f} MB; growth: {growth / 1e6:.0f} MB"
        )
        print(f"stream_peak_rss_ratio: {growth / size:.3f}")


if __name__ == "__main__":
    main()
