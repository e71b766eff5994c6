"""Adapters inferred from the module tree, and the probe that proves adapters at load.

Families that have tables are inferred again with ``adapters=()`` (so no table matches)
and compared with the table and with the model's own outputs: hook values, hidden states,
attention probabilities recomputed here from the model's own rotary embedding, weights.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from tiny import tiny_model, tokens
from torch import nn
from transformers import AutoModelForCausalLM, PretrainedConfig
from transformers.models.llama import modeling_llama

from interpret_shift.core.adapters import Point, find_adapter
from interpret_shift.core.adapters.infer import adapter_source, is_inferred
from interpret_shift.core.adapters.probe import missing_modules
from interpret_shift.core.adapters.tables import BUILTIN_ADAPTERS
from interpret_shift.core.subject import Subject, load_layout
from interpret_shift.errors import InterpretShiftError, ModelLoadError

# one of each module-tree style: separate q/k/v (rotary), Conv1D fused (GPT-2), per-head fused
# (GPT-NeoX, parallel), Falcon's multi-query and grouped fused, OPT's flat MLP, Phi-3's halves
STYLES = ["llama", "gpt2", "gpt_neox", "gpt_neox_serial", "falcon", "falcon_new", "opt", "phi3"]


def inferred(family: str, **kwargs) -> Subject:
    return Subject.from_model(tiny_model(family, **kwargs), source=family, adapters=())


@pytest.mark.parametrize("family", STYLES)
def test_inferred_points_equal_the_tables_points(family):
    model = tiny_model(family)
    table = Subject.from_model(model, source=family)
    guess = Subject.from_model(model, source=family, adapters=())
    assert is_inferred(guess.adapter) and not is_inferred(table.adapter)
    ids = tokens(2, 7)
    _, expected = table.hooks.run_with_cache(ids, stop_early=False)
    _, got = guess.hooks.run_with_cache(ids, stop_early=False)
    shared = set(expected) & set(got)
    for must in ("embed", "layers.1.resid_pre", "layers.1.attn.q", "layers.1.attn.k",
                 "layers.1.mlp.down_in", "layers.1.resid_post", "unembed"):  # fmt: skip
        assert must in shared, f"{family}: inferred adapter lacks {must}"
    for name in sorted(shared):
        assert torch.equal(expected[name], got[name]), f"{family}: {name} differs"
    assert set(got) - set(expected) <= {f"layers.{i}.mlp.act" for i in range(2)}
    parallel = family in ("gpt_neox", "falcon", "falcon_new")  # gpt_neox_serial: same weights
    assert ("layers.0.resid_mid" in got) == (not parallel), family


@pytest.mark.parametrize("family", ["llama", "gpt2", "falcon_new"])
def test_inferred_weights_equal_the_tables_weights(family):
    model = tiny_model(family)
    table, guess = Subject.from_model(model), Subject.from_model(model, adapters=())
    for layer in range(2):
        for matrix in ("W_q", "W_k", "W_down"):
            a, b = getattr(table.weights, matrix)(layer), getattr(guess.weights, matrix)(layer)
            assert torch.equal(a, b), f"{family} {matrix}({layer})"


def test_inferred_residual_points_are_the_models_hidden_states():
    model = tiny_model("llama")
    subject = Subject.from_model(model, adapters=())
    ids = tokens(1, 6)
    output, cache = subject.hooks.run_with_cache(ids, stop_early=False, output_hidden_states=True)
    states = output.hidden_states
    for layer in range(2):
        assert torch.allclose(cache[f"layers.{layer}.resid_pre"], states[layer])
        mid = cache[f"layers.{layer}.resid_pre"] + cache[f"layers.{layer}.attn.out"]
        assert torch.allclose(cache[f"layers.{layer}.resid_mid"], mid, atol=1e-6)
    assert torch.allclose(cache["final_norm"], states[2])  # HF's last state is normed


def test_inferred_query_key_reproduce_the_attention_probabilities():
    """Recomputed here with HF's own rotary embedding and apply_rotary_pos_emb."""
    model = tiny_model("llama")
    subject = Subject.from_model(model, adapters=())
    ids = tokens(1, 6)
    output, cache = subject.hooks.run_with_cache(ids, stop_early=False, output_attentions=True)
    config = model.config
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    d_head = config.hidden_size // heads
    position = torch.arange(6)[None]
    cos, sin = model.model.rotary_emb(cache["layers.0.attn.q"], position)
    for layer in range(2):
        q = cache[f"layers.{layer}.attn.q"].view(1, 6, heads, d_head).transpose(1, 2)
        k = cache[f"layers.{layer}.attn.k"].view(1, 6, kv, d_head).transpose(1, 2)
        q, k = modeling_llama.apply_rotary_pos_emb(q, k, cos, sin)
        k = k.repeat_interleave(heads // kv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / d_head**0.5
        scores = scores.masked_fill(torch.ones(6, 6).triu(1).bool(), float("-inf"))
        assert torch.allclose(scores.softmax(-1), output.attentions[layer], atol=1e-6)


def test_provenance_and_notice_say_the_adapter_was_inferred(capsys):
    subject = inferred("gpt2", seed=3)
    assert subject.provenance()["adapter_inferred"] is True
    assert subject.provenance()["adapter"] == "inferred:gpt2"
    assert "inferred from the module tree" in capsys.readouterr().err
    assert Subject.from_model(tiny_model("gpt2")).provenance()["adapter_inferred"] is False


def test_printed_adapter_is_python_that_builds_the_same_table():
    subject = inferred("phi3")
    namespace: dict = {}
    exec(adapter_source(subject.adapter, "my_phi3"), namespace)  # noqa: S102 - our own output
    table = namespace["MY_PHI3"]
    assert dict(table.points) == dict(subject.adapter.points)
    assert (table.layers, table.q_norm, table.k_norm) == (
        subject.adapter.layers,
        subject.adapter.q_norm,
        subject.adapter.k_norm,
    )
    table.validate()
    assert find_adapter(subject.model.config, [table]) is table


def test_meta_skeleton_is_not_probed_but_layout_is_drafted():
    config = tiny_model("llama").config
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    subject = Subject.from_model(skeleton, adapters=())
    assert is_inferred(subject.adapter)
    assert "layers.0.attn.q" in subject.layout.names


def test_hookpoints_of_a_folder_without_a_table_are_inferred(tmp_path):
    tiny_model("gpt_neox").save_pretrained(tmp_path)
    layout = load_layout(tmp_path, adapters=())
    assert layout.adapter.name == "inferred:gpt_neox"
    assert "layers.1.resid_post" in layout.names


class _Config(PretrainedConfig):
    model_type = "toy_no_layers"

    def __init__(self, **kwargs):
        super().__init__(num_hidden_layers=3, hidden_size=8, num_attention_heads=2, **kwargs)


class _NoLayers(nn.Module):
    """A 'language model' whose blocks are not a list of num_hidden_layers modules."""

    def __init__(self):
        super().__init__()
        self.config = _Config()
        self.embed = nn.Embedding(10, 8)
        self.blocks = nn.ModuleList([nn.Linear(8, 8), nn.Linear(8, 8)])
        self.head = nn.Linear(8, 10)

    def get_input_embeddings(self):
        return self.embed

    def get_output_embeddings(self):
        return self.head


def test_a_tree_that_cannot_be_placed_says_which_role_and_how_to_write_a_table():
    with pytest.raises(ModelLoadError) as error:
        Subject.from_model(_NoLayers())
    assert "No adapter for architecture" in error.value.what
    assert "decoder layers" in error.value.what
    assert "docs/inferred-adapters.md" in error.value.fix


def test_the_probe_catches_a_renamed_module_in_a_table():
    model = tiny_model("llama")
    llama = next(a for a in BUILTIN_ADAPTERS if a.name == "llama")
    renamed = replace(llama, points={**llama.points, "attn.q": Point("self_attn.query")})
    with pytest.raises(ModelLoadError, match="self_attn.query"):
        Subject.from_model(model, adapters=[renamed])


def test_the_probe_catches_a_wrong_residual_point_in_a_table():
    model = tiny_model("llama", seed=4)
    llama = next(a for a in BUILTIN_ADAPTERS if a.name == "llama")
    wrong = replace(
        llama, points={**llama.points, "resid_mid": Point("input_layernorm", io="input")}
    )
    with pytest.raises(ModelLoadError, match="resid_mid"):
        Subject.from_model(model, adapters=[wrong])


def test_swapped_query_and_key_are_not_proved():
    """MHA, so q and k have one width: only the attention probabilities tell them apart."""
    model = tiny_model("gpt_neox", seed=5)
    neox = next(a for a in BUILTIN_ADAPTERS if a.name == "gpt_neox")
    swapped = replace(neox, points={**neox.points, "attn.q": neox.points["attn.k"],
                                    "attn.k": neox.points["attn.q"]})  # fmt: skip
    subject = Subject.from_model(model, adapters=[swapped])  # a table: recorded, not refused
    from interpret_shift.core.adapters.probe import _PROVED

    reports = [r for r in _PROVED.values() if r.adapter == "gpt_neox" and r.unreplayed]
    assert reports and "layer 0" in reports[-1].unreplayed
    assert subject.adapter is swapped


def test_missing_modules_respects_conditions():
    for family in ("gpt_neox", "falcon", "falcon_new", "falcon_mha", "opt"):  # variants by module
        assert missing_modules(Subject.from_model(tiny_model(family)).layout) == [], family


def test_the_probe_runs_once_per_model():
    model = tiny_model("llama", seed=7)
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    try:
        Subject.from_model(model)
        first = len(calls)
        Subject.from_model(model)
    finally:
        handle.remove()
    assert first == 1 and len(calls) == 1


def test_attention_free_models_get_no_head_points_and_say_why():
    from transformers import MambaConfig

    config = MambaConfig(vocab_size=96, hidden_size=32, num_hidden_layers=2, state_size=8,
                         expand=2, conv_kernel=4, time_step_rank=4)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config).eval()
    subject = Subject.from_model(model, adapters=())
    assert not any(".attn." in name for name in subject.hooks.names)
    assert "attn.q" in subject.adapter.notes and "attention" in subject.adapter.notes
    output, cache = subject.hooks.run_with_cache(tokens(1, 5), stop_early=False,
                                                 output_hidden_states=True)  # fmt: skip
    # Mamba's hidden_states[i] is the output of block i, the last one normed
    assert torch.allclose(cache["layers.0.resid_post"], output.hidden_states[0])
    assert torch.allclose(cache["layers.1.resid_pre"], output.hidden_states[0])
    assert torch.allclose(cache["final_norm"], output.hidden_states[2])
    with pytest.raises(InterpretShiftError):
        subject.weights.W_q(0)


def test_cli_prints_a_proved_table_that_loads_the_model_again(tmp_path, capsys):
    from tiny import tiny_tokenizer
    from transformers import AutoConfig

    from interpret_shift.cli import main
    from interpret_shift.core.subject import load_subject

    config = AutoConfig.for_model("xglm", vocab_size=96, d_model=32, num_layers=2,
                                  attention_heads=4, ffn_dim=64, max_position_embeddings=64)  # fmt: skip
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(tmp_path)
    tiny_tokenizer().save_pretrained(tmp_path)
    assert main(["hookpoints", str(tmp_path), "--print-adapter"]) == 0
    source = capsys.readouterr().out
    namespace: dict = {}
    exec(source, namespace)  # noqa: S102 - the CLI's own output
    (table,) = [v for k, v in namespace.items() if k.isupper()]
    table.validate()
    subject = load_subject(tmp_path, adapters=[table])  # probed as a table
    assert subject.adapter is table and not subject.provenance()["adapter_inferred"]
    assert "layers.1.attn.q" in subject.hooks.names and "layers.1.resid_mid" in subject.hooks.names


def test_probe_leaves_an_sdpa_model_as_it_was_and_still_proves_query_key():
    model = tiny_model("llama", seed=9, attn="sdpa").train()
    subject = Subject.from_model(model, adapters=())
    assert model.config._attn_implementation == "sdpa" and model.training
    assert "layers.1.attn.q" in subject.hooks.names  # proved under eager, for the probe only


def test_post_norm_blocks_get_their_resid_mid_and_its_identity_holds():
    from transformers import AutoConfig

    config = AutoConfig.for_model("olmo2", vocab_size=96, hidden_size=32, intermediate_size=48,
                                  num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2)  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    subject = Subject.from_model(model, adapters=())
    _, cache = subject.hooks.run_with_cache(tokens(1, 6), stop_early=False)
    for layer, block in enumerate(model.model.layers):
        branch = block.post_attention_layernorm(cache[f"layers.{layer}.attn.out"])
        expected = cache[f"layers.{layer}.resid_pre"] + branch
        assert torch.allclose(cache[f"layers.{layer}.resid_mid"], expected, atol=1e-6)
