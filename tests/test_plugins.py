"""The plugin system: built-ins, the separately installed example plugin, broken plugins."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from tiny import tiny_model, tiny_tokenizer

from interpret_shift.cli import main
from interpret_shift.core.explainer import run_explainer
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import RecordStore
from interpret_shift.core.subject import Subject
from interpret_shift.errors import InterpretShiftError
from interpret_shift.plugins import load_registry, register


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
    manager = load_registry(autoload=False)
    assert {"llama", "gpt2", "falcon", "phi3"} <= {a.name for a in manager.adapters()}
    assert "builtin" in manager.provided()


def test_the_example_plugin_is_found_by_entry_point_and_runs(tmp_path):
    manager = load_registry()
    assert "logit-lens" in manager.explainers()
    lens = manager.make_explainer("logit-lens")
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
    manager = load_registry()
    assert "missing dependency" in manager.failures[broken_plugin]
    assert "logit-lens" in manager.explainers()  # the others still load


def test_strict_mode_makes_a_broken_plugin_fatal(broken_plugin, monkeypatch):
    monkeypatch.setenv("INTERPRET_SHIFT_STRICT_PLUGINS", "1")
    with pytest.raises(InterpretShiftError, match="broken"):
        load_registry()


def test_autoload_can_be_disabled(broken_plugin, monkeypatch):
    monkeypatch.setenv("INTERPRET_SHIFT_NO_PLUGINS", "1")
    manager = load_registry()
    assert not manager.failures and "logit-lens" not in manager.explainers()


def test_a_plugin_can_add_an_adapter(tmp_path, monkeypatch):
    from interpret_shift.core.adapters import Point
    from interpret_shift.core.adapters.tables import LLAMA

    package = tmp_path / "my_adapter_plugin.py"
    package.write_text(
        textwrap.dedent("""
        import dataclasses
        from interpret_shift.core.adapters.tables import LLAMA
        from interpret_shift.plugins.hookspecs import hookimpl

        MY = dataclasses.replace(LLAMA, name="my-llama", architectures=("MyLlamaForCausalLM",),
                                 model_types=())

        @hookimpl
        def interpret_shift_adapters():
            return [MY]
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    manager = load_registry(autoload=False)
    import my_adapter_plugin

    register(manager, "my_adapter_plugin", lambda: my_adapter_plugin)
    adapters = {a.name: a for a in manager.adapters()}
    assert adapters["my-llama"].points["attn.q"] == Point("self_attn.q_proj")
    assert LLAMA.name == "llama"


def test_plugins_command_lists_providers_and_failures(broken_plugin, capsys):
    assert main(["plugins", "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert listing["plugins"]["logit_lens"]["explainers"] == ["logit-lens"]
    assert "broken" in listing["failed"]


def test_a_misspelled_hook_is_reported_by_plugin_name():
    import types

    from interpret_shift import hookimpl
    from interpret_shift.plugins import register

    plugin = types.SimpleNamespace(interpret_shift_explainer=hookimpl(lambda: []))  # no "s"
    registry = load_registry(autoload=False)
    register(registry, "typo", lambda: plugin)
    assert "interpret_shift_explainer" in registry.failures["typo"]
    assert not registry.pm.has_plugin("typo")  # unregistered: the rest keeps working
    assert "saliency" in registry.explainers()


def test_an_invalid_item_is_skipped_and_named_or_fatal_when_strict():
    import dataclasses
    import types

    from interpret_shift import DiffMetric, PluginError, hookimpl
    from interpret_shift.core.adapters.tables import LLAMA
    from interpret_shift.plugins import register

    broken = dataclasses.replace(LLAMA, name="broken", architectures=(), model_types=())
    nowhere = DiffMetric(name="nowhere", compute=lambda a, b, c: {})  # applies to nothing
    plugin = types.SimpleNamespace(
        interpret_shift_adapters=hookimpl(lambda: [broken]),
        interpret_shift_diff_metrics=hookimpl(lambda: [nowhere]),
    )
    registry = load_registry(autoload=False)
    register(registry, "bad", lambda: plugin)
    names = {a.name for a in registry.adapters()}
    assert "broken" not in names and "llama" in names  # model loading still works
    assert "matches no architecture" in registry.failures["bad"]
    registry.diff_metrics_for("saliency", "token_attribution")
    assert "exactly one of" in registry.failures["bad"]
    strict = load_registry(autoload=False, strict=True)
    register(strict, "bad", lambda: plugin)
    with pytest.raises(PluginError, match="bad"):
        strict.adapters()
