"""A plugin's results reach the summary and the report, like the built-ins': the example
logit-lens plugin (own claims and section, unit scalars) and a test-only plugin of another
data kind (token attributions, no section of its own: the generic one is drawn)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from interpret_shift.cli import main

pytestmark = pytest.mark.xdist_group("demo")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def plugin_run(tmp_path_factory):
    """`compare` on the demo pair with both plugins, the probe installed by entry point."""
    site = tmp_path_factory.mktemp("site")
    info = site / "probe_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[interpret_shift]\nprobe = probe_plugin\n")
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.syspath_prepend(str(site))
    out = tmp_path_factory.mktemp("plugins")
    try:
        code = main(["compare", "--base", "demo:base", "--tuned", "demo:tuned", "--out", str(out),
                     "--explainers", "logit-lens,probe-norm"])  # fmt: skip
    finally:
        monkeypatch.undo()
    assert code == 0
    return out


def test_both_plugins_reach_the_summary(plugin_run):
    summary = json.loads((plugin_run / "summary.json").read_text())
    assert {e["name"]: e["data_kind"] for e in summary["explainers"]} == {
        "logit-lens": "unit_scalars", "probe-norm": "token_attribution"}  # fmt: skip
    sections = {c["section"] for c in summary["claims"]}
    assert {"logit-lens", "probe-norm", "model"} <= sections
    lens = next(c for c in summary["claims"] if c["section"] == "logit-lens")
    assert "final prediction becomes likely" in lens["text"]  # the plugin's own claim


def test_both_plugins_have_a_report_section(plugin_run):
    page = (plugin_run / "report.html").read_text()
    ids = re.findall(r'<section id="([^"]+)"', page)
    assert "logit-lens-layers" in ids  # the plugin's own section
    assert "probe-norm-attribution" in ids  # the generic section of its data kind
    assert "logit-lens-paired-units" not in ids  # the own section covers the generic one


def test_no_core_code_names_either_plugin():
    package = REPO / "interpret_shift"
    for path in package.rglob("*.py"):
        text = path.read_text()
        assert "logit-lens" not in text and "logit_lens" not in text, path
        assert "probe-norm" not in text and "probe_plugin" not in text, path


def test_headless_chromium_shows_both_sections(plugin_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("this test needs Chromium: `apt-get install -y chromium` (.ci/run does this)")
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
        (plugin_run / "report.html").as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    for section in ("logit-lens-layers", "probe-norm-attribution"):
        body = re.search(rf'<section id="{section}">(.*?)</section>', dom, re.S)
        assert body is not None, section
        assert "<img" in body.group(1) or 'class="tok' in body.group(1), section
