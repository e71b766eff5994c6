"""Checks that run before any work, so an invalid run fails fast and writes nothing.

Order: what needs no model (explainers and options, prompts, the output folder), then each
model (at load, in ``core.subject``), then the pair.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path

from interpret_shift.core.pair import shape
from interpret_shift.errors import InputError, ModelLoadError


def check_prompts(prompts: Sequence, source: object = "the prompt set") -> None:
    if not prompts:
        raise InputError(
            f"{source} holds no prompts.",
            "Give at least one prompt, one JSON object per line (docs/formats.md).",
        )


def check_output(out: str | Path) -> Path:
    """The output folder can be created and written to; nothing is created here."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder.", "Choose a folder path.")
    ancestor = out
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(
            f"--out {out} cannot be created: {ancestor} is a file.", "Choose a folder path."
        )
    try:  # a probe file, removed at once: permissions, read-only and pseudo file systems
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as error:
        raise InputError(
            f"--out {out} cannot be written: {ancestor} is not writable ({error.strerror}).",
            "Choose a folder you can write to.",
        ) from error
    return out


def _describe(subject) -> str:
    config = subject.model.config
    architecture = (config.architectures or [type(subject.model).__name__])[0]
    width = getattr(config, "hidden_size", "?")
    return f"{subject.source} ({architecture}, {subject.layout.n_layers} layers of width {width})"


def check_pair(base, tuned) -> None:
    """Two models that can be compared: one architecture and shape, one vocabulary."""
    if shape(base) != shape(tuned):
        raise ModelLoadError(
            f"The two models have different architectures or shapes: base {_describe(base)}, "
            f"tuned {_describe(tuned)}.",
            "Compare a model with its own instruction-tuned version (same architecture).",
        )
    vocab_a, vocab_b = base.tokenizer.get_vocab(), tuned.tokenizer.get_vocab()
    if vocab_a != vocab_b:
        raise ModelLoadError(
            f"The two models have different tokenizers: base {base.source} has "
            f"{len(vocab_a)} tokens, tuned {tuned.source} {len(vocab_b)}"
            + (" (same size, other tokens)." if len(vocab_a) == len(vocab_b) else "."),
            "Per-token comparisons need one vocabulary: compare a model with its own "
            "tuned version.",
        )
