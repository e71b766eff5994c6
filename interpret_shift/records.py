"""Explanation records: arrays in safetensors, metadata in JSON, written atomically.

A record ``NAME`` is two files, ``NAME.safetensors`` and ``NAME.json``. The JSON is
written last and carries the arrays' SHA-256, so a record whose JSON exists is whole;
a run interrupted between the two leaves no JSON and is simply recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load_file, save_file

from interpret_shift.errors import InterpretShiftError

FORMAT_VERSION = 1

#: Data kinds the diff engine knows how to compare (plugins may add others).
DATA_KINDS = ("token_attribution", "ranked_words", "subspace", "unit_scalars")


@dataclass
class Explanation:
    """One explainer's result for one item (a prompt, a layer, ...) of one model.

    ``kind`` is the explainer's name, ``data_kind`` what the diff engine compares it as,
    ``arrays`` numeric data, ``meta`` JSON-able data (provenance, config, words, tokens).
    """

    kind: str
    data_kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        json_path, tensors_path = record_files(path)
        arrays = {name: np.ascontiguousarray(array) for name, array in self.arrays.items()}
        _atomic(tensors_path, lambda tmp: save_file(arrays, tmp))
        header = {
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "data_kind": self.data_kind,
            "arrays_sha256": _sha256(tensors_path),
            "meta": self.meta,
        }
        text = json.dumps(header, indent=1, sort_keys=True, default=_jsonable)
        _atomic(json_path, lambda tmp: Path(tmp).write_text(text))

    @classmethod
    def load(cls, path: str | Path) -> Explanation:
        json_path, tensors_path = record_files(path)
        if not json_path.exists() or not tensors_path.exists():
            raise InterpretShiftError(
                f"No explanation record at {path} (expected {json_path.name} and "
                f"{tensors_path.name}).",
                "Check the path, or rerun the explainer to write it.",
            )
        header = json.loads(json_path.read_text())
        if header.get("arrays_sha256") != _sha256(tensors_path):
            raise InterpretShiftError(
                f"{tensors_path} does not match its record {json_path.name} (checksum differs).",
                "The record is damaged or was edited; delete both files and rerun to rebuild it.",
            )
        arrays = load_file(tensors_path)
        return cls(header["kind"], header["data_kind"], dict(arrays), header["meta"])


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


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file so that readers see the old or the new content, never a part."""
    _atomic(Path(path), lambda tmp: Path(tmp).write_text(text))


def _atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _safe_name(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", key)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")
