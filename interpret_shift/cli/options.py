"""Options shared by the subcommands that load models."""

from __future__ import annotations

import argparse

from rich.console import Console

#: The dtypes a model may be loaded in (interpret_shift.core.subject.DTYPES).
DTYPES = ("float32", "bfloat16", "float16")
#: What an explainer may need besides weights that a model without values cannot give.
NEEDS_A_MODEL = frozenset({"prompts", "gradients", "hook_points", "eager_attention"})


def add_model_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model loading")
    group.add_argument("--dtype", default="float32", choices=[*DTYPES, "auto"])
    group.add_argument(
        "--device-map", default=None, metavar="MAP",
        help="place the model(s) with accelerate: auto, balanced, sequential, a device "
        "(cpu, cuda:1), or a JSON object / .json file mapping modules to devices "
        "(a GPU index, 'cpu' or 'disk')",
    )  # fmt: skip
    group.add_argument(
        "--max-memory", default=None, metavar="SIZE",
        help="memory limit per device, e.g. 20GiB or 0=20GiB,cpu=64GiB: the device map "
        "places weights within it and explainers size their work by it",
    )  # fmt: skip
    group.add_argument(
        "--offload-folder", default=None, metavar="DIR",
        help="where a device map puts the weights it offloads to disk ('compare': one "
        "subfolder per model)",
    )  # fmt: skip
    group.add_argument("--gguf-file", default=None, help="GGUF file inside the model folder")
    group.add_argument("--attn", default=None, help="attention implementation, e.g. eager")
    group.add_argument(
        "--trust-remote-code", action="store_true", help="run the model repository's own code"
    )


def add_pair_options(parser: argparse.ArgumentParser) -> None:
    """``compare`` only: each model its own placement, and a LoRA adapter as the tuned one."""
    group = parser.add_argument_group("per model (compare)")
    for side in ("base", "tuned"):
        group.add_argument(
            f"--{side}-device-map", default=None, metavar="MAP",
            help=f"device map of the {side} model only (overrides --device-map for it)",
        )  # fmt: skip
    group.add_argument(
        "--tuned-adapter", default=None, metavar="DIR",
        help="a PEFT LoRA adapter folder applied to --tuned (same as --tuned MODEL+DIR)",
    )  # fmt: skip


def reads_weights_only(registry, args: argparse.Namespace) -> bool:
    """Every chosen explainer reads weights only: no model need be built (docs/scale.md)."""
    names = getattr(args, "explainers", None)
    chosen = (
        [n.strip() for n in names.split(",") if n.strip()]
        if names is not None
        else registry.builtin_explainers()
    )
    known = registry.explainers()
    needs = [known[name].needs for name in chosen if name in known]
    return bool(needs) and all("weights" in n and not n & NEEDS_A_MODEL for n in needs)


def load_from_args(
    source: str, args: argparse.Namespace, registry, label: str = "", weights: str | None = None
):
    """Load one model as the options say; ``label`` ``base``/``tuned`` picks that model's
    own device map, offload subfolder and (tuned) adapter in ``compare``."""
    from interpret_shift.core.subject import load_subject

    device_map = getattr(args, f"{label}_device_map", None) if label else None
    offload = getattr(args, "offload_folder", None)
    if offload is not None and label:
        offload = f"{offload}/{label}"
    weights_only = reads_weights_only(registry, args)
    subject = load_subject(
        source,
        weights_from=weights,
        adapters=registry.adapters(),
        dtype=args.dtype,
        device_map=device_map or args.device_map,
        gguf_file=args.gguf_file,
        attn_implementation=args.attn,
        trust_remote_code=args.trust_remote_code,
        label=label,
        max_memory=getattr(args, "max_memory", None),
        offload_folder=offload,
        lora=getattr(args, "tuned_adapter", None) if label == "tuned" else None,
        weights_only=weights_only,
    )
    notices = Console(stderr=True)
    if subject.weights_only:
        notices.print(f"{subject.label}: weight-only run, nothing loaded; every weight is "
                      f"streamed from {subject.weights_from or subject.checkpoint}",
                      markup=False)  # fmt: skip
    for warning in subject.lora.warnings if subject.lora is not None else ():
        notices.print(f"warning: {warning}", markup=False, soft_wrap=True)
    return subject
