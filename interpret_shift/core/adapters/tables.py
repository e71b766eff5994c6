"""The built-in adapters: one table per architecture family.

Points are mapped by role, not by name: e.g. Gemma's ``post_attention_layernorm``
normalises the attention output, so its ``ln2`` is ``pre_feedforward_layernorm``;
parallel-residual families (Phi, GPT-NeoX by default, Falcon) have no ``resid_mid``.
The families added later live in ``tables_dense`` and ``tables_moe``;
``BUILTIN_ADAPTERS`` lists them all (docs/families.md is generated from it).
"""

from __future__ import annotations

from interpret_shift.core.adapters.layouts import LAYER, LAYER_OUT, llama_like
from interpret_shift.core.adapters.spec import Adapter, Point
from interpret_shift.core.adapters.tables_dense import DENSE_ADAPTERS
from interpret_shift.core.adapters.tables_moe import MOE_ADAPTERS

QK_NORMS = ("q_norm", "k_norm")

LLAMA = llama_like("llama", ("LlamaForCausalLM",), ("llama",))
MISTRAL = llama_like("mistral", ("MistralForCausalLM",), ("mistral",))
QWEN2 = llama_like("qwen2", ("Qwen2ForCausalLM",), ("qwen2",))
QWEN3 = llama_like("qwen3", ("Qwen3ForCausalLM",), ("qwen3",), qk_norms=QK_NORMS)
GEMMA2 = llama_like(
    "gemma2",
    ("Gemma2ForCausalLM",),
    ("gemma2",),
    ln2="pre_feedforward_layernorm",
    norm_offset=1.0,
    notes="sandwich norms (each sublayer's output is normalised before it is added); "
    "embeddings scaled by sqrt(d_model); attention and final-logit soft-capping",
)
GEMMA3 = llama_like(
    "gemma3",
    ("Gemma3ForCausalLM",),
    ("gemma3_text",),
    ln2="pre_feedforward_layernorm",
    norm_offset=1.0,
    qk_norms=QK_NORMS,
    notes="sandwich norms; embeddings scaled by sqrt(d_model); sliding-window layers",
)

_C_ATTN = "attn.c_attn"
GPT2 = Adapter(
    name="gpt2",
    architectures=("GPT2LMHeadModel",),
    model_types=("gpt2",),
    layers="transformer.h",
    notes="Conv1D weights stored (in, out); learned absolute positions",
    points={
        "embed": Point("transformer.wte"),
        "resid_pre": LAYER,
        "ln1": Point("ln_1"),
        "attn.q": Point(_C_ATTN, fused="concat", part="q", weight_type="conv1d"),
        "attn.k": Point(_C_ATTN, fused="concat", part="k", weight_type="conv1d"),
        "attn.v": Point(_C_ATTN, fused="concat", part="v", weight_type="conv1d"),
        "attn.z": Point("attn.c_proj", io="input", weight_type="conv1d"),
        "attn.out": Point("attn.c_proj", weight_type="conv1d"),
        "attn.pattern": Point("attn", tuple_index=1),
        "resid_mid": Point("ln_2", io="input"),
        "ln2": Point("ln_2"),
        "mlp.up": Point("mlp.c_fc", weight_type="conv1d"),
        "mlp.act": Point("mlp.act"),
        "mlp.down_in": Point("mlp.c_proj", io="input", weight_type="conv1d"),
        "mlp.out": Point("mlp"),
        "resid_post": LAYER_OUT,
        "final_norm": Point("transformer.ln_f"),
        "unembed": Point("lm_head"),
    },
)

_QKV = "attention.query_key_value"
_SERIAL = {"use_parallel_residual": False}
GPT_NEOX = Adapter(
    name="gpt_neox",
    architectures=("GPTNeoXForCausalLM",),
    model_types=("gpt_neox",),
    layers="gpt_neox.layers",
    notes="partial rotary; hub checkpoints name the head embed_out",
    points={
        "embed": Point("gpt_neox.embed_in"),
        "resid_pre": LAYER,
        "ln1": Point("input_layernorm"),
        "attn.q": Point(_QKV, fused="per_head", part="q"),
        "attn.k": Point(_QKV, fused="per_head", part="k"),
        "attn.v": Point(_QKV, fused="per_head", part="v"),
        "attn.z": Point("attention.dense", io="input"),
        "attn.out": Point("attention.dense"),
        "attn.pattern": Point("attention", tuple_index=1),
        "resid_mid": Point("post_attention_layernorm", io="input", when=_SERIAL),
        "ln2": Point("post_attention_layernorm"),
        "mlp.up": Point("mlp.dense_h_to_4h"),
        "mlp.act": Point("mlp.act"),
        "mlp.down_in": Point("mlp.dense_4h_to_h", io="input"),
        "mlp.out": Point("mlp"),
        "resid_post": LAYER_OUT,
        "final_norm": Point("gpt_neox.final_layer_norm"),
        "unembed": (Point("lm_head"), Point("embed_out")),  # hub checkpoints say embed_out
    },
)

_PRE_LN = {"do_layer_norm_before": True}
OPT = Adapter(
    name="opt",
    architectures=("OPTForCausalLM",),
    model_types=("opt",),
    layers="model.decoder.layers",
    notes="the MLP sees flattened tokens; learned positions with an offset",
    points={
        "embed": Point("model.decoder.embed_tokens"),
        "resid_pre": LAYER,
        "ln1": Point("self_attn_layer_norm", when=_PRE_LN),
        "attn.q": Point("self_attn.q_proj"),
        "attn.k": Point("self_attn.k_proj"),
        "attn.v": Point("self_attn.v_proj"),
        "attn.z": Point("self_attn.out_proj", io="input"),
        "attn.out": Point("self_attn.out_proj"),
        "attn.pattern": Point("self_attn", tuple_index=1),
        "resid_mid": Point("final_layer_norm", io="input", when=_PRE_LN, tokens_flat=True),
        "ln2": Point("final_layer_norm", when=_PRE_LN, tokens_flat=True),
        "mlp.up": Point("fc1", tokens_flat=True),
        "mlp.act": Point("activation_fn", tokens_flat=True),
        "mlp.down_in": Point("fc2", io="input", tokens_flat=True),
        "mlp.out": Point("fc2", tokens_flat=True),
        "resid_post": LAYER_OUT,
        "final_norm": Point("model.decoder.final_layer_norm"),
        "unembed": Point("lm_head"),
    },
)

PHI = Adapter(
    name="phi",
    architectures=("PhiForCausalLM",),
    model_types=("phi",),
    layers="model.layers",
    notes="partial rotary",
    points={
        "embed": Point("model.embed_tokens"),
        "resid_pre": LAYER,
        "ln1": Point("input_layernorm"),
        "attn.q": Point("self_attn.q_proj"),
        "attn.k": Point("self_attn.k_proj"),
        "attn.v": Point("self_attn.v_proj"),
        "attn.z": Point("self_attn.dense", io="input"),
        "attn.out": Point("self_attn.dense"),
        "attn.pattern": Point("self_attn", tuple_index=1),
        "mlp.up": Point("mlp.fc1"),
        "mlp.act": Point("mlp.activation_fn"),
        "mlp.down_in": Point("mlp.fc2", io="input"),
        "mlp.out": Point("mlp"),
        "resid_post": LAYER_OUT,
        "final_norm": Point("model.final_layernorm"),
        "unembed": Point("lm_head"),
    },
)

PHI3 = Adapter(
    name="phi3",
    architectures=("Phi3ForCausalLM",),
    model_types=("phi3",),
    layers="model.layers",
    points={
        "embed": Point("model.embed_tokens"),
        "resid_pre": LAYER,
        "ln1": Point("input_layernorm"),
        "attn.q": Point("self_attn.qkv_proj", fused="concat", part="q"),
        "attn.k": Point("self_attn.qkv_proj", fused="concat", part="k"),
        "attn.v": Point("self_attn.qkv_proj", fused="concat", part="v"),
        "attn.z": Point("self_attn.o_proj", io="input"),
        "attn.out": Point("self_attn.o_proj"),
        "attn.pattern": Point("self_attn", tuple_index=1),
        "resid_mid": Point("post_attention_layernorm", io="input"),
        "ln2": Point("post_attention_layernorm"),
        "mlp.gate": Point("mlp.gate_up_proj", fused="halves", part="gate"),
        "mlp.up": Point("mlp.gate_up_proj", fused="halves", part="up"),
        "mlp.act": Point("mlp.activation_fn"),
        "mlp.down_in": Point("mlp.down_proj", io="input"),
        "mlp.out": Point("mlp"),
        "resid_post": LAYER_OUT,
        "final_norm": Point("model.norm"),
        "unembed": Point("lm_head"),
    },
)


def _falcon_qkv(part: str) -> tuple[Point, ...]:
    """Falcon stores q, k, v in one of three layouts, chosen by two config flags."""
    module = "self_attention.query_key_value"
    return (
        Point(module, fused="grouped", part=part, when={"new_decoder_architecture": True}),
        Point(
            module,
            fused="concat_mq",
            part=part,
            when={"new_decoder_architecture": False, "multi_query": True},
        ),
        Point(
            module,
            fused="per_head",
            part=part,
            when={"new_decoder_architecture": False, "multi_query": False},
        ),
    )


FALCON = Adapter(
    name="falcon",
    architectures=("FalconForCausalLM",),
    model_types=("falcon",),
    layers="transformer.h",
    notes="three q/k/v layouts chosen by new_decoder_architecture and multi_query; "
    "parallel attention by default",
    points={
        "embed": Point("transformer.word_embeddings"),
        "resid_pre": LAYER,
        "ln1": (Point("ln_attn"), Point("input_layernorm")),
        "attn.q": _falcon_qkv("q"),
        "attn.k": _falcon_qkv("k"),
        "attn.v": _falcon_qkv("v"),
        "attn.z": Point("self_attention.dense", io="input"),
        "attn.out": Point("self_attention.dense"),
        "attn.pattern": Point("self_attention", tuple_index=1),
        "resid_mid": Point("post_attention_layernorm", io="input"),
        "ln2": (Point("ln_mlp"), Point("post_attention_layernorm")),
        "mlp.up": Point("mlp.dense_h_to_4h"),
        "mlp.act": Point("mlp.act"),
        "mlp.down_in": Point("mlp.dense_4h_to_h", io="input"),
        "mlp.out": Point("mlp"),
        "resid_post": LAYER_OUT,
        "final_norm": Point("transformer.ln_f"),
        "unembed": Point("lm_head"),
    },
)

BUILTIN_ADAPTERS = (
    LLAMA,
    MISTRAL,
    QWEN2,
    QWEN3,
    GEMMA2,
    GEMMA3,
    GPT2,
    GPT_NEOX,
    OPT,
    PHI,
    PHI3,
    FALCON,
    *DENSE_ADAPTERS,
    *MOE_ADAPTERS,
)
