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
        if header.get("format_version") != FORMAT_VERSION:
            raise RecordError(
                f"{json_path} is a record of format {header.get('format_version')!r}; this "
                f"version of interpret-shift reads format {FORMAT_VERSION}.",
                "Rerun with --force (or into a new folder) to rewrite it.",
            )
        if header.get("arrays_sha256") != _sha256(tensors_path):
            raise RecordError(
                f"{tensors_path} does not match its record {json_path.name} (checksum differs).",
                "The record is damaged or was edited; delete both files and rerun to rebuild it.",
            )
        arrays = load_file(tensors_path)
        return cls(header["explainer"], header["data_kind"], dict(arrays), header["meta"])


class RecordStore:
    """A folder of records keyed by item; what exists is done (resume skips it)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / _safe_name(key)

    def __contains__(self, key: str) -> bool:
        return record_files(self.path(key))[0].exists()

    def save(self, key: str, record: Explanation) -> None:
        record.meta.setdefault("key", key)
        record.save(self.path(key))

    def load(self, key: str) -> Explanation:
        return Explanation.load(self.path(key))

    def keys(self) -> list[str]:
        if not self.folder.exists():
            return []
        return sorted(
            json.loads(p.read_text())["meta"].get("key", p.stem) for p in self.folder.glob("*.json")
        )

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


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)
