"""Readers for the files released with the paper (arXiv:2310.00492) and its Tables 1 and 2.

The paper's files are read in place and in their own formats: two TSV files with ``/n``
escapes, and one pickle per prompt and model holding SentencePiece tokens and a quantized
attribution matrix. Pickles are opened with a restricted unpickler that can only rebuild
numpy arrays and builtin containers, so no code in a file ever runs.
"""

from __future__ import annotations

import builtins
import os
import pickle
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from interpret_shift.core.prompts import PromptRecord, Span, token_mask
from interpret_shift.errors import InterpretShiftError
from interpret_shift.methods.saliency.analysis import (
    WelchResult,
    density,
    instruction_score,
    welch_greater,
)

GROUPS = ("self-instruct", "lima", "mt-bench")
_GROUP_PREFIXES = (
    ("user_oriented_task", "self-instruct"),
    ("lima_author", "lima"),
    ("mtbench_", "mt-bench"),
)
BASE_DIR, TUNED_DIR = "ifa_llama_7b", "ifa_vicuna_7b"
RATED_MODEL = "vicuna_7B"
MIN_RESPONSE_TOKENS = 5

# A sentence ends after . ! ? or : followed by white space (the paper's sentence splitter).
_SENTENCE_END = re.compile(r"(?<=[.!?:])\s+")
_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_SPECIAL_PIECES = frozenset({"<s>", "</s>", "<unk>", "<pad>"})


# --- the TSV files ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FinalRow:
    """One row of FinalDataset.tsv; ``annotation`` is instruction spans ``&&&`` context spans."""

    id: str
    prompt: str
    response: str
    annotation: str


@dataclass(frozen=True)
class RatingRow:
    """One row of AnnotatedDataset.tsv: a model's response to a prompt and its 0..4 rating.

    Unrated rows carry -1, as in the file.
    """

    id: str
    model: str
    response: str
    rating: int


def decode_field(text: str) -> str:
    """Undo the paper's TSV escaping: ``/t`` and ``/n``, surrounding quotes and doubled quotes."""
    text = text.replace("/t", "\t").replace("/n", "\n")
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        text = text[1:-1]
    return text.replace('""', '"')


def _read_tsv(path: Path, columns: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """Rows of a paper TSV as (line number, {column: decoded field}) after checking the header."""
    if not path.is_file():
        raise InterpretShiftError(
            f"{path} does not exist.",
            f"Expected the paper's tab-separated file with columns {', '.join(columns)}.",
        )
    lines = path.read_text(encoding="utf-8").split("\n")
    header = lines[0].rstrip("\r").split("\t")
    missing = [name for name in columns if name not in header]
    if missing:
        raise InterpretShiftError(
            f"{path} line 1: the header lacks column(s) {', '.join(missing)}.",
            f"Expected the paper's tab-separated file with columns {', '.join(columns)}.",
        )
    rows = []
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.rstrip("\r").split("\t")
        if len(fields) < len(header):
            raise InterpretShiftError(
                f"{path} line {number}: {len(fields)} fields, the header has {len(header)}.",
                "Tabs inside fields must be written as /t.",
            )
        rows.append((number, {name: decode_field(fields[header.index(name)]) for name in columns}))
    return rows


def read_final_dataset(path: str | os.PathLike[str]) -> list[FinalRow]:
    """Read FinalDataset.tsv (columns ID, Prompt, Response, Instruct&Context)."""
    path = Path(path)
    rows = _read_tsv(path, ("ID", "Prompt", "Response", "Instruct&Context"))
    seen: set[str] = set()
    result = []
    for number, row in rows:
        if row["ID"] in seen:
            raise InterpretShiftError(f"{path} line {number}: duplicate ID {row['ID']!r}.")
        seen.add(row["ID"])
        result.append(FinalRow(row["ID"], row["Prompt"], row["Response"], row["Instruct&Context"]))
    return result


def read_annotated_dataset(path: str | os.PathLike[str]) -> list[RatingRow]:
    """Read AnnotatedDataset.tsv (File = ``<ID>.pkl``, Model, ..., Response, Rating)."""
    path = Path(path)
    result = []
    for number, row in _read_tsv(path, ("File", "Model", "Response", "Rating")):
        try:
            rating = int(float(row["Rating"]))
        except ValueError:
            raise InterpretShiftError(
                f"{path} line {number}: Rating {row['Rating']!r} is not a number."
            ) from None
        identifier = row["File"].removesuffix(".pkl")
        result.append(RatingRow(identifier, row["Model"], row["Response"], rating))
    return result


# --- what the annotations mark -----------------------------------------------------------------


def group_of(identifier: str) -> str | None:
    """The dataset group of a paper ID, from its prefix; None for an unknown prefix."""
    for prefix, group in _GROUP_PREFIXES:
        if identifier.startswith(prefix):
            return group
    return None


def sentence_spans(text: str) -> list[Span]:
    """Character spans of the sentences of ``text``: lines first, then the sentence rule."""
    spans: list[Span] = []
    line_start = 0
    for line in text.split("\n"):
        start = 0
        for match in _SENTENCE_END.finditer(line):
            spans.append((line_start + start, line_start + match.start()))
            start = match.end()
        spans.append((line_start + start, line_start + len(line)))
        line_start += len(line) + 1
    return spans


def _strip_span(text: str, start: int, end: int) -> Span:
    """Shrink a span so it neither starts nor ends with white space."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def annotation_pieces(annotation: str) -> list[str]:
    """The instruction pieces of an annotation: before ``&&&``, split on ``|||``, lines, sentences.

    Pieces are kept verbatim, as the paper does; an empty piece is contained in every
    sentence and so marks the first one (a quirk of the paper's rule, kept for fidelity).
    """
    instruction = annotation.split("&&&")[0]
    fragments = instruction.replace("\n", "|||").split("|||")
    return [piece for fragment in fragments for piece in _SENTENCE_END.split(fragment)]


def instruction_spans(prompt: str, annotation: str) -> list[Span]:
    """Character spans of the prompt sentences the paper's annotation marks as instructions.

    Each piece marks the first prompt sentence containing it. A leading ``Input:`` is not part
    of the marked sentence and a bare ``Output:`` is never marked. Raises ValueError when a
    piece is in no sentence.
    """
    sentences = sentence_spans(prompt)
    marked: set[Span] = set()
    for piece in annotation_pieces(annotation):
        for start, end in sentences:
            if piece in prompt[start:end]:
                if prompt.startswith("Input:", start, end):
                    start += len("Input:")
                span = _strip_span(prompt, start, end)
                if prompt[span[0] : span[1]] != "Output:" and span[0] < span[1]:
                    marked.add(span)
                break
        else:
            raise ValueError(f"annotation piece {piece!r} is in no sentence of the prompt")
    return sorted(marked)


def context_spans(prompt: str, annotation: str) -> list[Span]:
    """Character spans of the context fragments (after ``&&&``), found verbatim in the prompt.

    The paper's analyses do not use context; fragments not found in the prompt are skipped.
    """
    if "&&&" not in annotation:
        return []
    spans = set()
    for fragment in annotation.split("&&&", 1)[1].replace("\n", "|||").split("|||"):
        fragment = fragment.strip()
        where = prompt.find(fragment) if fragment else -1
        if where >= 0:
            spans.add((where, where + len(fragment)))
    return sorted(spans)


def _row_spans(row: FinalRow, prompt: str | None = None) -> list[Span]:
    try:
        return instruction_spans(row.prompt if prompt is None else prompt, row.annotation)
    except ValueError as error:
        raise InterpretShiftError(
            f"FinalDataset row {row.id}: {error}.",
            "Each instruction piece must appear in the prompt.",
        ) from None


def final_dataset_records(
    rows: Iterable[FinalRow], ratings: Mapping[str, RatingRow] | None = None
) -> list[PromptRecord]:
    """FinalDataset rows as PromptRecords; the dataset's Response is the reference answer.

    With ``ratings`` (ID -> one model's RatingRow) the model's response and rating are filled
    in; unrated rows (rating -1) keep rating None.
    """
    records = []
    for row in rows:
        rated = (ratings or {}).get(row.id)
        records.append(
            PromptRecord(
                id=row.id,
                prompt=row.prompt,
                response=rated.response if rated else None,
                reference=row.response,
                rating=rated.rating if rated and 0 <= rated.rating <= 4 else None,
                group=group_of(row.id),
                instruction_spans=tuple(_row_spans(row)),
                context_spans=tuple(context_spans(row.prompt, row.annotation)),
            )
        )
    return records


# --- the attribution pickles -------------------------------------------------------------------


try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct, scalar
    from numpy._core.numeric import _frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct, scalar
    from numpy.core.numeric import _frombuffer


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """``_codecs.encode`` as pickle protocols 0-2 use it for bytes; latin-1 only."""
    if encoding.replace("_", "-").lower() not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin-1")


# Everything numpy's array pickling needs under any protocol, and the builtin containers.
_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _package in ("numpy.core", "numpy._core"):
    _ALLOWED_GLOBALS[(f"{_package}.multiarray", "_reconstruct")] = _reconstruct
    _ALLOWED_GLOBALS[(f"{_package}.multiarray", "scalar")] = scalar
    _ALLOWED_GLOBALS[(f"{_package}.numeric", "_frombuffer")] = _frombuffer
_ALLOWED_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "int", "float")
_ALLOWED_GLOBALS.update({("builtins", name): getattr(builtins, name) for name in _ALLOWED_BUILTINS})


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and builtin containers only; any other class is refused.

    A pickle can name any importable callable and have it called while loading; admitting
    only array reconstruction means nothing in the file can run code.
    """

    def find_class(self, module: str, name: str) -> Any:
        if module == "__builtin__":  # protocols 0-2 use the Python 2 name
            module = "builtins"
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: only numpy arrays and builtin containers "
                "are allowed in attribution files"
            ) from None


@dataclass(frozen=True)
class Attribution:
    """One released attribution: prompt and response tokens and their (prompt x response) levels."""

    id: str
    input: tuple[str, ...]
    output: tuple[str, ...]
    explain: np.ndarray
    reference: str = ""


def load_attribution(path: str | os.PathLike[str]) -> Attribution:
    """Read one of the paper's attribution pickles safely and check its shape."""
    path = Path(path)
    try:
        with path.open("rb") as file:
            data = RestrictedUnpickler(file).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise InterpretShiftError(f"{path}: cannot read the attribution pickle: {error}.") from None
    keys = ("ID", "Input", "Output", "Explain")
    if not isinstance(data, dict) or any(key not in data for key in keys):
        raise InterpretShiftError(f"{path}: expected a dict with keys {', '.join(keys)}.")
    explain = np.asarray(data["Explain"], dtype=np.float64)
    inputs, outputs = tuple(data["Input"]), tuple(data["Output"])
    if explain.size == 0:
        explain = explain.reshape(len(inputs), len(outputs))
    if explain.shape != (len(inputs), len(outputs)):
        raise InterpretShiftError(
            f"{path}: Explain has shape {explain.shape}, expected "
            f"({len(inputs)} prompt tokens, {len(outputs)} response tokens)."
        )
    reference = data.get("Reference") if isinstance(data.get("Reference"), str) else ""
    return Attribution(str(data["ID"]), inputs, outputs, explain, reference)


def pieces_to_text(pieces: Iterable[str]) -> tuple[str, list[Span]]:
    """Rebuild the text of SentencePiece pieces with each piece's character offsets.

    ``▁`` is a space, ``<0xNN>`` a byte (several make one multi-byte character, which all of
    them then cover), special pieces have empty offsets. The leading space SentencePiece adds
    (its dummy prefix) is dropped so offsets index the original text.
    """
    chunks = []
    for piece in pieces:
        byte = _BYTE_PIECE.fullmatch(piece)
        if byte:
            chunks.append(bytes([int(byte.group(1), 16)]))
        elif piece in _SPECIAL_PIECES:
            chunks.append(b"")
        else:
            chunks.append(piece.replace("\u2581", " ").encode("utf-8"))
    raw = b"".join(chunks)
    # surrogateescape keeps stray bytes as one character each, so byte positions stay mappable.
    text = raw.decode("utf-8", errors="surrogateescape")
    char_of_byte = np.repeat(
        np.arange(len(text)), [len(char.encode("utf-8", "surrogateescape")) for char in text]
    )
    offsets: list[Span] = []
    position = 0
    for chunk in chunks:
        if chunk:
            start = int(char_of_byte[position])
            offsets.append((start, int(char_of_byte[position + len(chunk) - 1]) + 1))
        else:
            offsets.append((0, 0))
        position += len(chunk)
    if text.startswith(" "):
        text = text[1:]
        offsets = [
            (max(start - 1, 0), max(end - 1, 0)) if end else (0, 0) for start, end in offsets
        ]
    return text, offsets


def attribution_instruction_mask(attribution: Attribution, annotation: str) -> np.ndarray:
    """Which prompt tokens of an attribution lie in the annotated instruction sentences."""
    text, offsets = pieces_to_text(attribution.input)
    try:
        spans = instruction_spans(text, annotation)
    except ValueError as error:
        raise InterpretShiftError(f"attribution {attribution.id}: {error}.") from None
    return token_mask(offsets, spans)


def attribution_score(
    attribution: Attribution, annotation: str, threshold: int = 7, p: float = 4
) -> float:
    """The instruction score of one attribution; 0 for an empty response (as the paper does).

    The released matrices are already quantized to levels 0..10, so only the threshold is
    applied here; quantizing again could move a level through float rounding.
    """
    if not attribution.output:
        return 0.0
    levels = np.where(attribution.explain > threshold, attribution.explain, 0.0)
    mask = attribution_instruction_mask(attribution, annotation)
    return instruction_score(density(levels, p), mask)


# --- Tables 1 and 2 ----------------------------------------------------------------------------


@dataclass(frozen=True)
class PaperTables:
    """Table 1 (a = followed, b = unfollowed) and Table 2 (a = tuned, b = base) per group."""

    table1: dict[str, WelchResult]
    table2: dict[str, WelchResult]

    def to_json(self) -> dict[str, Any]:
        """The tables as plain JSON values; NaN (too few samples) becomes null."""

        def number(value: float) -> float | None:
            return None if np.isnan(value) else value

        return {
            "table1": {
                group: {
                    "followed": number(r.mean_a),
                    "unfollowed": number(r.mean_b),
                    "n_followed": r.n_a,
                    "n_unfollowed": r.n_b,
                    "p": number(r.p),
                }
                for group, r in self.table1.items()
            },
            "table2": {
                group: {
                    "base": number(r.mean_b),
                    "tuned": number(r.mean_a),
                    "n": r.n_a,
                    "p": number(r.p),
                }
                for group, r in self.table2.items()
            },
        }


def _results_folder(results: Path, name: str) -> Path:
    folder = results / name
    if not folder.is_dir():
        raise InterpretShiftError(
            f"{folder} does not exist.",
            f"--results must hold the paper's folders {BASE_DIR}/ and {TUNED_DIR}/, "
            "each with one <ID>.pkl attribution file per prompt.",
        )
    return folder


def _scores(
    folder: Path, rows: Mapping[str, FinalRow], threshold: int, p: float
) -> dict[str, tuple[int, float]]:
    """ID -> (response tokens, score) for every pickle in ``folder`` whose ID is in the dataset."""
    scores = {}
    for path in sorted(folder.glob("*.pkl")):
        row = rows.get(path.stem)
        if row is not None:
            attribution = load_attribution(path)
            score = attribution_score(attribution, row.annotation, threshold, p)
            scores[row.id] = (len(attribution.output), score)
    return scores


def _by_group(samples: Iterable[tuple[str, str, float]]) -> dict[str, dict[str, list[float]]]:
    """(ID, side, score) -> {group: {side: scores}}, in the order of GROUPS."""
    grouped: dict[str, dict[str, list[float]]] = {}
    for identifier, side, score in samples:
        group = group_of(identifier)
        if group is not None:
            grouped.setdefault(group, {}).setdefault(side, []).append(score)
    return {group: grouped[group] for group in GROUPS if group in grouped}


def compute_tables(
    results: str | os.PathLike[str],
    final_dataset: str | os.PathLike[str],
    ratings: str | os.PathLike[str],
    threshold: int = 7,
    p: float = 4,
) -> PaperTables:
    """The paper's Tables 1 and 2 from its released files.

    Table 1: Vicuna's responses rated 1 (unfollowed) against >= 2 (followed); rating 0,
    unrated rows and responses under 5 tokens are left out. Table 2: every prompt scored for
    LLaMA (base) and Vicuna (tuned), n prompts per model. Both are one-sided Welch tests per
    dataset group.
    """
    results = Path(results)
    base_folder = _results_folder(results, BASE_DIR)
    tuned_folder = _results_folder(results, TUNED_DIR)
    rows = {row.id: row for row in read_final_dataset(final_dataset)}
    rated = read_annotated_dataset(ratings)
    base = _scores(base_folder, rows, threshold, p)
    tuned = _scores(tuned_folder, rows, threshold, p)

    table1_samples = []
    for row in rated:
        if row.model != RATED_MODEL or row.rating < 1 or row.id not in tuned:
            continue
        response_tokens, score = tuned[row.id]
        if response_tokens >= MIN_RESPONSE_TOKENS:
            table1_samples.append((row.id, "followed" if row.rating >= 2 else "unfollowed", score))
    # Table 2 compares the prompts both models were explained on, so n is one number.
    both = [identifier for identifier in tuned if identifier in base]
    table2_samples = [(i, "base", base[i][1]) for i in both]
    table2_samples += [(i, "tuned", tuned[i][1]) for i in both]

    table1 = {
        group: welch_greater(sides.get("followed", []), sides.get("unfollowed", []))
        for group, sides in _by_group(table1_samples).items()
    }
    table2 = {
        group: welch_greater(sides.get("tuned", []), sides.get("base", []))
        for group, sides in _by_group(table2_samples).items()
    }
    return PaperTables(table1, table2)
