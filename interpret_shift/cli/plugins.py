"""``interpret-shift plugins``: what the loaded plugins provide, and which failed to load."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table


def register(subparsers) -> None:
    parser = subparsers.add_parser("plugins", help="list loaded plugins and what they provide")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpret_shift.plugins import load_registry

    manager = load_registry()
    provided = manager.provided()
    if args.json:
        print(json.dumps({"plugins": provided, "failed": manager.failures}))
        return 0
    table = Table(title="interpret-shift plugins")
    table.add_column("plugin")
    table.add_column("provides")
    for plugin, hooks in provided.items():
        lines = [f"{hook}: {', '.join(names)}" for hook, names in hooks.items() if names]
        table.add_row(plugin, "\n".join(lines) or "(nothing)")
    for plugin, error in manager.failures.items():
        table.add_row(f"[red]{plugin}[/]", f"[red]failed to load: {error}[/]")
    Console().print(table)
    return 0
