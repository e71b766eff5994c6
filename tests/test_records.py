"""Explanation records: round trip, atomic writes, damage detection, resume."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from tiny import tiny_model

from interpret_shift.core.explainer import Explainer, run_explainer
from interpret_shift.core.records import Explanation, RecordStore, record_files
from interpret_shift.core.subject import Subject
from interpret_shift.errors import InterpretShiftError


def test_round_trip_keeps_arrays_and_metadata(tmp_path):
    record = Explanation(
        "demo",
        "unit_scalars",
        {"values": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array([3, 1])},
        {"words": ["a", "b"], "score": np.float32(0.5)},
    )
    record.save(tmp_path / "r")
    loaded = Explanation.load(tmp_path / "r")
    assert loaded.explainer == "demo" and loaded.data_kind == "unit_scalars"
    np.testing.assert_array_equal(loaded.arrays["values"], record.arrays["values"])
    assert loaded.arrays["ids"].dtype == np.int64
    assert loaded.meta == {"words": ["a", "b"], "score": 0.5}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.safetensors"]


def test_a_damaged_record_is_refused(tmp_path):
    Explanation("demo", "unit_scalars", {"v": np.ones(3, np.float32)}).save(tmp_path / "r")
    Explanation("demo", "unit_scalars", {"v": np.zeros(3, np.float32)}).save(tmp_path / "s")
    (tmp_path / "r.safetensors").write_bytes((tmp_path / "s.safetensors").read_bytes())
    with pytest.raises(InterpretShiftError, match="checksum"):
        Explanation.load(tmp_path / "r")
    with pytest.raises(InterpretShiftError, match="No explanation record"):
        Explanation.load(tmp_path / "missing")


def test_a_failed_write_leaves_no_partial_file(tmp_path):
    record = Explanation("demo", "unit_scalars", meta={"bad": object()})
    with pytest.raises(TypeError):
        record.save(tmp_path / "r")
    assert not (tmp_path / "r.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


class Counting(Explainer):
    """Counts its calls; can be told to fail at one item."""

    name = "counting"
    data_kind = "unit_scalars"

    @dataclasses.dataclass
    class Config:
        scale: float = 1.0

    calls: list[str] = []
    fail_at = ""  # not a config option: an interruption must not change what is computed

    def items(self, subject, prompts):
        return [f"layer.{i}" for i in range(3)]

    def explain(self, subject, keys, prompts):
        for key in keys:
            if key == Counting.fail_at:
                raise KeyboardInterrupt
            Counting.calls.append(key)
            yield (
                key,
                Explanation(
                    self.name, self.data_kind, {"v": np.full(2, self.config.scale, np.float32)}
                ),
            )


def test_an_interrupted_run_resumes_without_recomputing(tmp_path):
    subject = Subject.from_model(tiny_model("gpt2"), source="tiny")
    store = RecordStore(tmp_path)
    Counting.calls, Counting.fail_at = [], "layer.2"
    with pytest.raises(KeyboardInterrupt):
        run_explainer(Counting(), subject, store=store)
    Counting.fail_at = ""
    assert store.keys() == ["layer.0", "layer.1"]
    first_write = record_files(store.path("layer.0"))[0].stat().st_mtime_ns
    results = run_explainer(Counting(), subject, store=store)
    assert Counting.calls == ["layer.0", "layer.1", "layer.2"]
    assert list(results) == ["layer.0", "layer.1", "layer.2"]
    assert record_files(store.path("layer.0"))[0].stat().st_mtime_ns == first_write
    meta = json.loads(record_files(store.path("layer.2"))[0].read_text())["meta"]
    assert meta["explainer"] == "counting" and meta["subject"]["adapter"] == "gpt2"
    assert {"torch", "transformers", "python"} <= set(meta["versions"])


def test_records_of_another_config_are_not_reused(tmp_path):
    subject = Subject.from_model(tiny_model("gpt2"), source="tiny")
    store = RecordStore(tmp_path)
    run_explainer(Counting(), subject, store=store)
    with pytest.raises(InterpretShiftError, match="different config"):
        run_explainer(Counting(scale=2.0), subject, store=store)
    Counting.calls = []
    run_explainer(Counting(scale=2.0), subject, store=store, force=True)
    assert Counting.calls == ["layer.0", "layer.1", "layer.2"]
    assert store.load("layer.1").arrays["v"][0] == 2.0


def test_unknown_explainer_options_are_named():
    with pytest.raises(InterpretShiftError, match="no option 'scal'"):
        Counting(scal=2.0)


def test_a_write_is_flushed_before_its_rename_and_the_folder_after(tmp_path, monkeypatch):
    import os
    import stat

    from interpret_shift.core.files import atomic_write_text

    target = tmp_path / "out.json"
    seen = []

    def spy(fd):
        info = os.fstat(fd)
        seen.append(("dir" if stat.S_ISDIR(info.st_mode) else "file", info.st_size,
                     target.exists()))  # fmt: skip

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write_text(target, "twelve bytes")
    assert seen == [("file", 12, False), ("dir", seen[1][1], True)]
    assert target.read_text() == "twelve bytes"
