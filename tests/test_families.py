"""Every family with a built-in table, proved against the model itself (issue 16).

For a tiny random-weight model of each family (tests/tiny.py, ``ALL_TINY``): hook values
against ``output_hidden_states`` and the residual identities, q/k points against the
model's own eager attention weights, router and expert points against a by-hand
mixture-of-experts forward, streamed weights against the loaded model, and the CLI
(``hookpoints``, ``explain`` with every built-in method) end to end.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from tiny import ALL_TINY, family_config, family_model, tiny_tokenizer, tokens

from interpret_shift.cli import main
from interpret_shift.core.adapters import BUILTIN_ADAPTERS, catalog, find_adapter
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.subject import Subject
from interpret_shift.core.weights import Weights
from interpret_shift.pipeline import explain

BATCH, SEQ = 2, 7
ATOL = 2e-5
FAMILIES = sorted(ALL_TINY)

#: Families whose blocks run attention and MLP on the same input, by their modeling code.
PARALLEL = {"phi", "gpt_neox", "falcon", "falcon_new", "cohere", "cohere2", "gptj", "codegen"}
#: Norms applied to each sublayer's output before it is added (module names per family).
SANDWICH = {
    "gemma2": ("post_attention_layernorm", "post_feedforward_layernorm"),
    "gemma3": ("post_attention_layernorm", "post_feedforward_layernorm"),
    "glm4": ("post_self_attn_layernorm", "post_mlp_layernorm"),
    "olmo2": ("post_attention_layernorm", "post_feedforward_layernorm"),
    "olmo3": ("post_attention_layernorm", "post_feedforward_layernorm"),
    "exaone4": ("post_attention_layernorm", "post_feedforward_layernorm"),
}
MOE = {"mixtral", "olmoe", "qwen2_moe", "qwen3_moe", "granitemoe"}


@dataclass
class Run:
    family: str
    subject: Subject
    output: object  # the hooked run's ModelOutput (hidden states and attentions)
    cache: dict
    folder: Path


@pytest.fixture(scope="module", params=FAMILIES)
def run(request, tmp_path_factory) -> Run:
    """One model per family, run once with every point captured; saved for streaming."""
    family = request.param
    model = family_model(family)
    subject = Subject.from_model(model, tiny_tokenizer(), source=family)
    with subject.frozen():
        output, cache = subject.hooks.run_with_cache(
            tokens(BATCH, SEQ), output_hidden_states=True, output_attentions=True
        )
    folder = tmp_path_factory.mktemp(family)
    model.save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return Run(family, subject, output, cache, folder)


def close(actual: torch.Tensor, expected: torch.Tensor, what: str, atol: float = ATOL) -> None:
    assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
    error = (actual.float() - expected.float()).abs().max().item()
    assert error <= atol, f"{what}: max error {error:.2e}"


def blocks(model) -> torch.nn.ModuleList:
    """The decoder blocks, found by type name in the module tree (not via the adapter)."""
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


def test_at_least_35_families_have_tables_and_each_has_a_tiny_model():
    names = {adapter.name for adapter in BUILTIN_ADAPTERS}
    assert len(names) >= 35
    required = """olmo olmo2 olmoe starcoder2 stablelm granite granitemoe cohere cohere2 mixtral
        qwen2_moe qwen3_moe gemma gpt_bigcode gptj bloom codegen persimmon nemotron glm glm4
        helium smollm3 exaone4 llama mistral qwen2 qwen3 gemma2 gemma3 gpt2""".split()
    assert set(required) <= names
    tested = {find_adapter(family_config(f)).name for f in FAMILIES}
    assert names <= tested, f"families without a parity test: {sorted(names - tested)}"


def test_every_point_fires_with_a_token_shaped_tensor_and_leaves_logits_alone(run):
    subject, cache = run.subject, run.cache
    assert set(cache) == set(subject.hooks.names)
    for name, value in cache.items():
        assert value.shape[:2] == (BATCH, SEQ) or name.endswith("attn.pattern"), name
    with subject.frozen():
        plain = subject.model(tokens(BATCH, SEQ)).logits
    close(run.output.logits, plain, "logits with every hook attached")


def test_residual_points_equal_the_models_hidden_states(run):
    config, cache, hidden = run.subject.model.config, run.cache, run.output.hidden_states
    n = config.num_hidden_layers
    assert len(hidden) == n + 1
    for i in range(n):
        close(cache[f"layers.{i}.resid_pre"], hidden[i], f"resid_pre[{i}] vs hidden_states[{i}]")
    for i in range(n - 1):
        close(cache[f"layers.{i}.resid_post"], cache[f"layers.{i + 1}.resid_pre"], f"post {i}")
    # transformers 5 hands back the last hidden state after the final norm
    close(cache["final_norm"], hidden[-1], "final_norm vs hidden_states[-1]")
    logits = cache["unembed"]
    if getattr(config, "final_logit_softcapping", None):  # Gemma 2
        cap = config.final_logit_softcapping
        logits = cap * torch.tanh(logits / cap)
    if hasattr(config, "logits_scaling"):  # Granite divides
        logits = logits / config.logits_scaling
    if hasattr(config, "logit_scale"):  # Cohere multiplies
        logits = logits * config.logit_scale
    close(logits, run.output.logits, "unembed vs logits")


def test_residual_stream_is_the_sum_of_its_sublayer_outputs(run):
    family, subject, cache = run.family, run.subject, run.cache
    config = subject.model.config
    parallel = family in PARALLEL or (family == "gpt_neox" and config.use_parallel_residual)
    assert ("layers.0.resid_mid" in cache) == (not parallel)
    scale = getattr(config, "residual_multiplier", 1.0)  # Granite
    for i, block in enumerate(blocks(subject.model)):
        pre, post = cache[f"layers.{i}.resid_pre"], cache[f"layers.{i}.resid_post"]
        attn, mlp = cache[f"layers.{i}.attn.out"], cache[f"layers.{i}.mlp.out"]
        if family in SANDWICH:
            with torch.no_grad():
                attn_norm, mlp_norm = (getattr(block, name) for name in SANDWICH[family])
                attn, mlp = attn_norm(attn), mlp_norm(mlp)
        attn, mlp = attn * scale, mlp * scale
        if parallel:
            close(post, pre + attn + mlp, f"resid_post[{i}] = resid_pre + attn + mlp")
        else:
            mid = cache[f"layers.{i}.resid_mid"]
            close(mid, pre + attn, f"resid_mid[{i}] = resid_pre + attn")
            close(post, mid + mlp, f"resid_post[{i}] = resid_mid + mlp")


# -- q/k points reproduce the attention weights ----------------------------------------------


def _norm(module: torch.nn.Module | None, flat: torch.Tensor, heads: torch.Tensor):
    """A q/k norm as the model applies it: over all heads at once (OLMo-2) or per head."""
    if module is None:
        return heads
    weight = getattr(module, "weight", None)
    if weight is not None and weight.shape[-1] == flat.shape[-1]:
        return module(flat).view(heads.shape)
    return module(heads)


def _qk_norms(attn) -> tuple:
    for q_name, k_name in (("q_norm", "k_norm"), ("q_layernorm", "k_layernorm")):
        if hasattr(attn, q_name):
            return getattr(attn, q_name), getattr(attn, k_name)
    return None, None


def _uses_rope(attn) -> bool:
    """Layers without positions: SmolLM3's NoPE layers, and the global layers of Cohere 2
    and EXAONE 4 (read off each attention's forward)."""
    kind = type(attn).__name__
    if hasattr(attn, "use_rope"):
        return bool(attn.use_rope)
    if kind.startswith("Cohere2"):
        return attn.sliding_window is not None
    if kind.startswith("Exaone4"):
        return attn.sliding_window is None or attn.is_sliding
    return True


def _rotate(attn, q, k, position_embeddings):
    """RoPE applied as the model does, with its own cos/sin and rotation function.

    ``q``/``k`` are ``(batch, seq, heads, d_head)``. Only the leading dimensions that the
    cos/sin cover are rotated (partial rotary); GPT-J and CodeGen keep their own
    (tensor, sin, cos) signature and rotate before transposing.
    """
    rope = sys.modules[type(attn).__module__].apply_rotary_pos_emb
    if hasattr(attn, "rotary_dim"):  # GPT-J, CodeGen
        sin, cos = position_embeddings
        width = attn.rotary_dim or q.shape[-1]
        turn = lambda x: torch.cat([rope(x[..., :width], sin, cos), x[..., width:]], dim=-1)  # noqa: E731
        return turn(q), turn(k)
    cos, sin = position_embeddings
    width = cos.shape[-1]
    q, k = q.transpose(1, 2), k.transpose(1, 2)
    q_rot, k_rot = rope(q[..., :width], k[..., :width], cos, sin)
    q = torch.cat([q_rot, q[..., width:]], dim=-1)
    k = torch.cat([k_rot, k[..., width:]], dim=-1)
    return q.transpose(1, 2), k.transpose(1, 2)


def recomputed_pattern(run: Run, layer: int, extras: dict) -> torch.Tensor:
    """softmax(q k^T * scale + mask) from the q/k points, with norms and RoPE as the model's."""
    subject, cache = run.subject, run.cache
    layout = subject.layout
    attn = subject.model.get_submodule(layout.module_path("attn.pattern", layer))
    heads, kv, d_head = layout.n_heads, layout.n_kv, layout.d_head
    q_flat, k_flat = cache[f"layers.{layer}.attn.q"], cache[f"layers.{layer}.attn.k"]
    q = q_flat.view(BATCH, SEQ, heads, d_head)
    k = k_flat.view(BATCH, SEQ, kv, d_head)
    with torch.no_grad():
        q_norm, k_norm = _qk_norms(attn)
        q, k = _norm(q_norm, q_flat, q), _norm(k_norm, k_flat, k)
        position_embeddings = extras.get("position_embeddings")
        if position_embeddings is not None and _uses_rope(attn):
            q, k = _rotate(attn, q, k, position_embeddings)
    q, k = q.transpose(1, 2), k.transpose(1, 2).repeat_interleave(heads // kv, dim=1)
    scale = getattr(attn, "scaling", None) or getattr(attn, "inv_norm_factor", d_head**-0.5)
    scores = (q @ k.transpose(-1, -2)) * scale
    cap = getattr(attn, "attn_logit_softcapping", None)
    if cap:  # Gemma 2
        scores = cap * torch.tanh(scores / cap)
    alibi = extras.get("alibi")
    if alibi is not None:  # BLOOM: (batch * heads, 1, seq) position biases, times beta
        scores = scores + attn.beta * alibi.view(BATCH, heads, 1, SEQ)
    causal = torch.ones(SEQ, SEQ, dtype=torch.bool).triu(1)
    return scores.masked_fill(causal, float("-inf")).softmax(-1)


def test_query_and_key_points_reproduce_the_models_attention_weights(run):
    subject = run.subject
    seen: dict[int, dict] = {}
    handles = []
    for layer in range(subject.layout.n_layers):
        module = subject.model.get_submodule(subject.layout.module_path("attn.pattern", layer))
        handles.append(
            module.register_forward_pre_hook(
                lambda m, a, kw, layer=layer: seen.__setitem__(layer, kw), with_kwargs=True
            )
        )
    try:
        with subject.frozen():
            subject.model(tokens(BATCH, SEQ))
    finally:
        for handle in handles:
            handle.remove()
    for layer, extras in seen.items():
        expected = run.output.attentions[layer]
        close(recomputed_pattern(run, layer, extras), expected, f"pattern of layer {layer}")
        close(run.cache[f"layers.{layer}.attn.pattern"], expected, f"pattern point {layer}")


# -- weights ----------------------------------------------------------------------------------


def test_streamed_weights_equal_the_loaded_models(run):
    loaded, streamed = run.subject.weights, Weights.from_folder(run.folder)
    assert streamed.adapter.name == loaded.adapter.name
    assert (streamed.layout.n_heads, streamed.layout.n_kv) == (
        loaded.layout.n_heads,
        loaded.layout.n_kv,
    )
    assert torch.equal(loaded.embed(), streamed.embed())
    assert torch.equal(loaded.unembed(), streamed.unembed())
    for layer in range(loaded.layout.n_layers):
        for name in ("W_q", "W_k", "W_down"):
            assert torch.equal(getattr(loaded, name)(layer), getattr(streamed, name)(layer)), (
                name,
                layer,
            )
        if loaded.n_experts(layer):
            assert torch.equal(loaded.W_down_experts(layer), streamed.W_down_experts(layer))


FOLDABLE = [f for f in FAMILIES if find_adapter(family_config(f)).q_norm is None]


def normalised(norm: torch.nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    """A norm without its scale and shift, from first principles (RMS or centred)."""
    if norm is None:  # post-norm blocks: attention reads the residual itself
        return x
    eps = next(
        (float(getattr(norm, n)) for n in ("eps", "variance_epsilon") if hasattr(norm, n)), 1e-5
    )
    if "RMS" not in type(norm).__name__:
        x = x - x.mean(-1, keepdim=True)
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


@pytest.mark.parametrize("family", FOLDABLE)
def test_folded_query_and_key_matrices_reproduce_the_query_and_key_points(family):
    """normalised(resid_pre) @ W_q[h] gives head h's queries up to a per-feature constant
    (the norm's shift and the projection's bias), and likewise for keys."""
    subject = Subject.from_model(family_model(family), source=family)
    layout, weights = subject.layout, subject.weights
    with subject.frozen():
        _, cache = subject.hooks.run_with_cache(tokens(BATCH, SEQ), names="layers.1.*")
    ln1 = layout.module_path("ln1", 1)
    norm = None if ln1 is None else subject.model.get_submodule(ln1)
    xn = normalised(norm, cache["layers.1.resid_pre"])
    group = layout.n_heads // layout.n_kv
    for part, matrix in (("q", weights.W_q(1)), ("k", weights.W_k(1))):
        actual = cache[f"layers.1.attn.{part}"].unflatten(-1, (-1, layout.d_head))
        heads = range(0, layout.n_heads, 1 if part == "q" else group)
        predicted = torch.stack([xn @ matrix[h] for h in heads], dim=-2)
        leftover = actual - predicted
        constant = leftover[:1, :1].expand_as(leftover)
        close(leftover, constant, f"{part}: point - normalised(x) @ W, same for every token", 1e-4)


def dense_down_projection(block: torch.nn.Module, d_model: int) -> torch.Tensor:
    """The one matrix of a dense block that maps a wider space to d_model, outside attention.

    Returned as (d_ff, d_model): ``nn.Linear`` stores (out, in), GPT-2's ``Conv1D`` (in, out).
    """
    found = []
    for name, module in block.named_modules():
        weight = getattr(module, "weight", None)
        if "attn" in name or "attention" in name or weight is None or weight.dim() != 2:
            continue
        rows = weight if type(module).__name__ == "Conv1D" else weight.T  # (in, out)
        if rows.shape[1] == d_model and rows.shape[0] != d_model:
            found.append(rows)
    assert len(found) == 1, [tuple(f.shape) for f in found]
    return found[0]


def test_down_projection_rows_are_the_models_neurons(run):
    """W_down's rows, read straight off the modules: dense, or every expert then shared."""
    model, weights = run.subject.model, run.subject.weights
    d_model = model.config.hidden_size
    for i, block in enumerate(blocks(model)):
        moe = next((m for m in block.modules() if hasattr(m, "experts")), None)
        if moe is None:
            assert torch.equal(weights.W_down(i), dense_down_projection(block, d_model)), i
            continue
        stacked = moe.experts.down_proj  # (experts, d_model, d_ff)
        expected = [stacked.transpose(1, 2).flatten(0, 1)]
        if hasattr(moe, "shared_expert"):
            expected.append(moe.shared_expert.down_proj.weight.T)
        assert torch.equal(weights.W_down(i), torch.cat(expected)), i
        assert torch.equal(weights.W_down_experts(i), stacked.transpose(1, 2))


# -- mixture of experts: router and expert points against a by-hand forward ----------------


@pytest.mark.parametrize("family", sorted(MOE))
def test_router_and_expert_points_reproduce_the_experts_output(family):
    model = family_model(family)
    subject = Subject.from_model(model, source=family)
    with subject.frozen():
        _, cache = subject.hooks.run_with_cache(tokens(BATCH, SEQ))
    config = model.config
    k = config.num_experts_per_tok
    for i, block in enumerate(blocks(model)):
        moe = next((m for m in block.modules() if hasattr(m, "experts")), None)
        if moe is None:  # a dense layer (Qwen-MoE mlp_only_layers): no router points
            assert f"layers.{i}.mlp.router" not in cache
            continue
        x = cache[f"layers.{i}.ln2"]
        router = getattr(moe, "gate", None) or moe.router
        logits = x @ router.weight.T
        close(cache[f"layers.{i}.mlp.router"], logits, f"router logits {i}")
        if family == "granitemoe":  # softmax over the top-k logits
            top, chosen = logits.topk(k, dim=-1)
            weights = top.softmax(-1)
        else:  # top-k of the softmax, renormalised where the config says so
            top, chosen = logits.softmax(-1).topk(k, dim=-1)
            renorm = getattr(config, "norm_topk_prob", family == "mixtral")
            weights = top / top.sum(-1, keepdim=True) if renorm else top
        assert torch.equal(cache[f"layers.{i}.mlp.experts_chosen"], chosen), i
        close(cache[f"layers.{i}.mlp.router_weights"], weights, f"router weights {i}")
        # experts_out = sum_k weight_k * down_e(act(gate_e x) * up_e x), by hand
        down = subject.weights.W_down_experts(i)  # (experts, d_ff, d)
        gate_up = moe.experts.gate_up_proj  # (experts, 2 d_ff, d): [gate | up]
        act = moe.experts.act_fn
        expected = torch.zeros_like(x)
        for slot in range(k):
            for e in range(gate_up.shape[0]):
                mask = (chosen[..., slot] == e)[..., None]
                gate, up = (x @ gate_up[e].T).chunk(2, dim=-1)
                out = (act(gate) * up) @ down[e]
                expected = expected + mask * weights[..., slot : slot + 1] * out
        close(cache[f"layers.{i}.mlp.experts_out"], expected, f"experts_out {i}", atol=1e-4)
        total = cache[f"layers.{i}.mlp.experts_out"]
        if hasattr(moe, "shared_expert"):
            shared = cache[f"layers.{i}.mlp.shared_out"]
            total = total + torch.sigmoid(x @ moe.shared_expert_gate.weight.T) * shared
        close(cache[f"layers.{i}.mlp.out"], total, f"mlp.out = routed + shared {i}", atol=1e-5)


# -- the CLI and the built-in methods end to end ------------------------------------------------

PROMPTS = [{"id": "p1", "prompt": "please translate the text", "instruction_spans": [[0, 16]]}]
WORDS = "the a of to and in is it you that was for on are with as be at one have this from"
OPTIONS = {
    "saliency": {"max_new_tokens": 1},
    "heads": {"words": "file", "top_k": 5},
    "ffn": {"components": 4, "top_k": 5},
}


def test_hookpoints_lists_the_points_the_hooks_resolve(run, capsys):
    assert main(["hookpoints", str(run.folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == run.subject.hooks.names


def test_explain_with_every_builtin_method_succeeds(run, tmp_path):
    """What ``interpret-shift explain`` runs once the model is loaded, for every family."""
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS.split()))
    options = {name: dict(values) for name, values in OPTIONS.items()}
    options["heads"]["words_path"] = str(words)
    prompts = [PromptRecord(group="g", **row) for row in PROMPTS]
    results = explain(run.subject, prompts, tmp_path / "out", options=options)
    assert set(results) == {"saliency", "heads", "ffn"}
    n = run.subject.layout.n_layers
    assert len(results["saliency"]) == len(PROMPTS)
    assert len(results["heads"]) == n and len(results["ffn"]) == n
    model = run.subject.model
    layers = blocks(model)
    for key, record in results["ffn"].items():
        layer = int(key.removeprefix("layer."))
        rows, grouping = neuron_rows(layers[layer], model.config.hidden_size)
        assert record.meta["n_neurons"] == rows.shape[0]
        assert record.meta.get("experts") == grouping
        # the total variance of every neuron's write vector, by hand from the modules
        centred = rows.double() - rows.double().mean(0)
        total = float(centred.square().sum() / (rows.shape[0] - 1))
        assert abs(float(record.arrays["total_variance"][0]) - total) < 1e-5 * total


def neuron_rows(block: torch.nn.Module, d_model: int) -> tuple[torch.Tensor, dict | None]:
    """Every FFN neuron's write vector in a block: dense, or all experts then the shared one."""
    moe = next((m for m in block.modules() if hasattr(m, "experts")), None)
    if moe is None:
        return dense_down_projection(block, d_model), None
    stacked = moe.experts.down_proj  # (experts, d_model, d_ff)
    rows = [stacked.transpose(1, 2).flatten(0, 1)]
    shared = getattr(moe, "shared_expert", None)
    if shared is not None:
        rows.append(shared.down_proj.weight.T)
    grouping = {
        "count": stacked.shape[0],
        "neurons_per_expert": stacked.shape[2],
        "shared_neurons": 0 if shared is None else shared.down_proj.weight.shape[1],
        "layout": "stacked",
    }
    return torch.cat(rows).float(), grouping


@pytest.mark.parametrize("family", ["olmo2", "mixtral"])
def test_the_explain_command_loads_and_explains_a_saved_model(family, tmp_path):
    """The CLI from a checkpoint folder: a dense family and a mixture of experts."""
    folder = tmp_path / "model"
    family_model(family).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(row) + "\n" for row in PROMPTS))
    words = tmp_path / "words.txt"
    words.write_text("\n".join(WORDS.split()))
    out = tmp_path / "out"
    argv = ["explain", str(folder), "--prompts", str(prompts), "--out", str(out)]
    argv += ["--set", f"heads.words_path={words}"]
    for name, values in OPTIONS.items():
        argv += [arg for key, value in values.items() for arg in ("--set", f"{name}.{key}={value}")]
    assert main(argv) == 0
    for name in ("saliency", "heads", "ffn"):
        assert any((out / "records" / name).rglob("*.json")), name


def test_the_committed_family_list_is_the_one_generated_from_the_tables():
    page = Path(__file__).resolve().parents[1] / "docs" / "families.md"
    assert page.read_text() == catalog.markdown(), (
        "docs/families.md is stale: run python -m interpret_shift.core.adapters.catalog"
    )
    rows = [line for line in page.read_text().splitlines() if line.startswith("| ")]
    assert len(rows) == len(BUILTIN_ADAPTERS) + 1  # the header row, then one per table
    for adapter in BUILTIN_ADAPTERS:
        row = next(r for r in rows if r.startswith(f"| {adapter.name} | "))
        assert all(f"`{a}`" in row for a in adapter.architectures), adapter.name
