"""Hook points on tiny models of every family: shapes, no side effects, exact slices, cleanup."""

from __future__ import annotations

import pytest
import torch
from tiny import FAMILIES, tiny_model, tokens

from interpret_shift.core.subject import Subject
from interpret_shift.errors import InterpretShiftError

BATCH, SEQ = 2, 7


def subject_of(family: str, attn: str = "eager") -> Subject:
    return Subject.from_model(tiny_model(family, attn=attn), source=family)


def expected_shape(subject: Subject, name: str) -> tuple[int, ...]:
    """Canonical shapes, derived from the config (not from the code under test)."""
    config = subject.model.config
    d, heads = config.hidden_size, config.num_attention_heads
    d_head = getattr(config, "head_dim", None) or d // heads
    kv = subject.layout.n_kv
    d_ff = subject.weights.W_down(0).shape[0]
    kind = name.split(".", 2)[-1] if name.startswith("layers.") else name
    width = {
        "attn.q": heads * d_head,
        "attn.k": kv * d_head,
        "attn.v": kv * d_head,
        "attn.z": heads * d_head,
        "mlp.gate": d_ff,
        "mlp.up": d_ff,
        "mlp.act": d_ff,
        "mlp.down_in": d_ff,
        "unembed": config.vocab_size,
    }.get(kind, d)
    if kind == "attn.pattern":
        return (BATCH, heads, SEQ, SEQ)
    return (BATCH, SEQ, width)


def kv_heads_of(family: str, config) -> int:
    """Key/value heads by the family's own rules, written out independently."""
    if family.startswith("falcon"):
        if config.new_decoder_architecture:
            return config.num_kv_heads
        return 1 if config.multi_query else config.num_attention_heads
    return getattr(config, "num_key_value_heads", None) or config.num_attention_heads


@pytest.mark.parametrize("family", FAMILIES)
def test_every_point_fires_with_its_shape_and_leaves_logits_alone(family):
    subject = subject_of(family)
    assert subject.layout.n_kv == kv_heads_of(family, subject.model.config)
    ids = tokens(BATCH, SEQ)
    reference = subject.model(ids).logits
    seen: dict[str, tuple] = {}

    def record(activation, name):
        seen[name] = tuple(activation.shape)
        return activation.clone()  # a read-only hook may even hand back a copy

    with subject.hooks.scope(forward={name: record for name in subject.hooks.names}):
        hooked = subject.model(ids).logits
    assert set(seen) == set(subject.hooks.names)
    for name, shape in seen.items():
        assert shape == expected_shape(subject, name), name
    assert (hooked - reference).abs().max() < 1e-6
    for kind in (
        "embed",
        "layers.0.resid_pre",
        "layers.0.attn.q",
        "layers.1.mlp.down_in",
        "layers.1.resid_post",
        "final_norm",
        "unembed",
    ):
        assert kind in seen, f"{family} lacks {kind}"


def projections(family: str, model, layer: int, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """q, k, v recomputed from each family's raw weights, by its own documented layout."""
    config = model.config
    heads = config.num_attention_heads
    d_head = config.hidden_size // heads
    kv = kv_heads_of(family, config)
    if family == "gpt2":
        attn = model.transformer.h[layer].attn.c_attn
        q, k, v = (x @ attn.weight + attn.bias).split(config.hidden_size, dim=-1)
        return {"q": q, "k": k, "v": v}
    if family.startswith("gpt_neox"):
        fused = model.gpt_neox.layers[layer].attention.query_key_value(x)
        grid = fused.view(*x.shape[:-1], heads, 3, d_head)
        return {p: grid[..., i, :].flatten(-2) for i, p in enumerate("qkv")}
    if family == "phi3":
        fused = model.model.layers[layer].self_attn.qkv_proj(x)
        q, k, v = fused.split([heads * d_head, kv * d_head, kv * d_head], dim=-1)
        return {"q": q, "k": k, "v": v}
    if family.startswith("falcon"):
        fused = model.transformer.h[layer].self_attention.query_key_value(x)
        if config.new_decoder_architecture:
            grid = fused.view(*x.shape[:-1], kv, heads // kv + 2, d_head)
            return {
                "q": grid[..., :-2, :].flatten(-3),
                "k": grid[..., -2, :].flatten(-2),
                "v": grid[..., -1, :].flatten(-2),
            }
        if config.multi_query:
            q, k, v = fused.split([heads * d_head, d_head, d_head], dim=-1)
            return {"q": q, "k": k, "v": v}
        grid = fused.view(*x.shape[:-1], heads, 3, d_head)
        return {p: grid[..., i, :].flatten(-2) for i, p in enumerate("qkv")}
    attn = (model.model.decoder.layers if family == "opt" else model.model.layers)[layer].self_attn
    return {"q": attn.q_proj(x), "k": attn.k_proj(x), "v": attn.v_proj(x)}


@pytest.mark.parametrize("family", FAMILIES)
def test_virtual_qkv_equal_projections_recomputed_from_weights(family):
    subject = subject_of(family)
    _, cache = subject.hooks.run_with_cache(tokens(BATCH, SEQ), names=["layers.1.*"])
    with torch.no_grad():
        expected = projections(family, subject.model, 1, cache["layers.1.ln1"])
    for part in "qkv":
        assert torch.allclose(cache[f"layers.1.attn.{part}"], expected[part], atol=1e-6), part


@pytest.mark.parametrize("family", FAMILIES)
def test_patterns_are_distributions_under_eager_attention(family):
    subject = subject_of(family)
    _, cache = subject.hooks.run_with_cache(tokens(BATCH, SEQ), names="layers.*.attn.pattern")
    for pattern in cache.values():
        assert torch.allclose(pattern.sum(-1), torch.ones(()), atol=1e-5)
        assert torch.all(pattern.triu(1) == 0)  # causal


def test_patterns_need_eager_attention():
    subject = subject_of("llama", attn="sdpa")
    with pytest.raises(InterpretShiftError, match="eager"):
        subject.hooks.run_with_cache(tokens(), names="layers.0.attn.pattern")


def test_hooks_can_change_activations_including_virtual_slices():
    subject = subject_of("gpt2")
    ids = tokens()
    reference = subject.model(ids).logits
    zero_k = {"layers.0.attn.k": lambda a, _: torch.zeros_like(a)}
    with subject.hooks.scope(forward=zero_k):
        _, cache = subject.hooks.run_with_cache(ids, names=["layers.0.attn.*"])
        changed = subject.model(ids).logits
    assert torch.all(cache["layers.0.attn.k"] == 0)
    assert cache["layers.0.attn.q"].abs().sum() > 0  # the neighbouring slice is untouched
    assert (changed - reference).abs().max() > 1e-4


@pytest.mark.parametrize(
    "family, point", [("falcon_new", "layers.0.attn.k"), ("opt", "layers.0.mlp.up")]
)
def test_backward_hooks_see_gradients_of_virtual_and_flattened_points(family, point):
    subject = subject_of(family)
    grads = {}
    embeddings = subject.model.get_input_embeddings()(tokens()).requires_grad_(True)
    with subject.hooks.scope(
        forward={point: lambda a, n: grads.__setitem__("act", a)},
        backward={point: lambda g, n: grads.__setitem__("grad", g)},
    ):
        subject.model(inputs_embeds=embeddings).logits.sum().backward()
    assert grads["grad"].shape == grads["act"].shape
    assert grads["grad"].abs().sum() > 0


def no_hooks_left(model) -> bool:
    return all(
        not (m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks)
        for m in model.modules()
    )


def test_hooks_are_removed_after_exceptions_in_scope_and_in_hooks():
    subject = subject_of("llama")
    every = {name: (lambda a, n: None) for name in subject.hooks.names}
    with pytest.raises(RuntimeError, match="in the scope"):
        with subject.hooks.scope(forward=every, backward=every):
            subject.model(tokens())
            raise RuntimeError("in the scope")
    assert no_hooks_left(subject.model)

    def explode(activation, name):
        raise ValueError("in a hook")

    embeddings = subject.model.get_input_embeddings()(tokens()).requires_grad_(True)
    with pytest.raises(ValueError, match="in a hook"):
        with subject.hooks.scope(forward={"layers.1.mlp.out": explode}):
            subject.model(inputs_embeds=embeddings)
    with pytest.raises(ValueError, match="in a hook"):
        with subject.hooks.scope(backward={"layers.0.attn.q": explode}):
            subject.model(inputs_embeds=embeddings).logits.sum().backward()
    assert no_hooks_left(subject.model)
    # and the model still runs normally afterwards
    assert torch.isfinite(subject.model(tokens()).logits).all()


def test_cache_filters_offload_and_early_stop():
    subject = subject_of("llama")
    calls = []
    last_layer = subject.model.get_submodule("model.layers.1")
    handle = last_layer.register_forward_hook(lambda *a: calls.append(1))
    try:
        output, cache = subject.hooks.run_with_cache(tokens(), names="layers.0.*", offload=True)
    finally:
        handle.remove()
    assert output is None and calls == []  # stopped after layer 0
    assert set(cache) == {n for n in subject.hooks.names if n.startswith("layers.0.")}
    assert all(t.device.type == "cpu" for t in cache.values())
    assert cache.stack("resid_post").shape == (1, BATCH, SEQ, 32)
    output, cache = subject.hooks.run_with_cache(tokens(), names=["unembed"])
    assert torch.equal(cache["unembed"], output.logits)


def test_unknown_point_names_get_a_helpful_error():
    subject = subject_of("phi")
    with pytest.raises(InterpretShiftError, match="hookpoints"):
        subject.hooks.run_with_cache(tokens(), names=["layers.0.attn.query"])
    with pytest.raises(InterpretShiftError, match="resid_mid"):
        subject.hooks.resolve("layers.0.resid_mid")  # Phi is parallel: there is none


# -- values, not only shapes: hook points against the model's own outputs -----------------

ATOL = 1e-5


def close(actual: torch.Tensor, expected: torch.Tensor, what: str) -> None:
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    error = (actual - expected).abs().max().item()
    assert torch.allclose(actual, expected, atol=ATOL), f"{what}: max error {error:.2e}"


def raw_blocks(family: str, model) -> torch.nn.ModuleList:
    """The decoder blocks, by each family's module tree (not via the adapter)."""
    if family in ("gpt2",) or family.startswith("falcon"):
        return model.transformer.h
    if family.startswith("gpt_neox"):
        return model.gpt_neox.layers
    if family == "opt":
        return model.model.decoder.layers
    return model.model.layers


def raw_final_norm(family: str, model) -> torch.nn.Module:
    if family in ("gpt2",) or family.startswith("falcon"):
        return model.transformer.ln_f
    if family.startswith("gpt_neox"):
        return model.gpt_neox.final_layer_norm
    if family == "opt":
        return model.model.decoder.final_layer_norm
    if family == "phi":
        return model.model.final_layernorm
    return model.model.norm


def parallel_residual(family: str, config) -> bool:
    """Whether attention and MLP both read the block's input (so there is no resid_mid)."""
    if family == "phi":
        return True
    if family.startswith("gpt_neox"):
        return bool(config.use_parallel_residual)
    if family.startswith("falcon"):
        return bool(config.new_decoder_architecture or config.parallel_attn)
    return False


def first_residual(family: str, model, ids: torch.Tensor) -> torch.Tensor | None:
    """The first block's input, from the raw embedding tables by each family's forward."""
    embed = model.get_input_embeddings().weight[ids]
    if family == "gpt2":  # learned absolute positions added
        return embed + model.transformer.wpe.weight[: ids.shape[1]]
    if family.startswith("gemma"):  # embeddings scaled by sqrt(d_model)
        return embed * torch.tensor(model.config.hidden_size**0.5, dtype=embed.dtype)
    if family == "opt":  # learned positions with an offset: not re-derived here
        return None
    return embed  # rotary families add nothing


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_points_equal_the_models_hidden_states(family):
    subject = subject_of(family)
    model, n = subject.model, subject.model.config.num_hidden_layers
    ids = tokens(BATCH, SEQ)
    with subject.frozen():
        output, cache = subject.hooks.run_with_cache(ids, output_hidden_states=True)
        reference = model(ids, output_hidden_states=True)  # and without any hooks
    hidden = output.hidden_states
    assert len(hidden) == n + 1
    for i in range(n + 1):
        close(hidden[i], reference.hidden_states[i], f"hooks changed hidden_states[{i}]")
    for i in range(n):
        close(cache[f"layers.{i}.resid_pre"], hidden[i], f"resid_pre[{i}] vs hidden_states[{i}]")
    for i in range(n - 1):
        close(cache[f"layers.{i}.resid_post"], cache[f"layers.{i + 1}.resid_pre"], f"post {i}")
    # transformers 5 hands back the last hidden state after the final norm
    with torch.no_grad():
        normed = raw_final_norm(family, model)(cache[f"layers.{n - 1}.resid_post"])
        first = first_residual(family, model, ids)
    close(normed, hidden[-1], "final norm(resid_post[-1]) vs hidden_states[-1]")
    close(cache["final_norm"], hidden[-1], "final_norm vs hidden_states[-1]")
    if first is not None:
        close(first, cache["layers.0.resid_pre"], "embedding table vs resid_pre[0]")
    if family not in ("gpt2", "opt"):  # nothing is added to the embedding module's output
        close(cache["embed"], cache["layers.0.resid_pre"], "embed vs resid_pre[0]")
    unembed = cache["unembed"]
    cap = getattr(model.config, "final_logit_softcapping", None)
    if cap:  # Gemma 2 soft-caps the head's output: logits = cap * tanh(unembed / cap)
        unembed = cap * torch.tanh(unembed / cap)
    close(unembed, output.logits, "unembed vs logits")
    close(output.logits, reference.logits, "logits")


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_stream_is_the_sum_of_its_sublayer_outputs(family):
    subject = subject_of(family)
    model, n = subject.model, subject.model.config.num_hidden_layers
    parallel = parallel_residual(family, model.config)
    assert ("layers.0.resid_mid" in subject.hooks.names) == (not parallel)
    with subject.frozen():
        _, cache = subject.hooks.run_with_cache(tokens(BATCH, SEQ))
    for i, block in enumerate(raw_blocks(family, model)):
        pre, post = cache[f"layers.{i}.resid_pre"], cache[f"layers.{i}.resid_post"]
        attn, mlp = cache[f"layers.{i}.attn.out"], cache[f"layers.{i}.mlp.out"]
        if family.startswith("gemma"):  # Gemma normalises each sublayer's output before adding it
            with torch.no_grad():
                attn = block.post_attention_layernorm(attn)
                mlp = block.post_feedforward_layernorm(mlp)
        if parallel:
            close(post, pre + attn + mlp, f"resid_post[{i}] = resid_pre + attn.out + mlp.out")
        else:
            mid = cache[f"layers.{i}.resid_mid"]
            close(mid, pre + attn, f"resid_mid[{i}] = resid_pre + attn.out")
            close(post, mid + mlp, f"resid_post[{i}] = resid_mid + mlp.out")
    assert len(raw_blocks(family, model)) == n


@pytest.mark.parametrize("family", FAMILIES)
def test_pattern_points_are_the_models_attention_weights(family):
    subject = subject_of(family)
    n = subject.model.config.num_hidden_layers
    with subject.frozen():
        output, cache = subject.hooks.run_with_cache(
            tokens(BATCH, SEQ), names="layers.*.attn.pattern", output_attentions=True
        )
    assert output is not None and len(output.attentions) == n
    for i in range(n):
        close(cache[f"layers.{i}.attn.pattern"], output.attentions[i], f"pattern {i}")


def rotary(x: torch.Tensor, theta: float) -> torch.Tensor:
    """Rotary position embedding (rotate-half convention) on (batch, heads, seq, d_head)."""
    d_head, seq = x.shape[-1], x.shape[-2]
    inverse = 1.0 / theta ** (torch.arange(0, d_head, 2, dtype=torch.float32) / d_head)
    angles = torch.arange(seq, dtype=torch.float32)[:, None] * inverse[None, :]
    angles = torch.cat([angles, angles], dim=-1)
    first, second = x[..., : d_head // 2], x[..., d_head // 2 :]
    return x * angles.cos() + torch.cat([-second, first], dim=-1) * angles.sin()


@pytest.mark.parametrize("family", ["llama", "mistral", "qwen2", "gpt2"])
def test_patterns_recomputed_from_query_and_key_points(family):
    """softmax(q k^T / sqrt(d_head)) with a causal mask, from the q/k points, by hand.

    The q/k points are the projections' outputs, before rotary embeddings: for the
    rotary families the rotation is applied here, from the config's rope theta.
    """
    subject = subject_of(family)
    config = subject.model.config
    heads = config.num_attention_heads
    d_head = getattr(config, "head_dim", None) or config.hidden_size // heads
    kv = kv_heads_of(family, config)
    with subject.frozen():
        output, cache = subject.hooks.run_with_cache(
            tokens(BATCH, SEQ), names="layers.*.attn.*", output_attentions=True
        )
    causal = torch.ones(SEQ, SEQ, dtype=torch.bool).triu(1)
    for i in range(config.num_hidden_layers):
        q = cache[f"layers.{i}.attn.q"].view(BATCH, SEQ, heads, d_head).transpose(1, 2)
        k = cache[f"layers.{i}.attn.k"].view(BATCH, SEQ, kv, d_head).transpose(1, 2)
        if family != "gpt2":
            theta = config.rope_parameters["rope_theta"]
            assert config.rope_parameters.get("rope_type", "default") == "default"
            q, k = rotary(q, theta), rotary(k, theta)
        k = k.repeat_interleave(heads // kv, dim=1)  # query head h reads key head h // group
        scores = (q @ k.transpose(-1, -2)) / d_head**0.5
        pattern = scores.masked_fill(causal, float("-inf")).softmax(-1)
        close(pattern, output.attentions[i], f"pattern recomputed from q/k, layer {i}")
        close(pattern, cache[f"layers.{i}.attn.pattern"], f"pattern point, layer {i}")
