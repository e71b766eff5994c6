"""The error types: each says what went wrong and what to do about it.

Everything a user can get wrong raises a subclass of :class:`InterpretShiftError`; the
command line prints ``what`` and ``fix`` and exits with code 2. Callers and tests match
on the subclass, never on the message text.
"""

from __future__ import annotations


class InterpretShiftError(Exception):
    """A user-facing error: ``what`` went wrong, ``fix`` says what to do about it."""

    def __init__(self, what: str, fix: str = "") -> None:
        self.what, self.fix = what.strip(), fix.strip()
        super().__init__(f"{self.what} {self.fix}".strip())


class ModelLoadError(InterpretShiftError):
    """A model, tokenizer, checkpoint or adapter could not be loaded or does not fit."""


class HookPointError(InterpretShiftError):
    """A canonical hook point does not exist on this model, or a hook misbehaved."""


class PluginError(InterpretShiftError):
    """A plugin failed to load, registers something invalid, or names an unknown thing."""


class RecordError(InterpretShiftError):
    """A record is missing, damaged, stale, of the wrong shape or not pairable."""


class InputError(InterpretShiftError):
    """Prompts, options or other user input are malformed."""
