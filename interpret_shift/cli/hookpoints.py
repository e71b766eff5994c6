"""``interpret-shift hookpoints MODEL``: the canonical points of a model."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "hookpoints",
        help="list a model's canonical hook points",
        description="List the canonical hook points of MODEL (a folder, hub id, .gguf file "
        "or demo:base / demo:tuned). Weights are not read.",
    )
    parser.add_argument("model")
    parser.add_argument("--json", action="store_true", help="print a JSON list of names")
    parser.add_argument("--gguf-file", default=None)
    parser.add_argument("--trust-remote-code", action="store_true")
    parser.add_argument("--print-adapter", action="store_true",
                        help="load the model, prove its adapter (inferred if no table fits) and "
                        "print it as Python source for a table (docs/inferred-adapters.md)")  # fmt: skip
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpret_shift.core.subject import load_layout
    from interpret_shift.plugins import load_registry

    if args.print_adapter:
        return _print_adapter(args)
    layout = load_layout(args.model, gguf_file=args.gguf_file,
                         trust_remote_code=args.trust_remote_code,
                         adapters=load_registry().adapters())  # fmt: skip
    if args.json:
        print(json.dumps(layout.names))
        return 0
    table = Table(title=f"{args.model}: {layout.adapter.name} adapter, {len(layout.names)} points")
    table.add_column("canonical name")
    table.add_column("module")
    table.add_column("reads")
    for name in layout.names:
        role, layer = layout.split(name)
        point = layout.entry(role, layer)
        reads = point.io + (f" [{point.part} of {point.fused}]" if point.fused else "")
        table.add_row(name, layout.module_path(role, layer) or "(layer)", reads)
    Console().print(table)
    return 0


def _print_adapter(args: argparse.Namespace) -> int:
    """The adapter proved on the loaded model, as Python source to paste into a plugin."""
    from interpret_shift.core.adapters.infer import adapter_source
    from interpret_shift.core.subject import load_subject
    from interpret_shift.plugins import load_registry

    subject = load_subject(args.model, gguf_file=args.gguf_file,
                           trust_remote_code=args.trust_remote_code,
                           adapters=load_registry().adapters())  # fmt: skip
    print(adapter_source(subject.adapter), end="")
    return 0
