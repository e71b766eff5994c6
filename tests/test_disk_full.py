"""A full disk mid-run: one clear error (exit 2, no traceback), finished records kept, and
the rerun resumes. The disk is simulated: the third record write fails with ENOSPC."""

from __future__ import annotations

import errno

import safetensors.numpy

from interpret_shift.cli import main
from interpret_shift.core import records


def test_a_full_disk_stops_cleanly_and_the_rerun_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    command = ["explain", "demo:tuned", "--out", str(out), "--explainers", "ffn",
               "--set", "ffn.components=4", "--set", "ffn.top_k=3"]  # fmt: skip
    real_save, writes = safetensors.numpy.save_file, []

    def full_after_two(arrays, path, *args, **kwargs):
        if len(writes) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        writes.append(path)
        return real_save(arrays, path, *args, **kwargs)

    monkeypatch.setattr(records, "save_file", full_after_two)
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "No space left on device" in err and "Free some space" in err
    assert "Traceback" not in err
    folder = out / "records" / "ffn" / "tuned"
    kept = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert len(kept) == 2  # the two finished records, whole
    assert not list(folder.glob(".*.tmp"))  # no partial file left behind

    monkeypatch.setattr(records, "save_file", real_save)
    assert main(command) == 0
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.json")}
    assert len(after) == 4  # the demo model has four layers
    assert all(after[name] == stamp for name, stamp in kept.items())  # not recomputed
