"""The HTML report and console summary, from a synthetic compare output folder."""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from interpret_shift.cli import report as report_cli
from interpret_shift.errors import InterpretShiftError
from interpret_shift.report import print_summary, render_report
from interpret_shift.report.figures import clean_token, token_spans

SECTIONS = {
    "model": ["weight-change", "next-token-kl"],
    "saliency": ["instruction-scores", "position-density", "saliency-heatmaps"],
    "heads": ["head-overlap", "verb-shares"],
    "ffn": ["ffn-concepts", "knowledge-rotation"],
}
ALL_SECTIONS = [s for ids in SECTIONS.values() for s in ids]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLAIMS = [
    {"section": "instruction-scores", "text": "Tuned relies more on the instruction words.",
     "n": 24, "p": 0.0132},
    {"section": "verb-shares", "text": "Heads shifted toward instruction verbs.", "n": 11,
     "p": 0.041},
    {"section": "knowledge-rotation", "text": "FFN directions turned by 38° on average.",
     "n": 8, "p": None},
    {"section": "model", "topic": "kl", "text": "Next-token KL is 7 nats.", "n": 24, "p": None},
]  # fmt: skip


# -- a synthetic output folder ---------------------------------------------------------------


def _welch(rng: np.random.Generator, base: np.ndarray, tuned: np.ndarray) -> dict:
    return {"n_base": int(base.size), "n_tuned": int(tuned.size),
            "mean_base": float(base.mean()), "mean_tuned": float(tuned.mean()),
            "t": float(rng.uniform(0.5, 3)), "p": float(rng.uniform(0.001, 0.2))}  # fmt: skip


def _model(rng: np.random.Generator, layers: int = 8) -> dict:
    matrices = ["attn.q", "attn.k", "attn.v", "attn.out", "mlp.gate", "mlp.up", "mlp.down"]
    change = rng.gamma(2, 0.01, size=(layers, len(matrices))).tolist()
    change[3][2] = None
    kl = rng.gamma(1.5, 0.4, size=24)
    return {
        "weights": {"matrices": matrices, "relative_change": change,
                    "per_layer": rng.gamma(2, 0.01, size=layers).tolist(), "embed": 0.004},
        "kl": {"prompt_ids": [f"p{i:02d}" for i in range(24)], "per_prompt": kl.tolist(),
               "mean": float(kl.mean()), "median": float(np.median(kl))},
    }  # fmt: skip


HEATMAP_TOKENS = ["Translate", "Ġthe", "Ġfollowing", "Ġsentence", "Ġinto", "ĠFrench", ":",
                  "Ċ", "The", "Ġcat", "Ġsat", "Ġon", "Ġthe", "Ġmat", ".", "Ġ<b>", "ĠcafÃ©"]  # fmt: skip


def _heatmap(rng: np.random.Generator, index: int) -> dict:
    n = len(HEATMAP_TOKENS)
    return {
        "id": f"mt-{index}",
        "tokens": HEATMAP_TOKENS,
        "instruction_mask": [i < 7 for i in range(n)],
        "context_mask": [7 < i < 15 for i in range(n)],
        "base_density": (rng.uniform(0, 1, n) * (rng.uniform(0, 1, n) > 0.3)).tolist(),
        "tuned_density": rng.uniform(0, 1, n).tolist(),
        "base_response": "The cat sat on the mat. The cat sat on the mat. The cat",
        "tuned_response": "Le chat était assis sur le tapis.",
    }


def _saliency(rng: np.random.Generator, n: int = 24) -> dict:
    base, tuned = rng.normal(1.1, 0.3, n), rng.normal(1.35, 0.3, n)
    groups = [("mt-bench", "self-instruct", "alpaca")[i % 3] for i in range(n)]
    by_group = {
        g: _welch(rng, base[np.array(groups) == g], tuned[np.array(groups) == g])
        for g in sorted(set(groups))
    }
    return {
        "instruction-score": {"prompt_ids": [f"mt-{i}" for i in range(n)], "groups": groups,
                              "base": base.tolist(), "tuned": tuned.tolist(),
                              "overall": _welch(rng, base, tuned), "by_group": by_group},
        "position-curve": {"bins": 10, "base": rng.uniform(0.2, 0.5, 10).tolist(),
                           "tuned": rng.uniform(0.2, 0.6, 10).tolist()},
        "heatmaps": [_heatmap(rng, 0), _heatmap(rng, 1)],
    }  # fmt: skip


def _heads(rng: np.random.Generator, layers: int = 8, heads: int = 9) -> dict:
    def share(n: int, mean: float) -> dict:
        return {"n": n, "mean": mean}

    return {
        "head-overlap": {"n_layers": layers, "n_heads": heads,
                         "jaccard": rng.beta(5, 2, size=(layers, heads)).tolist()},
        "verb-shares": {"groups": [
            {"layers": [0, 3], "instruction": share(11, 0.58), "general": share(20, 0.49),
             "t": 1.7, "p": 0.09, "p_greater": 0.045},
            {"layers": [4, 7], "instruction": share(11, 0.66), "general": share(20, 0.47),
             "t": 2.9, "p": 0.008, "p_greater": 0.004},
        ]},
    }  # fmt: skip


def _ffn(rng: np.random.Generator, layers: int = 8) -> dict:
    tasks = ["daily writing", "literary writing", "professional writing", "math", "coding",
             "translation", "none"]  # fmt: skip
    levels = ["phonology", "morphology", "syntax", "semantics"]
    groups = ["layers 0-3", "layers 4-7"]  # as analysis.ffn names them

    def shares(k: int) -> list[list[float]]:
        return rng.dirichlet(np.ones(k), size=len(groups)).tolist()

    tests = [
        {"axis": axis, "category": c, "group": g, "mean_base": float(rng.uniform(0, 0.3)),
         "mean_tuned": float(rng.uniform(0, 0.3)), "n": 3,
         "p": None if c == "none" else float(rng.uniform(0.001, 0.9))}
        for axis, cats in (("task", tasks), ("level", levels)) for c in cats for g in groups
    ]  # fmt: skip
    angles = rng.uniform(20, 50, layers)
    return {
        "rotation": {"layers": list(range(layers)), "mean_angle_deg": angles.tolist(),
                     "max_angle_deg": (angles + rng.uniform(10, 30, layers)).tolist(),
                     "overlap": rng.uniform(0.4, 0.9, layers).tolist(),
                     "summary": {"mean_angle_deg": float(angles.mean()), "mean_overlap": 0.66}},
        "variance-shift": {"layers": list(range(layers)),
                           "base_top": rng.uniform(0.1, 0.3, layers).tolist(),
                           "tuned_top": rng.uniform(0.1, 0.3, layers).tolist()},
        "concepts": {"annotator": "lexical", "groups": groups, "tasks": tasks, "levels": levels,
                     "base": {"task": shares(len(tasks)), "level": shares(len(levels))},
                     "tuned": {"task": shares(len(tasks)), "level": shares(len(levels))},
                     "tests": tests},
    }  # fmt: skip


MAKERS = {"model": _model, "saliency": _saliency, "heads": _heads, "ffn": _ffn}


def make_output_dir(root: Path, parts: tuple[str, ...] = tuple(MAKERS), seed: int = 0) -> Path:
    """A compare output folder with plausible random data for the given diff files."""
    rng = np.random.default_rng(seed)

    def model(name: str, label: str) -> dict:
        return {"model": f"HuggingFaceTB/{name}", "label": label, "adapter": "llama",
                "dtype": "float32", "fingerprint": f"sha256:{rng.bytes(16).hex()}"}  # fmt: skip

    summary = {
        "base": model("SmolLM2-135M", "SmolLM2-135M"),
        "tuned": model("SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct"),
        "n_prompts": 24,
        "explainers": [p for p in ("saliency", "heads", "ffn") if p in parts],
        "warnings": ["2 prompts were longer than 512 tokens and were truncated."],
        "claims": CLAIMS,
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "summary.json").write_text(json.dumps(summary))
    (root / "diff").mkdir(exist_ok=True)
    for part in parts:
        (root / "diff" / f"{part}.json").write_text(json.dumps(MAKERS[part](rng)))
    return root


# -- helpers ---------------------------------------------------------------------------------


def sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', page, flags=re.DOTALL))


def pngs(fragment: str) -> list[bytes]:
    found = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', fragment)
    return [base64.b64decode(data, validate=True) for data in found]


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render_report(make_output_dir(tmp_path_factory.mktemp("full")), strict=True)


# -- the page --------------------------------------------------------------------------------


def test_page_is_self_contained(full_report: Path) -> None:
    page = full_report.read_text(encoding="utf-8")
    assert full_report.name == "report.html"
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page and "@import" not in page
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', page):
        assert attribute.startswith(("data:image/png;base64,", "#")), attribute
    assert "url(" not in page


def test_every_section_has_h2_and_a_figure_with_a_png(full_report: Path) -> None:
    found = sections(full_report.read_text(encoding="utf-8"))
    assert list(found) == ["summary", *ALL_SECTIONS]
    for section_id in ALL_SECTIONS:
        body = found[section_id]
        assert "<h2>" in body and "<figure" in body and "<figcaption>" in body, section_id
        images = pngs(body)
        assert images, section_id
        assert all(image.startswith(PNG_MAGIC) and len(image) > 1000 for image in images)


def test_heatmaps_show_tokens_and_responses(full_report: Path) -> None:
    body = sections(full_report.read_text(encoding="utf-8"))["saliency-heatmaps"]
    assert body.count('<figure class="heatmap"') == 2 and len(pngs(body)) == 2
    assert body.count('class="tok ins"') >= 2 * 2 * 7 - 2  # legend + both models, both prompts
    assert 'class="tok ctx"' in body
    assert "Ġ" not in body and "Ċ" not in body and " café" in body
    assert "&lt;b&gt;" in body and "<b>" not in body
    assert "Le chat était assis sur le tapis." in body
    assert re.search(r'class="tok ins" style="background:#[0-9a-f]{6};color:#', body)


def test_claims_and_tests_show_n_and_p(full_report: Path) -> None:
    found = sections(full_report.read_text(encoding="utf-8"))
    summary = found["summary"]
    assert 'instruction words. <span class="stat">n = 24 · p = 0.013' in summary
    assert "n = 11 · p = 0.041" in summary and "n = 8</span>" in summary
    assert "Heads shifted toward instruction verbs." in found["verb-shares"]  # callout
    # "topic" picks the section among those of one diff file ("model": weights, KL)
    assert "7 nats" in found["next-token-kl"] and "7 nats" not in found["weight-change"]
    assert "truncated" in summary  # warnings
    caption = re.search(r"<figcaption>(.*?)</figcaption>", found["instruction-scores"]).group(1)
    assert "n = 24 base / 24 tuned" in caption and "p = " in caption
    for group in ("mt-bench", "self-instruct", "alpaca"):
        assert f"<td>{group}</td>" in found["instruction-scores"]
    verbs = found["verb-shares"]
    assert "p (one-sided)" in verbs and '<td class="num">11</td>' in verbs
    assert "tests of base vs tuned share" in found["ffn-concepts"]


@pytest.mark.parametrize("parts", [(), ("saliency",), ("model", "ffn")])
def test_missing_diff_files_drop_their_sections(tmp_path: Path, parts: tuple[str, ...]) -> None:
    page = render_report(make_output_dir(tmp_path, parts), strict=True).read_text()
    expected = [s for part in parts for s in SECTIONS[part]]
    assert list(sections(page)) == ["summary", *expected]
    for section_id in expected:
        assert f'href="#{section_id}"' in page
    facts = re.search(r'<dl class="facts">(.*?)</dl>', page).group(1)
    assert "Explainers run" in facts and ", ".join(p for p in parts if p != "model") in facts


def test_skipped_kl_is_listed_not_drawn(tmp_path: Path) -> None:
    out = make_output_dir(tmp_path, ("model",))
    model = json.loads((out / "diff" / "model.json").read_text())
    model["kl"] = {"skipped": "the tokenizers differ"}
    (out / "diff" / "model.json").write_text(json.dumps(model))
    page = render_report(out, strict=True).read_text()
    assert list(sections(page)) == ["summary", "weight-change"]
    assert "Next-token KL: skipped (the tokenizers differ)" in page


def test_bad_shape_is_noted_or_raised(tmp_path: Path) -> None:
    out = make_output_dir(tmp_path, ("heads",))
    (out / "diff" / "heads.json").write_text(json.dumps({"verb-shares": {"groups": [{}]}}))
    with pytest.raises(InterpretShiftError, match=r"diff/heads\.json.*Instruction verbs"):
        render_report(out, strict=True)
    page = render_report(out).read_text()
    assert 'class="problem"' in page and "Warnings" in page


def test_token_text() -> None:
    assert clean_token("Ġhello") == " hello"
    assert clean_token("▁world") == " world"
    assert clean_token("Ċ") == "\n" and clean_token("<0x0A>") == "\n"
    assert clean_token("ĠcafÃ©") == " café" and clean_token("naïve") == "naïve"
    spans = token_spans(["<s>", "Ġ&"], [0.0, 1.0], [False, True], None)
    assert "&lt;s&gt;" in spans and "> &amp;</span>" in spans and 'class="tok ins"' in spans


# -- command line and console ----------------------------------------------------------------


def test_cli_rebuilds_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "240")  # long paths must not wrap, whatever the terminal
    out = make_output_dir(tmp_path, ("heads",))
    assert report_cli.run(argparse.Namespace(dir=str(out), summary=True, strict=True)) == 0
    assert (out / "report.html").is_file()
    printed = capsys.readouterr().out
    assert "report.html" in printed and "verb shares" in printed


def test_cli_missing_or_empty_dir_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(InterpretShiftError, match=re.escape(str(missing))):
        report_cli.run(argparse.Namespace(dir=str(missing)))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InterpretShiftError, match=re.escape(str(empty / "summary.json"))):
        report_cli.run(argparse.Namespace(dir=str(empty)))


def test_invalid_json_names_the_file(tmp_path: Path) -> None:
    out = make_output_dir(tmp_path, ())
    (out / "diff" / "ffn.json").write_text('{"rotation": ')
    with pytest.raises(InterpretShiftError, match=r"ffn\.json is not valid JSON"):
        render_report(out)


def test_console_summary(tmp_path: Path) -> None:
    out = make_output_dir(tmp_path)
    console = Console(file=io.StringIO(), width=160, color_system=None)
    print_summary(out, console)
    text = console.file.getvalue()
    assert "SmolLM2-135M-Instruct" in text and "Tuned relies more on the instruction words" in text
    assert "0.013" in text and "instruction score, tuned > base" in text and "mt-bench" in text
    assert "verb shares" in text and "next-token KL over 24 prompts" in text
    assert "FFN rotation over 8 layers" in text and "warning:" in text


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
