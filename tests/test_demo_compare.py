"""`compare` on the embedded pair: the planted shift is found, reported, and survives Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from interpret_shift import demo
from interpret_shift.cli import main
from interpret_shift.core.prompts import read_prompts

pytestmark = pytest.mark.xdist_group("demo")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["compare", "--base", "demo:base", "--tuned", "demo:tuned", "--out", str(out)]) == 0
    return out


def test_compare_finds_and_reports_the_planted_shift(demo_run):
    summary = json.loads((demo_run / "summary.json").read_text())
    saliency = next(c for c in summary["claims"] if c["section"] == "saliency")
    assert saliency["shift_found"] and saliency["p"] < 0.01
    scores = json.loads((demo_run / "diff" / "saliency.json").read_text())["instruction-score"]
    assert scores["overall"]["mean_tuned"] > scores["overall"]["mean_base"]
    page = (demo_run / "report.html").read_text()
    assert "relies more on the instruction words" in page


def test_every_report_section_has_its_figure(demo_run):
    page = (demo_run / "report.html").read_text()
    sections = re.findall(r"<section[^>]*>(.*?)</section>", page, flags=re.S)
    assert len(sections) >= 8
    for section in sections:
        title = re.search(r"<h2[^>]*>(.*?)</h2>", section, flags=re.S)
        if title is None or "Summary" in title.group(1):
            continue
        assert "<figure" in section, title.group(1)
        assert "data:image/png;base64," in section or 'class="tok' in section, title.group(1)


def _records(folder):
    return {p.name: p.stat().st_mtime_ns for p in folder.rglob("*.json")}


def test_interrupting_compare_loses_nothing_and_recomputes_nothing(tmp_path):
    command = [
        sys.executable,
        "-m",
        "interpret_shift.cli",
        "compare",
        "--base",
        "demo:base",
        "--tuned",
        "demo:tuned",
        "--out",
        str(tmp_path),
        "--explainers",
        "saliency",
    ]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    process = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # A shell's background job starts with SIGINT ignored, and children inherit that;
        # give the child Python's usual Ctrl-C handling wherever the suite runs.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    records = tmp_path / "records" / "saliency" / "base"
    deadline = time.monotonic() + 300
    while len(list(records.glob("*.json"))) < 2 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert "rerun to resume" in stderr.decode()
    finished = _records(tmp_path / "records")
    assert finished and not (tmp_path / "summary.json").exists()

    rerun = subprocess.run(command, env=env, capture_output=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    after = _records(tmp_path / "records")
    assert all(after[name] == stamp for name, stamp in finished.items())  # none recomputed
    n_prompts = len(read_prompts(demo.prompts_path()))
    for side in ("base", "tuned"):
        assert len(list((tmp_path / "records" / "saliency" / side).glob("*.json"))) == n_prompts
    assert (tmp_path / "report.html").exists()
