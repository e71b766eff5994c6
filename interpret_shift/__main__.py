"""``python -m interpret_shift``: the ``interpret-shift`` command, also under torchrun
(``torchrun --nproc-per-node N -m interpret_shift compare ...``, docs/scale.md)."""

from interpret_shift.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
