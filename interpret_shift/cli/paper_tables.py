"""``interpret-shift paper-tables``: the paper's Tables 1 and 2 from its released files."""

from __future__ import annotations

import argparse
import json
import math

from rich.console import Console
from rich.table import Table


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "paper-tables",
        help="recompute the paper's Tables 1 and 2 from its released attribution files",
        description=(
            "Instruction scores from the paper's released attribution matrices: Table 1 "
            "(Vicuna, followed vs unfollowed responses) and Table 2 (LLaMA vs Vicuna), "
            "each a one-sided Welch t-test per dataset group."
        ),
    )
    parser.add_argument(
        "--results",
        required=True,
        metavar="DIR",
        help="folder holding the released ifa_llama_7b/ and ifa_vicuna_7b/ folders (one <ID>.pkl per prompt)",
    )
    parser.add_argument("--prompts", required=True, metavar="TSV", help="FinalDataset.tsv")
    parser.add_argument("--ratings", required=True, metavar="TSV", help="AnnotatedDataset.tsv")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead")
    parser.set_defaults(func=run)


def _number(value: float, digits: int = 4) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def _p_value(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.3g}"


def _render(tables, console: Console) -> None:
    table1 = Table(
        title="Table 1: Vicuna, followed vs unfollowed", caption="H1: followed > unfollowed"
    )
    for column in ("group", "n followed", "followed", "n unfollowed", "unfollowed", "p"):
        table1.add_column(column, justify="left" if column == "group" else "right")
    for group, r in tables.table1.items():
        table1.add_row(
            group, str(r.n_a), _number(r.mean_a), str(r.n_b), _number(r.mean_b), _p_value(r.p)
        )
    table2 = Table(title="Table 2: LLaMA (base) vs Vicuna (tuned)", caption="H1: tuned > base")
    for column in ("group", "n", "base", "tuned", "p"):
        table2.add_column(column, justify="left" if column == "group" else "right")
    for group, r in tables.table2.items():
        table2.add_row(group, str(r.n_a), _number(r.mean_b), _number(r.mean_a), _p_value(r.p))
    console.print(table1)
    console.print(table2)
    console.print("Mean instruction score per group (levels 0..10, b = 7, p = 4); one-sided Welch.")


def run(args: argparse.Namespace) -> int:
    from interpret_shift.methods.saliency.paper import compute_tables

    tables = compute_tables(args.results, args.prompts, args.ratings)
    if args.json:
        print(json.dumps(tables.to_json()))
    else:
        _render(tables, Console())
    return 0
