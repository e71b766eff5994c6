"""The HTML report and console summary, from the output folder of a real (tiny) compare run."""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from markupsafe import escape
from rich.console import Console
from tiny import tiny_model, tiny_tokenizer

from interpret_shift.cli import report as report_cli
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.render.tokens import clean_token, token_spans
from interpret_shift.core.subject import Subject
from interpret_shift.errors import InterpretShiftError, RecordError
from interpret_shift.pipeline.compare import compare
from interpret_shift.plugins import load_registry
from interpret_shift.report import load_results, print_summary, render_report

SECTIONS = {
    "model": ["weight-change", "next-token-kl"],
    "saliency": ["instruction-scores", "position-density", "saliency-heatmaps"],
    "heads": ["head-overlap", "verb-shares"],
    "ffn": ["ffn-concepts", "ffn-rotation"],
}
ALL_SECTIONS = [s for ids in SECTIONS.values() for s in ids]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EVIL_LABEL = "tuned<script>alert(1)</script>"
TEXTS = ["translate the text to a word", "summarize this sentence for you",
         "explain what the word is", "list some of the water day"]  # fmt: skip


# -- a real output folder: two different tiny models, all explainers --------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    words = tmp_path_factory.mktemp("words") / "words.txt"
    words.write_text("\n".join(tiny_tokenizer().get_vocab()))
    base = Subject.from_model(tiny_model("llama", seed=0), tiny_tokenizer(), source="tiny",
                              label="base")  # fmt: skip
    tuned = Subject.from_model(tiny_model("llama", seed=1), tiny_tokenizer(), source="tiny",
                               label=EVIL_LABEL)  # fmt: skip
    prompts = [
        PromptRecord(id=f"p{i}", prompt=text, group=("a", "b")[i % 2],
                     instruction_spans=((0, len(text.split()[0])),))
        for i, text in enumerate(TEXTS)
    ]  # fmt: skip
    options = {"saliency": {"max_new_tokens": 4},
               "heads": {"words": "file", "words_path": str(words), "top_k": 10}}  # fmt: skip
    compare(base, tuned, prompts, out, options=options, console=Console(file=io.StringIO()))
    return out


@pytest.fixture(scope="module")
def registry_sections():
    return load_registry(autoload=False).sections()


@pytest.fixture(scope="module")
def full_report(run_dir: Path, registry_sections) -> Path:
    return render_report(run_dir, registry_sections)


def copy_run(run_dir: Path, target: Path) -> Path:
    """A writable copy of the run's summary and diffs (no records, no report)."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(run_dir / "summary.json", target / "summary.json")
    shutil.copytree(run_dir / "diff", target / "diff")
    return target


# -- helpers ---------------------------------------------------------------------------------


def sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.DOTALL))


def pngs(fragment: str) -> list[bytes]:
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', fragment)
    return [base64.b64decode(data, validate=True) for data in found]


# -- the page --------------------------------------------------------------------------------


def test_summary_lists_explainers_with_data_kinds(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    names = [e["name"] for e in summary["explainers"]]
    assert set(names) >= {"saliency", "heads", "ffn"}
    assert all(isinstance(e, dict) and "data_kind" in e for e in summary["explainers"])
    results = load_results(run_dir)
    assert set(results.diffs) >= {"model", *names}


def test_every_expected_section_is_drawn(full_report: Path) -> None:
    page = full_report.read_text(encoding="utf-8")
    found = sections(page)
    assert next(iter(found)) == "summary"
    for section_id in ALL_SECTIONS:
        assert section_id in found, (section_id, list(found))
        assert f'href="#{section_id}"' in page
        assert "<h2>" in found[section_id], section_id
    assert "Knowledge rotation · ffn" in found["ffn-rotation"]


def test_page_is_self_contained(full_report: Path) -> None:
    page = full_report.read_text(encoding="utf-8")
    assert full_report.name == "report.html"
    assert "<script" not in page and "<link" not in page and "@import" not in page
    assert not re.search(r'(?:src|href)="https?:', page)
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert attribute.startswith(("data:image/png;base64,", "#")), attribute
    assert "url(" not in page


def test_embedded_pngs_decode(full_report: Path) -> None:
    page = full_report.read_text(encoding="utf-8")
    images = pngs(page)
    assert len(images) >= 5
    assert all(image.startswith(PNG_MAGIC) and len(image) > 500 for image in images)
    found = sections(page)
    for section_id in ("weight-change", "head-overlap", "ffn-rotation", "saliency-heatmaps"):
        assert pngs(found[section_id]), section_id


def test_text_from_data_is_escaped(full_report: Path) -> None:
    page = full_report.read_text(encoding="utf-8")
    assert "alert(1)" in page  # the label is shown ...
    assert "<script>" not in page  # ... but never as markup
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_claims_are_shown_with_their_sections(run_dir: Path, full_report: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    found = sections(full_report.read_text(encoding="utf-8"))
    assert summary["claims"]
    for claim in summary["claims"]:
        assert claim["section"] in {"model", *(e["name"] for e in summary["explainers"])}
        assert str(escape(claim["text"])) in found["summary"], claim["text"]


def test_missing_diff_files_drop_their_sections(
    run_dir: Path, tmp_path: Path, registry_sections
) -> None:
    out = copy_run(run_dir, tmp_path / "partial")
    (out / "diff" / "heads.json").unlink()
    (out / "diff" / "ffn.json").unlink()
    found = sections(render_report(out, registry_sections).read_text())
    for section_id in SECTIONS["model"] + SECTIONS["saliency"]:
        assert section_id in found
    for section_id in SECTIONS["heads"] + SECTIONS["ffn"]:
        assert section_id not in found


def test_skipped_kl_is_listed_not_drawn(run_dir: Path, tmp_path: Path, registry_sections) -> None:
    out = copy_run(run_dir, tmp_path / "skipped")
    model = json.loads((out / "diff" / "model.json").read_text())
    model["kl"] = {"skipped": "the tokenizers differ"}
    (out / "diff" / "model.json").write_text(json.dumps(model))
    page = render_report(out, registry_sections).read_text()
    found = sections(page)
    assert "next-token-kl" not in found and "weight-change" in found
    assert "the tokenizers differ" in page


def test_generic_sections_without_registry(run_dir: Path, tmp_path: Path) -> None:
    out = copy_run(run_dir, tmp_path / "generic")
    found = sections(render_report(out).read_text())
    assert "ffn-rotation" in found  # ffn's subspace data, drawn by the generic section


def test_token_text() -> None:
    assert clean_token("Ġhello") == " hello"
    assert clean_token("▁world") == " world"
    assert clean_token("Ċ") == "\n" and clean_token("<0x0A>") == "\n"
    assert clean_token("ĠcafÃ©") == " café" and clean_token("naïve") == "naïve"
    spans = token_spans(["<s>", "Ġ&"], [0.0, 1.0], [False, True], None)
    assert "&lt;s&gt;" in spans and "> &amp;</span>" in spans and 'class="tok ins"' in spans


# -- command line and console ----------------------------------------------------------------


def test_cli_rebuilds_the_report(
    run_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # long paths must not wrap, whatever the terminal
    out = copy_run(run_dir, tmp_path / "cli")
    assert not (out / "report.html").exists()
    assert report_cli.run(argparse.Namespace(dir=str(out), summary=True)) == 0
    page = (out / "report.html").read_text()
    assert all(section_id in sections(page) for section_id in ALL_SECTIONS)
    printed = capsys.readouterr().out
    assert "report.html" in printed and "Summary" in printed


def test_missing_folder_or_summary_raises_record_error(tmp_path: Path) -> None:
    assert issubclass(RecordError, InterpretShiftError)
    missing = tmp_path / "nowhere"
    with pytest.raises(RecordError, match=re.escape(str(missing))):
        render_report(missing)
    with pytest.raises(RecordError, match=re.escape(str(missing))):
        report_cli.run(argparse.Namespace(dir=str(missing)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RecordError, match=re.escape(str(empty / "summary.json"))):
        render_report(empty)
    with pytest.raises(RecordError, match=re.escape(str(empty / "summary.json"))):
        print_summary(empty, Console(file=io.StringIO()))


def test_invalid_json_names_the_file(run_dir: Path, tmp_path: Path) -> None:
    out = copy_run(run_dir, tmp_path / "bad")
    (out / "diff" / "ffn.json").write_text('{"rotation": ')
    with pytest.raises(RecordError, match=r"ffn\.json is not valid JSON"):
        render_report(out)
    (out / "summary.json").write_text("[1, 2]")
    with pytest.raises(RecordError, match=r"summary\.json holds a JSON list"):
        render_report(out)


def test_console_summary(run_dir: Path) -> None:
    summary = json.loads((run_dir / "summary.json").read_text())
    console = Console(file=io.StringIO(), width=400, color_system=None)
    print_summary(run_dir, console)
    text = console.file.getvalue()
    assert EVIL_LABEL in text and "base" in text
    assert f"{len(TEXTS)} prompts" in text
    for name in ("saliency", "heads", "ffn"):
        assert name in text
    for claim in summary["claims"]:
        assert claim["text"] in text, claim["text"]


# -- in a real browser -----------------------------------------------------------------------

# The page has no scripts, so any console message at all (INFO:CONSOLE, ERROR:CONSOLE) is wrong.
CONSOLE_ERRORS = ("Uncaught", ":CONSOLE", "Failed to load resource")


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail(
            "this test needs Chromium to render the report: `apt-get install -y chromium` "
            "(as root; `.ci/run` does this)",
            pytrace=False,
        )
    return path


def test_report_renders_in_headless_chromium(full_report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "shot.png"
    command = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr",
        "--v=0", f"--screenshot={shot}", "--window-size=1280,2000", full_report.as_uri(),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if any(e in line for e in CONSOLE_ERRORS)]
    assert not errors, errors
    image = shot.read_bytes()
    assert image.startswith(PNG_MAGIC) and len(image) > 50_000
