"""One error type for everything a user can get wrong: it says what is wrong and what to do."""

from __future__ import annotations


class InterpretShiftError(Exception):
    """A user-facing error: ``what`` went wrong, ``fix`` says what to do about it."""

    def __init__(self, what: str, fix: str = "") -> None:
        self.what, self.fix = what.strip(), fix.strip()
        super().__init__(f"{self.what} {self.fix}".strip())
