"""Prompt sets: the JSONL format of docs/formats.md, and mapping character spans to tokens.

Instruction and context spans are character offsets into the prompt, so they survive any
tokenizer; ``token_mask`` maps them onto one tokenizer's tokens through its offset mapping.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from interpret_shift.errors import InterpretShiftError

Span = tuple[int, int]

FIELDS = (
    "id",
    "prompt",
    "response",
    "reference",
    "rating",
    "group",
    "instruction_spans",
    "context_spans",
)
FORMAT_HELP = "See docs/formats.md for the prompt-set format."


@dataclass(frozen=True)
class PromptRecord:
    """One prompt with its optional response, reference, rating, group and annotated spans."""

    id: str
    prompt: str
    response: str | None = None
    reference: str | None = None
    rating: int | None = None
    group: str | None = None
    instruction_spans: tuple[Span, ...] = ()
    context_spans: tuple[Span, ...] = ()

    def __post_init__(self) -> None:
        # Store spans as tuples of int pairs whatever sequence type the caller passed.
        for name in ("instruction_spans", "context_spans"):
            spans = tuple((int(start), int(end)) for start, end in getattr(self, name))
            object.__setattr__(self, name, spans)

    def to_json(self) -> dict[str, Any]:
        """The record as a JSON object, leaving out optional fields that are unset."""
        row: dict[str, Any] = {"id": self.id, "prompt": self.prompt}
        for name in ("response", "reference", "rating", "group"):
            if getattr(self, name) is not None:
                row[name] = getattr(self, name)
        for name in ("instruction_spans", "context_spans"):
            if getattr(self, name):
                row[name] = [list(span) for span in getattr(self, name)]
        return row


class _RowError(ValueError):
    """A problem with one field of one row; ``read_prompts`` adds the file and line."""

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(message)
        self.field, self.message = field, message


def _is_int(value: Any) -> bool:
    # JSON true/false arrive as bool, which is an int subclass; they are not numbers here.
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_str(row: dict[str, Any], name: str) -> str | None:
    value = row.get(name)
    if value is not None and not isinstance(value, str):
        raise _RowError(name, f"expected a string or null, got {type(value).__name__}")
    return value


def _spans(value: Any, name: str, prompt: str) -> tuple[Span, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _RowError(name, f"expected a list of [start, end], got {type(value).__name__}")
    spans = []
    for span in value:
        if not (isinstance(span, list) and len(span) == 2):
            raise _RowError(name, f"span {json.dumps(span)} is not a [start, end] pair")
        start, end = span
        if not (_is_int(start) and _is_int(end)):
            raise _RowError(name, f"span {json.dumps(span)} has offsets that are not integers")
        if end <= start:
            raise _RowError(name, f"span [{start}, {end}] ends before it starts")
        if start < 0 or end > len(prompt):
            raise _RowError(
                name,
                f"span [{start}, {end}] is out of range for a prompt of {len(prompt)} characters",
            )
        spans.append((start, end))
    return tuple(spans)


def _record(row: Any) -> PromptRecord:
    """Validate one decoded JSON row and build its record."""
    if not isinstance(row, dict):
        raise _RowError(None, f"expected a JSON object, got {type(row).__name__}")
    unknown = sorted(set(row) - set(FIELDS))
    if unknown:
        raise _RowError(unknown[0], f"unknown field (known fields: {', '.join(FIELDS)})")
    if "id" not in row:
        raise _RowError("id", "missing")
    if not isinstance(row["id"], str) or not row["id"]:
        raise _RowError("id", f"expected a non-empty string, got {json.dumps(row['id'])}")
    if "prompt" not in row:
        raise _RowError("prompt", "missing")
    prompt = row["prompt"]
    if not isinstance(prompt, str) or not prompt:
        raise _RowError("prompt", "expected a non-empty string")
    rating = row.get("rating")
    if rating is not None and not (_is_int(rating) and 0 <= rating <= 4):
        raise _RowError("rating", f"expected an integer 0..4 or null, got {json.dumps(rating)}")
    return PromptRecord(
        id=row["id"],
        prompt=prompt,
        response=_optional_str(row, "response"),
        reference=_optional_str(row, "reference"),
        rating=rating,
        group=_optional_str(row, "group"),
        instruction_spans=_spans(row.get("instruction_spans"), "instruction_spans", prompt),
        context_spans=_spans(row.get("context_spans"), "context_spans", prompt),
    )


def read_prompts(path: str | os.PathLike[str]) -> list[PromptRecord]:
    """Read a JSONL prompt set; the first bad row stops reading with its line, field and problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InterpretShiftError(f"prompt file {path} does not exist.", FORMAT_HELP) from None
    except UnicodeDecodeError as error:
        raise InterpretShiftError(f"{path} is not UTF-8 text: {error}.", FORMAT_HELP) from None
    records: list[PromptRecord] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path.name} line {number}"
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise InterpretShiftError(f"{where}: not valid JSON: {error}.", FORMAT_HELP) from None
        try:
            record = _record(row)
        except _RowError as error:
            field = f"field '{error.field}': " if error.field else ""
            raise InterpretShiftError(f"{where}: {field}{error.message}", FORMAT_HELP) from None
        if record.id in seen:
            first = seen[record.id]
            raise InterpretShiftError(
                f"{where}: field 'id': duplicate id {record.id!r} (first on line {first})",
                "Every id must be unique within the file.",
            )
        seen[record.id] = number
        records.append(record)
    return records


def write_prompts(path: str | os.PathLike[str], records: Iterable[PromptRecord]) -> None:
    """Write records as JSONL atomically, so a crash never leaves a half-written prompt set."""
    path = Path(path)
    lines = [json.dumps(record.to_json(), ensure_ascii=False) + "\n" for record in records]
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.writelines(lines)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def token_mask(offsets: Sequence[Sequence[int]] | np.ndarray, spans: Sequence[Span]) -> np.ndarray:
    """Boolean mask of the tokens whose character range overlaps any span.

    ``offsets`` are the tokenizer's (start, end) per token (``return_offsets_mapping=True``).
    Tokens with empty ranges, such as special tokens, are never in a span.
    """
    bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    mask = np.zeros(len(bounds), dtype=bool)
    if not len(spans) or not len(bounds):
        return mask
    span_array = np.asarray(spans, dtype=np.int64).reshape(-1, 2)
    starts, ends = bounds[:, :1], bounds[:, 1:]
    overlaps = (starts < span_array[:, 1]) & (span_array[:, 0] < ends) & (starts < ends)
    return overlaps.any(axis=1)


def render_chat(tokenizer, content: str) -> str:
    """The text a chat model reads for one user turn: its template, ready for the answer.
    A tokenizer without a chat template reads ``content`` as it is."""
    if not getattr(tokenizer, "chat_template", None):
        return content
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": content}], tokenize=False, add_generation_prompt=True
    )
