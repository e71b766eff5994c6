"""The ``interpret-shift`` command line: one module per subcommand, each with ``register``."""

from __future__ import annotations

import argparse
import importlib

from rich.console import Console

from interpret_shift.errors import InterpretShiftError

# Subcommand modules, in the order `--help` lists them. Each defines
# ``register(subparsers)`` and sets ``func(args) -> int`` on its parser.
COMMANDS = ["compare", "report", "hookpoints", "plugins", "paper_tables"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interpret-shift",
        description="What instruction tuning changes inside a causal LM.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"interpret_shift.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InterpretShiftError as error:
        console = Console(stderr=True)
        console.print(f"[bold red]error:[/] {error.what}", highlight=False)
        if error.fix:
            console.print(error.fix, highlight=False)
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; finished results are kept, rerun to resume")
        return 130
