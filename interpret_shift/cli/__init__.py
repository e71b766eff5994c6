"""The ``interpret-shift`` command line: one module per subcommand, each with ``register``.

Streams: results and summary tables go to stdout; progress, notices and errors to stderr.
Every user mistake ends in one paragraph (what is wrong, what to do) and exit code 2;
``--debug`` shows the traceback instead. Library noise (deprecation warnings, loading bars)
is silenced unless ``--verbose``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import warnings

from rich.console import Console
from rich.text import Text

from interpret_shift.errors import InterpretShiftError

# Subcommand modules, in the order `--help` lists them. Each defines
# ``register(subparsers)`` and sets ``func(args) -> int`` on its parser.
COMMANDS = ["compare", "report", "hookpoints", "plugins", "paper_tables"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="interpret-shift",
        description="What instruction tuning changes inside a causal LM.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser.add_argument(
        "--verbose", action="store_true", help="show library warnings and loading progress"
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"interpret_shift.cli.{name}").register(subparsers)
    return parser


def quiet_libraries() -> None:
    """Silence what libraries print on every run: warnings, loading and conversion bars."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"(transformers|torch)\.")


def os_error(error: OSError) -> InterpretShiftError:
    """An operating-system error (disk full, permission, read-only, ...) as one paragraph."""
    where = f" ({error.filename})" if error.filename else ""
    fixes = {
        errno.ENOSPC: "Free some space (or choose --out on another disk) and rerun: "
        "finished results are kept.",
        errno.EACCES: "Choose a folder you can write to, or change its permissions.",
        errno.EPERM: "Choose a folder you can write to, or change its permissions.",
        errno.EROFS: "The file system is read-only: choose --out on a writable one.",
        errno.ENOTDIR: "A part of the path is a file, not a folder: check the path.",
        errno.EISDIR: "The path is a folder where a file was expected: check the path.",
        errno.ENOENT: "Check the path.",
    }
    return InterpretShiftError(
        f"{error.strerror or error}{where}.",
        fixes.get(error.errno or 0, "Check the path and the disk, then rerun."),
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet_libraries()
    try:
        return int(args.func(args) or 0)
    except (InterpretShiftError, OSError) as error:
        if args.debug:
            raise
        if isinstance(error, OSError):
            error = os_error(error)
        console = Console(stderr=True)
        console.print(Text.assemble(("error: ", "bold red"), error.what), soft_wrap=True)
        if error.fix:
            console.print(Text(error.fix), soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; finished results are kept, rerun to resume")
        return 130
