"""Writing results: one atomic writer, one JSON writer that turns undefined numbers to null.

Readers (a browser, a resumed run, another rank) see the old file or the new one, never a
part: every file is written to a temporary name in the same folder, flushed to disk, and
renamed; the folder is flushed after the rename, so a crash or power loss leaves the old
file or the whole new one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(tmp)
        _fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_file(path: str) -> None:
    """Flush a written file's data to disk (the writer may have closed it already)."""
    fd = os.open(path, os.O_RDWR if os.name == "nt" else os.O_RDONLY)  # Windows needs write
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename) to disk, where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # e.g. Windows: folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a UTF-8 text file atomically."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def json_safe(data: Any) -> Any:
    """JSON-able data: NaN and infinities become null, numpy scalars and arrays Python ones."""
    if isinstance(data, dict):
        return {str(key): json_safe(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [json_safe(value) for value in data]
    if isinstance(data, np.ndarray):
        return json_safe(data.tolist())
    if isinstance(data, np.generic):
        return json_safe(data.item())
    if isinstance(data, Path):
        return str(data)
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def write_json(path: str | Path, data: Any, *, sort_keys: bool = False) -> None:
    """Strict JSON (no NaN), indented, written atomically."""
    text = json.dumps(json_safe(data), indent=1, allow_nan=False, sort_keys=sort_keys)
    atomic_write_text(path, text)


#: Files up to this size are identified by their content, larger ones by size and time.
CONTENT_DIGEST_LIMIT = 64 * 2**20
_digests: dict[tuple[str, int, int], str] = {}


def path_identity(path: str | Path) -> dict[str, Any]:
    """What identifies an input file or folder, cheaply, for a record's input digest.

    A file up to :data:`CONTENT_DIGEST_LIMIT` bytes: the SHA-256 of its content (cached per
    process by path, size and modification time). A larger file: its size and modification
    time. A folder: the relative path, size and modification time of every file in it.
    """
    path = Path(path)
    if path.is_file():
        stat = path.stat()
        if stat.st_size > CONTENT_DIGEST_LIMIT:
            return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _digests:
            _digests[key] = hashlib.sha256(path.read_bytes()).hexdigest()
        return {"sha256": _digests[key]}
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file())
        listing = [[p.relative_to(path).as_posix(), p.stat().st_size, p.stat().st_mtime_ns]
                   for p in files]  # fmt: skip
        return {"files": listing}
    return {"missing": True}
