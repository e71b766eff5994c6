"""Saliency on a llama shaped like a 1B model: response tokens per second and peak memory.

Model: random llama with 22 layers, hidden 2048, intermediate 5632, 32 heads, 4 KV heads
and a 32,000-token vocabulary (TinyLlama-1.1B's shape), in float32 and in bfloat16. One
prompt of 128 tokens with a given response of 128 tokens, explained by the saliency
explainer through ``run_explainer`` (whatever plan it chooses). Each dtype runs in a
fresh process that builds the model, then resets its peak RSS (VmHWM) and explains:
the peak growth is the explainer's working memory, not the weights.

``--layers N`` builds N layers of the same width instead of 22 (two cores take long);
the time is then projected linearly to 22 layers (embedding and unembedding costs are
counted 22/N times, so the projection errs high) and the output says so.
Last lines: ``saliency_1b_tokens_per_s_<dtype>: X`` per dtype.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

SHAPE = dict(hidden_size=2048, intermediate_size=5632, num_attention_heads=32,
             num_key_value_heads=4, vocab_size=32000, max_position_embeddings=2048,
             tie_word_embeddings=False)  # fmt: skip
FULL_LAYERS, PROMPT, RESPONSE = 22, 128, 128


def rss(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def tokenizer():
    """One token per word over 32,000 made-up words: exact token counts, no special tokens."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    # special tokens must not be a prefix of a word: added tokens match inside words
    vocab = {"<unk>": 0, "</s>": 1} | {f"w{i}": i for i in range(2, SHAPE["vocab_size"])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", eos_token="</s>")


def run(layers: int, dtype: str) -> None:
    """In a fresh process: build, then explain one prompt; prints one JSON line."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from interpret_shift.core.explainer import run_explainer
    from interpret_shift.core.prompts import PromptRecord
    from interpret_shift.core.subject import Subject
    from interpret_shift.methods.saliency.explainer import SaliencyExplainer

    torch.manual_seed(0)
    config = LlamaConfig(num_hidden_layers=layers, **SHAPE)
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config).to(getattr(torch, dtype)).eval().requires_grad_(False)
    subject = Subject.from_model(model, tokenizer(), source=f"llama-1b-{layers}l-{dtype}")
    generator = torch.Generator().manual_seed(1)
    words = torch.randint(2, SHAPE["vocab_size"], (PROMPT + RESPONSE,), generator=generator)
    text = [f"w{int(i)}" for i in words]
    prompt = PromptRecord(id="p", prompt=" ".join(text[:PROMPT]),
                          response=" ".join(text[PROMPT:]))  # fmt: skip
    explainer = SaliencyExplainer(chat_template=False)
    baseline = rss("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak := now
    started = time.perf_counter()
    (record,) = run_explainer(explainer, subject, [prompt]).values()
    seconds = time.perf_counter() - started
    shape = list(record.arrays["attribution"].shape)
    assert shape == [PROMPT, RESPONSE], shape
    weights = sum(p.numel() * p.element_size() for p in model.parameters())
    print(json.dumps({"seconds": seconds, "growth": rss("VmHWM") - baseline,
                      "weights": weights, "threads": torch.get_num_threads()}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=FULL_LAYERS)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        run(args.layers, args.child)
        return
    scale = FULL_LAYERS / args.layers
    print(f"llama 1B shape, {args.layers} of {FULL_LAYERS} layers built; prompt {PROMPT} "
          f"tokens, response {RESPONSE} tokens")  # fmt: skip
    results = {}
    for dtype in args.dtypes.split(","):
        child = subprocess.run([sys.executable, __file__, "--layers", str(args.layers),
                                "--child", dtype], capture_output=True, text=True)  # fmt: skip
        if child.returncode != 0:
            sys.exit(f"the {dtype} run failed:\n{child.stderr}")
        out = child.stdout
        result = json.loads(out.strip().splitlines()[-1])
        seconds = result["seconds"] * scale
        results[dtype] = RESPONSE / seconds
        print(
            f"{dtype}: {result['seconds']:.1f} s measured ({result['threads']} threads), "
            + (f"{seconds:.0f} s projected to {FULL_LAYERS} layers, " if scale != 1 else "")
            + f"{RESPONSE / seconds:.2f} response tokens/s; weights "
            f"{result['weights'] / 1e9:.2f} GB, peak working memory "
            f"{result['growth'] / 1e9:.2f} GB (measured with {args.layers} layers)"
        )
    for dtype, rate in results.items():
        print(f"saliency_1b_tokens_per_s_{dtype}: {rate:.3f}")


if __name__ == "__main__":
    main()
