"""``interpret-shift paper-tables``: the paper's Tables 1, 2, 3 and 5 from its released files."""

from __future__ import annotations

import argparse
import json
import math
import sys

from rich.console import Console
from rich.table import Table

from interpret_shift.errors import InputError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "paper-tables",
        help="recompute the paper's Tables 1, 2, 3 and 5 from its released result files",
        description=(
            "Tables of the paper from its released result files. Tables 1 and 2 (instruction "
            "scores from the attribution matrices: --results, --prompts and --ratings, all "
            "three), Table 3 (instruction vs general verbs in attention-head word pairs: "
            "--heads) and Table 5 / Figure 3 (concept categories of feed-forward components: "
            "--ffn). Each table is computed when its inputs are given; at least one is needed."
        ),
    )
    parser.add_argument(
        "--results",
        metavar="DIR",
        help="folder holding the released ifa_llama_7b/ and ifa_vicuna_7b/ folders (one <ID>.pkl per prompt)",
    )
    parser.add_argument("--prompts", metavar="TSV", help="FinalDataset.tsv")
    parser.add_argument("--ratings", metavar="TSV", help="AnnotatedDataset.tsv")
    parser.add_argument(
        "--heads",
        metavar="DIR",
        help="the release's results/bilinear_interpret folder (bilinear_words_split.tsvaa ... tsvaw)",
    )
    parser.add_argument(
        "--general-verbs",
        metavar="FILE",
        help="Table 3's general verbs, one a line (default: the 3,000 most frequent WordNet "
        "verbs with an example sentence, ranked by wordfreq)",
    )
    parser.add_argument(
        "--ffn",
        metavar="DIR",
        help="the release's results/linear_interpret folder (linear_task_seed0..4.tsv, "
        "linear_concept_seed0..4.tsv)",
    )
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


def _render_heads(heads, console: Console) -> None:
    table = Table(
        title="Table 3: share of heads where Vicuna's count of a verb is higher than LLaMA's",
        caption="mean ± population std over verbs (n verbs); two-sided Welch t-test",
    )
    for column in ("layers", "instruction verbs", "n", "general verbs", "n", "t", "p"):
        table.add_column(column, justify="left" if column == "layers" else "right")
    for row in heads.rows:
        table.add_row(
            row.label,
            f"{_number(row.instruction.mean)} ± {_number(row.instruction.std)}",
            str(row.instruction.n),
            f"{_number(row.general.mean)} ± {_number(row.general.std)}",
            str(row.general.n),
            _number(row.t, 3),
            _p_value(row.p),
        )
    console.print(table)


def _render_ffn(ffn, console: Console) -> None:
    titles = {"task": "suitable task", "linguistic": "linguistic level"}
    for kind, cells in ffn.overall.items():
        table = Table(
            title=f"Table 5 ({titles[kind]}): share of FFN concepts, LLaMA vs Vicuna",
            caption="mean ± population std over 5 seeds; two-sided Student t-test",
        )
        for column in ("category", "LLaMA (base)", "Vicuna (tuned)", "t", "p"):
            table.add_column(column, justify="left" if column == "category" else "right")
        for category, cell in cells.items():
            table.add_row(
                category,
                f"{_number(cell.base_mean)} ± {_number(cell.base_std)}",
                f"{_number(cell.tuned_mean)} ± {_number(cell.tuned_std)}",
                _number(cell.t, 3),
                _p_value(cell.p),
            )
        console.print(table)
    cells = ffn.by_layers.get("linguistic", {})
    if cells:
        categories = list(next(iter(cells.values())))
        table = Table(
            title="Figure 3: linguistic level by layer group, LLaMA / Vicuna (mean over seeds)"
        )
        table.add_column("layers")
        for category in categories:
            table.add_column(category, justify="right")
        for label, row in cells.items():
            table.add_row(
                label,
                *(
                    f"{_number(row[c].base_mean, 3)} / {_number(row[c].tuned_mean, 3)}"
                    for c in categories
                ),
            )
        console.print(table)


def run(args: argparse.Namespace) -> int:
    saliency_inputs = (args.results, args.prompts, args.ratings)
    given = [value is not None for value in saliency_inputs]
    if any(given) and not all(given):
        raise InputError(
            "Tables 1 and 2 need --results, --prompts and --ratings together.",
            "Give all three, or none of them to compute only --heads / --ffn tables.",
        )
    if not any(given) and args.heads is None and args.ffn is None:
        raise InputError(
            "No table asked for.",
            "Give --results, --prompts and --ratings (Tables 1 and 2), --heads DIR (Table 3) "
            "and/or --ffn DIR (Table 5).",
        )
    if args.general_verbs is not None and args.heads is None:
        raise InputError("--general-verbs is only used with --heads.", "Add --heads DIR.")

    output: dict = {}
    warnings: list[str] = []
    console = Console()
    tables = heads = ffn = None
    if all(given):
        from interpret_shift.methods.saliency.paper import compute_tables

        tables = compute_tables(args.results, args.prompts, args.ratings)
        output.update(tables.to_json())
    if args.heads is not None:
        from interpret_shift.methods.heads.paper import compute_head_table, read_verb_file

        general = None if args.general_verbs is None else read_verb_file(args.general_verbs)
        heads = compute_head_table(args.heads, general)
        warnings += heads.warnings
        output["table3"] = heads.to_json()
    if args.ffn is not None:
        from interpret_shift.methods.ffn.paper import compute_ffn_tables

        ffn = compute_ffn_tables(args.ffn)
        warnings += ffn.warnings
        output["table5"] = ffn.to_json()

    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(output))
        return 0
    if tables is not None:
        _render(tables, console)
    if heads is not None:
        _render_heads(heads, console)
    if ffn is not None:
        _render_ffn(ffn, console)
    return 0
