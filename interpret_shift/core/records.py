"""Explanation records: arrays in safetensors, metadata in JSON, written atomically.

A record ``NAME`` is two files, ``NAME.safetensors`` and ``NAME.json``. The JSON is
written last and carries the arrays' SHA-256, so a record whose JSON exists is whole;
a run interrupted between the two leaves no JSON and is simply recomputed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html import escape
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from interpret_shift.core.files import atomic_write, atomic_write_text, json_safe
from interpret_shift.errors import RecordError

#: Version 2 named the explainer ``explainer`` (version 1 called it ``kind``).
FORMAT_VERSION = 2


@dataclass
class Explanation:
    """One explainer's result for one item (a prompt, a layer, ...) of one model.

    ``explainer`` is the name of the explainer that wrote it, ``data_kind`` what the diff
    engine compares it as (see :mod:`interpret_shift.core.views`), ``arrays`` numeric data,
    ``meta`` JSON-able data (provenance, config, words, tokens).
    """

    explainer: str
    data_kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        json_path, tensors_path = record_files(path)
        arrays = {name: np.ascontiguousarray(array) for name, array in self.arrays.items()}
        atomic_write(tensors_path, lambda tmp: save_file(arrays, tmp))
        header = {
            "format_version": FORMAT_VERSION,
            "explainer": self.explainer,
            "data_kind": self.data_kind,
            "arrays_sha256": _sha256(tensors_path),
            "meta": self.meta,
        }
        text = json.dumps(json_safe(header), indent=1, sort_keys=True, allow_nan=False)
        atomic_write_text(json_path, text)

    def _repr_html_(self) -> str:
        """A notebook view: which explainer, the arrays' shapes and the metadata fields."""
        rows = "".join(
            f"<tr><td><code>{escape(name)}</code></td><td>{escape(str(array.shape))}</td>"
            f"<td>{escape(str(array.dtype))}</td></tr>"
            for name, array in self.arrays.items()
        )
        fields = ", ".join(f"<code>{escape(key)}</code>" for key in sorted(self.meta))
        return (
            f"<div><strong>{escape(self.explainer)}</strong> record ({escape(self.data_kind)})"
            f"<table><tr><th>array</th><th>shape</th><th>dtype</th></tr>{rows}</table>"
            f"<p>metadata: {fields or '(none)'}</p></div>"
        )

    @classmethod
    def load(cls, path: str | Path) -> Explanation:
        """Read a record; a missing, damaged or foreign-format one raises :class:`RecordError`."""
        json_path, tensors_path = record_files(path)
        if not json_path.exists() or not tensors_path.exists():
            raise RecordError(
                f"No explanation record at {path} (expected {json_path.name} and "
                f"{tensors_path.name}).",
                "Check the path, or rerun the explainer to write it.",
            )
        try:
            header = json.loads(json_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise RecordError(
                f"{json_path} is not valid JSON ({error}).",
                "The record is damaged; delete both files and rerun to rebuild it.",
            ) from error
        if not isinstance(header, dict):
            raise RecordError(
                f"{json_path} is not a record (a JSON {type(header).__name__}, not an object).",
                "The record is damaged; delete both files and rerun to rebuild it.",
            )
        if header.get("format_version") != FORMAT_VERSION:
            raise RecordError(
                f"{json_path} is a record of format {header.get('format_version')!r}; this "
                f"version of interpret-shift reads format {FORMAT_VERSION}.",
                "Rerun with --force (or into a new folder) to rewrite it.",
            )
        missing = [name for name, kind in _HEADER.items() if not isinstance(header.get(name), kind)]
        if missing:
            raise RecordError(
                f"{json_path} lacks the record field {missing[0]!r} (or it has the wrong type).",
                "The record is damaged; delete both files and rerun to rebuild it.",
            )
        if header["arrays_sha256"] != _sha256(tensors_path):
            raise RecordError(
                f"{tensors_path} does not match its record {json_path.name} (checksum differs).",
                "The record is damaged or was edited; delete both files and rerun to rebuild it.",
            )
        try:
            arrays = load_file(tensors_path)
        except Exception as error:  # safetensors raises its own error types
            raise RecordError(
                f"{tensors_path} cannot be read ({error}).",
                "The record is damaged; delete both files and rerun to rebuild it.",
            ) from error
        return cls(header["explainer"], header["data_kind"], dict(arrays), header["meta"])


#: The fields of a record's JSON besides ``format_version``, and their types.
_HEADER = {"explainer": str, "data_kind": str, "arrays_sha256": str, "meta": dict}


class RecordStore:
    """A folder of records keyed by item; what exists is done (resume skips it).

    File names are injective in the key: a key that is a safe file name (lower-case
    letters, digits, ``.``, ``_``, ``-``) is its own name; any other key gets a readable
    stem and ``~`` plus 8 hex digits of the key's SHA-256 (``q/1`` -> ``q_1~…``). The exact
    key is kept in the record's ``meta["key"]``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / record_name(key)

    def __contains__(self, key: str) -> bool:
        return record_files(self.path(key))[0].exists()

    def save(self, key: str, record: Explanation) -> None:
        record.meta["key"] = key
        record.save(self.path(key))

    def load(self, key: str) -> Explanation:
        """The record of ``key``; :class:`RecordError` if it is missing, damaged or another key's."""
        record = Explanation.load(self.path(key))
        if record.meta.get("key", key) != key:
            raise RecordError(
                f"{self.path(key)} holds the record of key {record.meta.get('key')!r}, "
                f"not {key!r}.",
                "Delete the file (it was written under another naming) and rerun.",
            )
        return record

    def keys(self) -> list[str]:
        """The exact keys of the records in the folder, sorted.

        A JSON file whose name is not its key's (a stray, or one written under an older
        naming) and one that cannot be read are left out; ``load`` reports the latter.
        """
        if not self.folder.exists():
            return []
        keys = []
        for path in self.folder.glob("*.json"):
            try:
                key = json.loads(path.read_text(encoding="utf-8"))["meta"].get("key", path.stem)
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
            if isinstance(key, str) and record_name(key) == path.stem:
                keys.append(key)
        return sorted(keys)

    def __iter__(self) -> Iterator[tuple[str, Explanation]]:
        for key in self.keys():
            yield key, self.load(key)


def record_files(path: str | Path) -> tuple[Path, Path]:
    """The JSON and safetensors files of the record at ``path`` (given with or without suffix)."""
    stem = str(path).removesuffix(".json").removesuffix(".safetensors")
    return Path(stem + ".json"), Path(stem + ".safetensors")


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for package in ("interpret-shift", "torch", "transformers", "numpy", "safetensors"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: Keys that are their own file name: lower case (so that case-insensitive file systems
#: keep them apart), no leading dot, no ``~`` (which marks a hashed name).
_SAFE_NAME = re.compile(r"[a-z0-9_-][a-z0-9._-]{0,119}")
_SUFFIXES = (".json", ".safetensors")


def record_name(key: str) -> str:
    """The file stem of ``key``'s record; distinct keys get distinct stems (see RecordStore)."""
    if _SAFE_NAME.fullmatch(key) and not key.endswith(_SUFFIXES):
        return key
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key).lstrip(".")[:100]
    return f"{stem}~{hashlib.sha256(key.encode('utf-8')).hexdigest()[:8]}"
