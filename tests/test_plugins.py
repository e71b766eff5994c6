"""The plugin system: built-ins, the separately installed example plugin, broken plugins."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from tiny import tiny_model, tiny_tokenizer

from interpret_shift.cli import main
from interpret_shift.errors import InterpretShiftError
from interpret_shift.explainers import run_explainer
from interpret_shift.plugin_manager import load_plugins
from interpret_shift.prompts import PromptRecord
from interpret_shift.records import RecordStore
from interpret_shift.subject import Subject


@pytest.fixture
def broken_plugin(tmp_path, monkeypatch):
    """An installed distribution whose entry point names a module that cannot import."""
    info = tmp_path / "broken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[interpret_shift]\nbroken = broken_plugin_module\n")
    (tmp_path / "broken_plugin_module.py").write_text("raise ImportError('missing dependency')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "broken"
    sys.modules.pop("broken_plugin_module", None)


def test_builtins_register_through_the_hookspecs():
    manager = load_plugins(autoload=False)
    assert {"llama", "gpt2", "falcon", "phi3"} <= set(manager.adapters())
    assert "builtin" in manager.provided()


def test_the_example_plugin_is_found_by_entry_point_and_runs(tmp_path):
    manager = load_plugins()
    assert "logit-lens" in manager.explainers()
    lens = manager.explainers()["logit-lens"]()
    subject = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="tiny-llama")
    prompts = [
        PromptRecord(id="p1", prompt="please translate the text"),
        PromptRecord(id="p2", prompt="give a word"),
    ]
    results = run_explainer(lens, subject, prompts, RecordStore(tmp_path))
    assert list(results) == ["p1", "p2"]
    values = RecordStore(tmp_path).load("p1").arrays["values"]
    assert values.shape == (2,) and ((values >= 0) & (values <= 1)).all()
    # the last layer's read-out is the model's own prediction, so its probability is the max
    ids = subject.tokenizer("please translate the text", return_tensors="pt").input_ids
    probs = subject.model(ids).logits[0, -1].softmax(-1)
    assert abs(values[-1] - float(probs.max())) < 1e-5


def test_a_broken_plugin_is_reported_not_fatal(broken_plugin):
    manager = load_plugins()
    assert "missing dependency" in manager.failures[broken_plugin]
    assert "logit-lens" in manager.explainers()  # the others still load


def test_strict_mode_makes_a_broken_plugin_fatal(broken_plugin, monkeypatch):
    monkeypatch.setenv("INTERPRET_SHIFT_STRICT_PLUGINS", "1")
    with pytest.raises(InterpretShiftError, match="broken"):
        load_plugins()


def test_autoload_can_be_disabled(broken_plugin, monkeypatch):
    monkeypatch.setenv("INTERPRET_SHIFT_NO_PLUGINS", "1")
    manager = load_plugins()
    assert not manager.failures and "logit-lens" not in manager.explainers()


def test_a_plugin_can_add_an_adapter(tmp_path, monkeypatch):
    from interpret_shift.adapters import Point
    from interpret_shift.adapters.tables import LLAMA

    package = tmp_path / "my_adapter_plugin.py"
    package.write_text(
        textwrap.dedent("""
        import dataclasses
        from interpret_shift.adapters.tables import LLAMA
        from interpret_shift.hookspecs import hookimpl

        MY = dataclasses.replace(LLAMA, name="my-llama", architectures=("MyLlamaForCausalLM",),
                                 model_types=())

        @hookimpl
        def interpret_shift_adapters():
            return [MY]
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = load_plugins(autoload=False)
    import my_adapter_plugin

    manager.pm.register(my_adapter_plugin)
    assert manager.adapters()["my-llama"].points["attn.q"] == Point("self_attn.q_proj")
    assert LLAMA.name == "llama"


def test_plugins_command_lists_providers_and_failures(broken_plugin, capsys):
    from interpret_shift import plugin_manager

    plugin_manager.plugin_manager.cache_clear()
    try:
        assert main(["plugins", "--json"]) == 0
    finally:
        plugin_manager.plugin_manager.cache_clear()
    listing = json.loads(capsys.readouterr().out)
    assert listing["plugins"]["logit_lens"]["explainers"] == ["logit-lens"]
    assert "broken" in listing["failed"]
