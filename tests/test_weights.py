"""Canonical weights: folded head matrices are exact, and streaming equals the loaded model."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, tiny_model, tokens

from interpret_shift.subject import Subject
from interpret_shift.weights import Weights

# Families whose attention input is exactly norm(x) @ W (no per-head q/k norm afterwards).
FOLDABLE = [
    "llama",
    "mistral",
    "qwen2",
    "gemma2",
    "gpt2",
    "gpt_neox",
    "opt",
    "phi",
    "phi3",
    "falcon",
    "falcon_new",
    "falcon_mha",
]


def normalised(ln: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The norm without its scale (and shift), computed here from first principles."""
    eps = getattr(ln, "eps", None) or getattr(ln, "variance_epsilon", None) or 1e-5
    if isinstance(ln, torch.nn.LayerNorm):
        centred = x - x.mean(-1, keepdim=True)
        return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


@pytest.mark.parametrize("family", FOLDABLE)
def test_folded_head_matrices_reproduce_the_models_queries_and_keys(family):
    subject = Subject.from_model(tiny_model(family), source=family)
    layer = 1
    _, cache = subject.hooks.run_with_cache(tokens(), names=[f"layers.{layer}.*"])
    ln = subject.model.get_submodule(subject.layout.module_path("ln1", layer))
    xn = normalised(ln, cache[f"layers.{layer}.resid_pre"])
    shift = getattr(ln, "bias", None)  # LayerNorm's shift adds a constant; RMSNorm has none
    heads, d_head = subject.layout.n_heads, subject.layout.d_head
    group = heads // subject.layout.n_kv
    for part, matrix in (("q", subject.weights.W_q(layer)), ("k", subject.weights.W_k(layer))):
        actual = cache[f"layers.{layer}.attn.{part}"]
        # what remains besides xn @ W: the projection of the norm's shift plus the bias
        constant = actual - (xn * (ln.weight + subject.adapter.norm_offset)) @ (
            subject.weights.rows(f"attn.{part}", layer).T
        )
        for head in range(heads):
            source = head if part == "q" else head // group
            columns = slice(source * d_head, (source + 1) * d_head)
            predicted = xn @ matrix[head] + constant[..., columns]
            assert torch.allclose(predicted, actual[..., columns], atol=1e-5), (part, head)
        projection = subject.model.get_submodule(subject.layout.module_path(f"attn.{part}", layer))
        if shift is None and getattr(projection, "bias", None) is None:
            assert constant.abs().max() < 1e-5  # RMSNorm, no bias: nothing but xn @ W


def test_grouped_query_keys_repeat_per_group():
    weights = Weights.from_model(tiny_model("llama"))
    keys = weights.W_k(0)
    assert keys.shape == (4, 32, 8)
    assert torch.equal(keys[0], keys[1]) and torch.equal(keys[2], keys[3])
    assert not torch.equal(keys[1], keys[2])


@pytest.mark.parametrize("family", FAMILIES)
def test_streamed_weights_equal_the_loaded_models(family, tmp_path):
    model = tiny_model(family)
    model.save_pretrained(tmp_path)
    loaded, streamed = Weights.from_model(model), Weights.from_folder(tmp_path)
    assert (streamed.layout.n_heads, streamed.layout.n_kv) == (
        loaded.layout.n_heads,
        loaded.layout.n_kv,
    )
    assert torch.equal(loaded.embed(), streamed.embed())
    assert torch.equal(loaded.unembed(), streamed.unembed())
    for layer in range(model.config.num_hidden_layers):
        for name in ("W_q", "W_k", "W_down"):
            assert torch.equal(getattr(loaded, name)(layer), getattr(streamed, name)(layer)), name


def test_down_projection_rows_are_neuron_contributions():
    model = tiny_model("gpt2")  # Conv1D stores (in, out): rows must still be neurons
    down = Weights.from_model(model).W_down(0)
    assert down.shape == (48, 32)
    assert torch.equal(down, model.transformer.h[0].mlp.c_proj.weight)
    model = tiny_model("llama")
    assert torch.equal(
        Weights.from_model(model).W_down(0), model.model.layers[0].mlp.down_proj.weight.T
    )
