"""The embedded demo pair: a tiny base Llama LM and its instruction-tuned version.

Both are ordinary Hugging Face folders shipped inside the package, so the demo and the tests
run offline. They were made by ``examples/train_demo_pair.py``; see docs/demo-pair.md.
"""

from __future__ import annotations

from pathlib import Path

DEMO_DIR: Path = Path(__file__).resolve().parent
MODELS = ("base", "tuned")


def model_dir(which: str) -> Path:
    """The folder of the ``"base"`` or ``"tuned"`` demo model (config, weights, tokenizer)."""
    if which not in MODELS:
        raise ValueError(f"unknown demo model {which!r}: choose 'base' or 'tuned'")
    return DEMO_DIR / which


def prompts_path() -> Path:
    """The held-out prompt set (JSONL, docs/formats.md) whose words the tuning never saw."""
    return DEMO_DIR / "heldout.jsonl"
