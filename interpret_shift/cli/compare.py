"""``interpret-shift compare`` and ``explain``: run explainers on a pair, or on one model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from rich.console import Console

from interpret_shift.cli.options import add_model_options, load_from_args
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
    parser.add_argument("--tuned", required=True, help="tuned model (… or demo:tuned)")
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
    from interpret_shift.pipeline import compare

    registry, options, prompts = _prepare(args)
    console = Console(stderr=True)
    with console.status("loading the two models"):
        base = load_from_args(args.base, args, registry, label="base", weights=args.base_weights)
        tuned = load_from_args(args.tuned, args, registry, label="tuned",
                               weights=args.tuned_weights)  # fmt: skip
    compare(base, tuned, prompts, args.out, registry=registry, explainers=_explainers(args),
            options=options, force=args.force, console=console, preset=args.preset)  # fmt: skip
    console.print(f"report: {args.out / 'report.html'}")
    return 0


def run_explain(args: argparse.Namespace) -> int:
    from interpret_shift.pipeline import explain

    registry, options, prompts = _prepare(args)
    subject = load_from_args(args.model, args, registry, weights=args.weights)
    results = explain(subject, prompts, args.out, registry=registry,
                      explainers=_explainers(args), options=options, force=args.force,
                      preset=args.preset)  # fmt: skip
    for name, records in results.items():
        folder = args.out / "records" / name / subject.label
        Console(stderr=True).print(f"{name}: {len(records)} records in {folder}")
    return 0
