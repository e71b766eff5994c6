"""Canonical weights: folded head matrices are exact, and streaming equals the loaded model."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, tiny_model, tokens

from interpret_shift.core.subject import Subject
from interpret_shift.core.weights import Weights

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


# Family-specific norm offsets, from the models' documented forward formulas: Gemma's
# RMSNorm scales by (1 + weight), everyone else's by weight. Checked against each norm's
# own forward below, so a wrong entry here fails the test rather than hiding a bug.
NORM_OFFSET = {"gemma2": 1.0}


def normalised(ln: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The norm without its scale (and shift), computed here from first principles."""
    eps = getattr(ln, "eps", None) or getattr(ln, "variance_epsilon", None) or 1e-5
    if isinstance(ln, torch.nn.LayerNorm):
        centred = x - x.mean(-1, keepdim=True)
        return centred / torch.sqrt(centred.pow(2).mean(-1, keepdim=True) + eps)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _span(start: int, width: int) -> torch.Tensor:
    return torch.arange(start, start + width)


def raw_attention_input(family: str, model, layer: int):
    """The raw modules feeding a layer's queries and keys, read straight off the torch tree.

    Returns ``(ln, projection, W, bias, rows)``: the input norm, the projection module,
    its weight as ``(out_features, in_features)``, its bias (or None), and for "q"/"k"
    the indices of W's rows (and of the projection's output features) holding the
    queries (heads * d_head, head-major) and keys (kv heads * d_head). The fused layouts
    are written out from each family's modeling code, independently of the adapters.
    """
    config = model.config
    heads = config.num_attention_heads
    d = config.hidden_size
    d_head = getattr(config, "head_dim", None) or d // heads
    if family == "gpt2":
        block = model.transformer.h[layer]
        projection = block.attn.c_attn  # Conv1D: weight is (in, out)
        rows = {"q": _span(0, d), "k": _span(d, d)}
        return block.ln_1, projection, projection.weight.T, projection.bias, rows
    if family == "gpt_neox" or family == "falcon_mha":
        # one fused projection viewed as (heads, 3, d_head): q, k, v interleaved per head
        if family == "gpt_neox":
            block = model.gpt_neox.layers[layer]
            ln, projection = block.input_layernorm, block.attention.query_key_value
        else:
            block = model.transformer.h[layer]
            ln, projection = block.input_layernorm, block.self_attention.query_key_value
        rows = {
            part: torch.cat([_span((h * 3 + i) * d_head, d_head) for h in range(heads)])
            for i, part in enumerate("qk")
        }
        return ln, projection, projection.weight, projection.bias, rows
    if family == "falcon":  # multi-query: [q of every head | one k | one v]
        block = model.transformer.h[layer]
        projection = block.self_attention.query_key_value
        rows = {"q": _span(0, heads * d_head), "k": _span(heads * d_head, d_head)}
        return block.input_layernorm, projection, projection.weight, projection.bias, rows
    if family == "falcon_new":  # grouped: per kv head, [its group's q heads, k, v]
        block = model.transformer.h[layer]
        projection = block.self_attention.query_key_value
        kv = config.num_kv_heads
        group = heads // kv
        stride = (group + 2) * d_head
        q = [_span(i * stride + j * d_head, d_head) for i in range(kv) for j in range(group)]
        k = [_span(i * stride + group * d_head, d_head) for i in range(kv)]
        rows = {"q": torch.cat(q), "k": torch.cat(k)}
        ln = block.ln_attn if config.num_ln_in_parallel_attn == 2 else block.input_layernorm
        return ln, projection, projection.weight, projection.bias, rows
    if family == "phi3":  # [q | k | v] in one projection
        block = model.model.layers[layer]
        projection = block.self_attn.qkv_proj
        kv = config.num_key_value_heads
        rows = {"q": _span(0, heads * d_head), "k": _span(heads * d_head, kv * d_head)}
        return block.input_layernorm, projection, projection.weight, projection.bias, rows
    # separate q_proj / k_proj modules
    if family == "opt":
        block = model.model.decoder.layers[layer]
        ln = block.self_attn_layer_norm
    else:
        block = model.model.layers[layer]
        ln = block.input_layernorm
    q_proj, k_proj = block.self_attn.q_proj, block.self_attn.k_proj
    return ln, (q_proj, k_proj), None, None, None


def raw_queries_and_keys(family: str, model, layer: int):
    """Per part: the raw weight rows (out, in), bias rows (or None) and the module to hook."""
    ln, projection, weight, bias, rows = raw_attention_input(family, model, layer)
    if rows is None:
        q_proj, k_proj = projection
        parts = {
            "q": (q_proj, q_proj.weight, q_proj.bias, None),
            "k": (k_proj, k_proj.weight, k_proj.bias, None),
        }
    else:
        parts = {
            part: (projection, weight[index], None if bias is None else bias[index], index)
            for part, index in rows.items()
        }
    return ln, parts


@pytest.mark.parametrize("family", FOLDABLE)
def test_folded_head_matrices_reproduce_the_models_queries_and_keys(family):
    model = tiny_model(family)
    subject = Subject.from_model(model, source=family)
    layer = 1
    config = model.config
    heads, d = config.num_attention_heads, config.hidden_size
    d_head = getattr(config, "head_dim", None) or d // heads
    ln, parts = raw_queries_and_keys(family, model, layer)
    offset = NORM_OFFSET.get(family, 0.0)
    shift = getattr(ln, "bias", None)  # LayerNorm's shift adds a constant; RMSNorm has none

    # Raw captures by plain torch hooks: the norm's input and the projections' outputs.
    seen: dict[str, torch.Tensor] = {}
    handles = [ln.register_forward_hook(lambda m, a, o: seen.__setitem__("x", a[0].clone()))]
    for part, (module, *_rest) in parts.items():
        handles.append(
            module.register_forward_hook(
                lambda m, a, o, part=part: seen.__setitem__(part, o.clone())
            )
        )
    try:
        with torch.no_grad():
            _, cache = subject.hooks.run_with_cache(tokens(), names=[f"layers.{layer}.*"])
    finally:
        for handle in handles:
            handle.remove()

    with torch.no_grad():
        x = seen["x"]
        assert torch.allclose(cache[f"layers.{layer}.resid_pre"], x, atol=1e-6)
        # The norm's effective scale, weight + the family's offset, checked against its forward.
        scale = ln.weight.detach() + offset
        by_formula = normalised(ln, x) * scale + (0 if shift is None else shift)
        assert torch.allclose(ln(x), by_formula, atol=1e-5), "norm offset is wrong"

        xn = normalised(ln, cache[f"layers.{layer}.resid_pre"])
        xn_raw = normalised(ln, x)
        for part, (_, W, bias, index) in parts.items():
            W = W.detach()
            n = heads if part == "q" else W.shape[0] // d_head
            group = heads // n
            # Expected folded matrices, by hand: head h's rows of W, each input feature
            # scaled by the norm's scale, transposed to (d_model, d_head).
            per_head = W.view(n, d_head, d) * scale[None, None, :]
            expected = per_head.transpose(1, 2)[torch.arange(heads) // group]
            matrix = subject.weights.W_q(layer) if part == "q" else subject.weights.W_k(layer)
            assert matrix.shape == (heads, d, d_head), part
            assert torch.allclose(matrix, expected, atol=1e-6), part

            # The rest of the projection, by hand: the norm's shift through W, plus the bias.
            constant = torch.zeros(W.shape[0])
            if shift is not None:
                constant = constant + shift.detach() @ W.T
            if bias is not None:
                constant = constant + bias.detach()

            raw = seen[part] if index is None else seen[part][..., index]
            actual = cache[f"layers.{layer}.attn.{part}"]
            assert torch.allclose(actual, raw, atol=1e-6), part
            for head in range(heads):
                source = head if part == "q" else head // group
                columns = slice(source * d_head, (source + 1) * d_head)
                predicted = xn @ matrix[head] + constant[..., columns]
                assert torch.allclose(predicted, actual[..., columns], atol=1e-5), (part, head)
                by_hand = xn_raw @ expected[head] + constant[columns]
                assert torch.allclose(by_hand, raw[..., columns], atol=1e-5), (part, head)
            # Whatever is left besides xn @ folded W is the same for every token.
            leftover = raw - torch.cat([xn_raw @ per_head[h].T for h in range(n)], dim=-1)
            assert torch.allclose(leftover, constant.expand_as(leftover), atol=1e-5), part
            if shift is None and bias is None:
                assert leftover.abs().max() < 1e-5  # RMSNorm, no bias: nothing but xn @ W


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
