"""`python -m interpret_shift.cli`: the same as the `interpret-shift` command."""

from interpret_shift.cli import main

raise SystemExit(main())
