"""``interpret-shift report DIR``: rebuild DIR/report.html from a compare output folder."""

from __future__ import annotations

import argparse

from rich.console import Console


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="rebuild DIR/report.html from the output folder of `compare`",
        description=(
            "Rebuild the self-contained HTML report DIR/report.html from DIR/summary.json "
            "and DIR/diff/*.json, without loading any model. Sections of explainers that were "
            "not run are left out."
        ),
    )
    parser.add_argument("dir", metavar="DIR", help="output folder of `interpret-shift compare`")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="also print the models, the claims (with n and p) and the warnings",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from interpret_shift.plugins import load_registry
    from interpret_shift.report import print_summary, render_report

    console = Console()
    path = render_report(args.dir, load_registry().sections())
    if getattr(args, "summary", False):
        print_summary(args.dir, console)
    console.print(f"wrote {path}", highlight=False)
    return 0
