"""A torchrun target for tests: the ``interpret-shift`` command, except that rank 1 dies
(``os._exit``, no cleanup, like a lost node) right after writing its first record."""

from __future__ import annotations

import os
import sys

from interpret_shift.cli import main
from interpret_shift.core.records import RecordStore

if os.environ.get("RANK") == "1":
    save = RecordStore.save

    def save_then_die(self, key, record):
        save(self, key, record)
        sys.stderr.write(f"dying-rank: rank 1 wrote {self.folder.name}/{key} and dies\n")
        sys.stderr.flush()
        os._exit(3)

    RecordStore.save = save_then_die

raise SystemExit(main(sys.argv[1:]))
