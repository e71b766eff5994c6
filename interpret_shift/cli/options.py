"""Options shared by the subcommands that load models."""

from __future__ import annotations

import argparse

#: The dtypes a model may be loaded in (interpret_shift.core.subject.DTYPES).
DTYPES = ("float32", "bfloat16", "float16")


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model loading")
    group.add_argument("--dtype", default="float32", choices=[*DTYPES, "auto"])
    group.add_argument("--device-map", default=None, help="e.g. auto, cpu (needs accelerate)")
    group.add_argument("--gguf-file", default=None, help="GGUF file inside the model folder")
    group.add_argument("--attn", default=None, help="attention implementation, e.g. eager")
    group.add_argument(
        "--trust-remote-code", action="store_true", help="run the model repository's own code"
    )


def load_from_args(
    source: str, args: argparse.Namespace, registry, label: str = "", weights: str | None = None
):
    from interpret_shift.core.subject import load_subject

    return load_subject(
        source,
        weights_from=weights,
        adapters=registry.adapters(),
        dtype=args.dtype,
        device_map=args.device_map,
        gguf_file=args.gguf_file,
        attn_implementation=args.attn,
        trust_remote_code=args.trust_remote_code,
        label=label,
    )
