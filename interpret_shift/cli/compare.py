"""``interpret-shift compare`` and ``explain``: run explainers on a pair, or on one model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from interpret_shift.cli.options import add_model_options, add_pair_options, load_from_args
from interpret_shift.errors import InputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="explain a base and a tuned model, compare them, write a report",
        description="Run every chosen explainer on BASE and TUNED, compare the results and "
        "write records, diffs (JSON), report.html and a console summary to OUT. A rerun "
        "reuses finished results; --force recomputes them.",
    )
    parser.add_argument(
        "--base", required=True, help="base model (folder, hub id, .gguf, demo:base)"
    )
    parser.add_argument(
        "--tuned", required=True,
        help="tuned model (… or demo:tuned), or BASE+ADAPTER_DIR for a PEFT LoRA adapter",
    )  # fmt: skip
    parser.add_argument(
        "--base-weights",
        default=None,
        metavar="DIR",
        help="safetensors checkpoint of the base model to stream weights from",
    )
    parser.add_argument(
        "--tuned-weights",
        default=None,
        metavar="DIR",
        help="safetensors checkpoint of the tuned model to stream weights from",
    )
    _common(parser)
    add_pair_options(parser)
    parser.set_defaults(func=run_compare)

    explain = subparsers.add_parser(
        "explain",
        help="run explainers on one model",
        description="Run the chosen explainers on MODEL and write their records to OUT.",
    )
    explain.add_argument("model")
    explain.add_argument(
        "--weights",
        default=None,
        metavar="DIR",
        help="safetensors checkpoint of the model to stream weights from",
    )
    _common(explain)
    explain.set_defaults(func=run_explain)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--prompts", default="demo", help="JSONL prompt set, or 'demo'")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument(
        "--explainers", default=None,
        help="comma-separated explainer names (default: the built-in ones)",
    )  # fmt: skip
    parser.add_argument(
        "--set", action="append", default=[], metavar="EXPLAINER.OPTION=VALUE",
        help="an option of an explainer or its diff metrics, e.g. saliency.max_new_tokens=16 "
        "or ffn.annotator=local-llm (value parsed as JSON)",
    )  # fmt: skip
    parser.add_argument(
        "--preset", default=None, metavar="NAME",
        help="start from a named set of options; 'paper': every choice of the paper's code "
        "(docs/paper-fidelity.md). --set overrides it",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="recompute finished results")
    add_model_options(parser)


def parse_options(pairs: list[str]) -> dict[str, dict]:
    options: dict[str, dict] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        explainer, dot, option = key.partition(".")
        if not (sep and dot and explainer and option):
            raise InputError(
                f"--set {pair!r} is not of the form EXPLAINER.OPTION=VALUE.",
                "For example: --set saliency.max_new_tokens=16",
            )
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError:
            parsed = value  # a bare string
        options.setdefault(explainer, {})[option] = parsed
    return options


def _explainers(args) -> list[str] | None:
    if args.explainers is None:
        return None
    return [name.strip() for name in args.explainers.split(",") if name.strip()]


def _prepare(args: argparse.Namespace):
    """Everything that needs no model, checked first: explainers, options, prompts, --out."""
    from interpret_shift.pipeline import check_output, load_prompt_set, plan, preset_options
    from interpret_shift.plugins import load_registry

    registry = load_registry()
    names = _explainers(args)
    if names is None:
        names = registry.builtin_explainers()
    options = preset_options(args.preset, parse_options(args.set), names)
    plan(registry, names, options)
    prompts = load_prompt_set(args.prompts)
    check_output(args.out)
    return registry, options, prompts


def run_compare(args: argparse.Namespace) -> int:
    from interpret_shift.core import distributed  # imports torch: not at --help

    registry, options, prompts = _prepare(args)
    with distributed.session() as ranks:  # several processes under torchrun
        return _compare(args, ranks, registry, options, prompts)


def _on_local_device(args: argparse.Namespace, ranks) -> Console:
    """Under torchrun: each rank's models on its own GPU unless a device map was given,
    offloaded weights in a folder of its own, and only rank 0 draws spinners (the others'
    notices still print)."""
    if ranks is None:
        return Console(stderr=True)
    if args.device_map is None and ranks.device.type == "cuda":
        args.device_map = str(ranks.device)
    if getattr(args, "offload_folder", None) is not None:
        args.offload_folder = str(Path(args.offload_folder) / f"rank-{ranks.rank}")
    return Console(stderr=True, force_terminal=False if not ranks.is_main else None)


def _compare(args, ranks, registry, options, prompts) -> int:
    from interpret_shift.pipeline import compare

    console = _on_local_device(args, ranks)
    with console.status("loading the two models"):
        base = load_from_args(args.base, args, registry, label="base", weights=args.base_weights)
        tuned = load_from_args(args.tuned, args, registry, label="tuned",
                               weights=args.tuned_weights)  # fmt: skip
    comparison = compare(base, tuned, prompts, args.out, registry=registry,
                         explainers=_explainers(args), options=options, force=args.force,
                         console=console, preset=args.preset)  # fmt: skip
    if comparison is not None:  # rank 0 (or the only process) reports
        console.print(f"report: {args.out / 'report.html'}")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from interpret_shift.core import distributed

    registry, options, prompts = _prepare(args)
    with distributed.session() as ranks:  # several processes under torchrun
        return _explain(args, ranks, registry, options, prompts)


def _explain(args, ranks, registry, options, prompts) -> int:
    from interpret_shift.pipeline import explain

    _on_local_device(args, ranks)
    subject = load_from_args(args.model, args, registry, weights=args.weights)
    results = explain(subject, prompts, args.out, registry=registry,
                      explainers=_explainers(args), options=options, force=args.force,
                      preset=args.preset)  # fmt: skip
    for name, records in (results or {}).items():
        folder = args.out / "records" / name / subject.label
        Console(stderr=True).print(f"{name}: {len(records)} records in {folder}")
    return 0
