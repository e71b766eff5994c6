"""``interpret-shift report DIR``: rebuild DIR/report.html from a compare output folder."""

from __future__ import annotations

import argparse

from rich.console import Console

from interpret_shift.report import REPORT_NAME, print_summary, render_report


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help=f"rebuild DIR/{REPORT_NAME} from the output folder of `compare`",
        description=(
            f"Rebuild the self-contained HTML report DIR/{REPORT_NAME} from DIR/summary.json "
            "and DIR/diff/*.json, without loading any model. Sections of explainers that were "
            "not run are left out."
        ),
    )
    parser.add_argument("dir", metavar="DIR", help="output folder of `interpret-shift compare`")
    parser.add_argument(
        "--summary", action="store_true", help="also print the claims and key tests"
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail on a diff file of the wrong shape instead of noting it in the page",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    console = Console()
    path = render_report(args.dir, strict=getattr(args, "strict", False))
    if getattr(args, "summary", False):
        print_summary(args.dir, console)
    console.print(f"wrote {path}", highlight=False)
    return 0
