"""The public API is curated and pinned, resolves to real objects, and loads lazily."""

from __future__ import annotations

import json
import subprocess
import sys

import interpret_shift

PUBLIC = [
    "Adapter", "Claim", "Claims", "DiffContext", "DiffMetric", "Explainer", "Explanation",
    "HookPointError", "HookRegistry", "InputError", "InterpretShiftError", "ModelLoadError",
    "PluginError", "Point", "PromptRecord", "RecordError", "RecordStore", "Registry",
    "ReportSection", "Resources", "SectionContext", "Subject", "Weights", "WordList",
    "compare", "diff_records", "explain", "hookimpl", "load_registry", "load_subject",
    "load_words", "read_prompts", "render_report", "run_explainer", "view",
]  # fmt: skip


def test_the_public_names_are_exactly_these():
    assert sorted(interpret_shift.__all__) == sorted(PUBLIC)


def test_every_public_name_resolves_and_errors_share_one_base():
    for name in PUBLIC:
        assert getattr(interpret_shift, name) is not None, name
    base = interpret_shift.InterpretShiftError
    for name in ("ModelLoadError", "HookPointError", "PluginError", "RecordError", "InputError"):
        assert issubclass(getattr(interpret_shift, name), base)


def _loaded_after(code: str) -> dict:
    probe = (f"import sys\n{code}\nimport json\n"
             "print(json.dumps({m: m in sys.modules for m in ('torch', 'scipy', 'matplotlib')}))")  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_importing_the_package_loads_no_heavy_library():
    assert _loaded_after("import interpret_shift") == dict.fromkeys(
        ("torch", "scipy", "matplotlib"), False)  # fmt: skip


def test_help_loads_no_heavy_library():
    code = ("from interpret_shift.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass")  # fmt: skip
    assert _loaded_after(code) == dict.fromkeys(("torch", "scipy", "matplotlib"), False)
