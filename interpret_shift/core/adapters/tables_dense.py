"""Tables of dense (non-MoE) families, each mapped from its transformers 5 modeling code.

Roles, not names: OLMo-2 and EXAONE-4 normalise each sublayer's *output* (no ``ln1``/
``ln2``; ``resid_mid`` is the MLP's input), Cohere, GPT-J and CodeGen run attention and
MLP in parallel on one norm (no ``resid_mid``), BLOOM's attention and MLP modules add
the residual themselves (so ``attn.out``/``mlp.out`` are their output projections).
"""

from __future__ import annotations

from interpret_shift.core.adapters.layouts import LAYER, LAYER_OUT, llama_like, mlp_points
from interpret_shift.core.adapters.spec import Adapter, Point

QK_NORMS = ("q_norm", "k_norm")
_POST_NORMS = "each sublayer's output is normalised before it is added"

OLMO = llama_like(
    "olmo",
    ("OlmoForCausalLM",),
    ("olmo",),
    notes="LayerNorm without parameters; optional q/k/v clipping (clip_qkv)",
)
OLMO2 = llama_like(
    "olmo2",
    ("Olmo2ForCausalLM",),
    ("olmo2",),
    ln1=None,
    ln2=None,
    qk_norms=QK_NORMS,
    notes=_POST_NORMS + "; q/k RMSNorm over all heads at once",
)
OLMO3 = llama_like(
    "olmo3",
    ("Olmo3ForCausalLM",),
    ("olmo3",),
    ln1=None,
    ln2=None,
    qk_norms=QK_NORMS,
    notes=_POST_NORMS + "; q/k RMSNorm over all heads at once; sliding-window layers",
)
EXAONE4 = llama_like(
    "exaone4",
    ("Exaone4ForCausalLM",),
    ("exaone4",),
    ln1=None,
    ln2=None,
    qk_norms=QK_NORMS,
    notes=_POST_NORMS + "; rotary embeddings only on sliding-window layers",
)
GEMMA = llama_like(
    "gemma",
    ("GemmaForCausalLM",),
    ("gemma",),
    norm_offset=1.0,
    notes="embeddings scaled by sqrt(d_model) inside the embedding module",
)
GRANITE = llama_like(
    "granite",
    ("GraniteForCausalLM",),
    ("granite",),
    notes="embedding, residual and attention multipliers and a logit divisor from the config: "
    "resid_mid = resid_pre + residual_multiplier * attn.out",
)
COHERE = llama_like(
    "cohere",
    ("CohereForCausalLM",),
    ("cohere",),
    ln2=None,
    parallel=True,
    qk_norms=QK_NORMS,
    notes="logits = unembed * logit_scale; interleaved rotary embeddings",
)
COHERE2 = llama_like(
    "cohere2",
    ("Cohere2ForCausalLM",),
    ("cohere2",),
    ln2=None,
    parallel=True,
    notes="logits = unembed * logit_scale; rotary embeddings only on sliding-window layers",
)
HELIUM = llama_like("helium", ("HeliumForCausalLM",), ("helium",))
SMOLLM3 = llama_like(
    "smollm3",
    ("SmolLM3ForCausalLM",),
    ("smollm3",),
    notes="some layers use no positional encoding (no_rope_layers)",
)
SEED_OSS = llama_like("seed_oss", ("SeedOssForCausalLM",), ("seed_oss",))
ERNIE4_5 = llama_like("ernie4_5", ("Ernie4_5ForCausalLM",), ("ernie4_5",))
ARCEE = llama_like(
    "arcee", ("ArceeForCausalLM",), ("arcee",), mlp="plain", notes="MLP without a gate"
)
NEMOTRON = llama_like(
    "nemotron",
    ("NemotronForCausalLM",),
    ("nemotron",),
    mlp="plain",
    norm_offset=1.0,
    notes="LayerNorm1P; MLP without a gate; partial rotary",
)
GLM = llama_like(
    "glm",
    ("GlmForCausalLM",),
    ("glm",),
    mlp="fused",
    notes="partial interleaved rotary",
)
GLM4 = llama_like(
    "glm4",
    ("Glm4ForCausalLM",),
    ("glm4",),
    mlp="fused",
    notes="sandwich norms (post_self_attn_layernorm, "
    "post_mlp_layernorm) normalise each sublayer's output",
)
STARCODER2 = llama_like(
    "starcoder2",
    ("Starcoder2ForCausalLM",),
    ("starcoder2",),
    mlp="c_fc",
    notes="LayerNorm with biases; tied embeddings",
)
STABLELM = llama_like(
    "stablelm",
    ("StableLmForCausalLM",),
    ("stablelm",),
    serial_when={"use_parallel_residual": False},
    notes="optional parallel residual (use_parallel_residual); per-head q/k LayerNorms "
    "(qk_layernorm) are not folded into W_q/W_k; partial rotary",
)

_QKV = "self_attn.query_key_value"
PERSIMMON = Adapter(
    name="persimmon",
    architectures=("PersimmonForCausalLM",),
    model_types=("persimmon",),
    layers="model.layers",
    q_norm="self_attn.q_layernorm",
    k_norm="self_attn.k_layernorm",
    notes="per-head q/k LayerNorms; squared-ReLU MLP; partial rotary",
    points={
        "embed": Point("model.embed_tokens"),
        "resid_pre": LAYER,
        "ln1": Point("input_layernorm"),
        "attn.q": Point(_QKV, fused="per_head", part="q"),
        "attn.k": Point(_QKV, fused="per_head", part="k"),
        "attn.v": Point(_QKV, fused="per_head", part="v"),
        "attn.z": Point("self_attn.dense", io="input"),
        "attn.out": Point("self_attn.dense"),
        "attn.pattern": Point("self_attn", tuple_index=1),
        "resid_mid": Point("post_attention_layernorm", io="input"),
        "ln2": Point("post_attention_layernorm"),
        "mlp.up": Point("mlp.dense_h_to_4h"),
        "mlp.act": Point("mlp.act"),
        "mlp.down_in": Point("mlp.dense_4h_to_h", io="input"),
        "mlp.out": Point("mlp"),
        "resid_post": LAYER_OUT,
        "final_norm": Point("model.final_layernorm"),
        "unembed": Point("lm_head"),
    },
)


def _gpt_style(
    name: str, architecture: str, attention: dict[str, Point], *, parallel: bool, notes: str
) -> Adapter:
    """GPT-2's descendants: ``transformer.h``, ``ln_1``/``ln_2``, an ``attn`` and an ``mlp``."""
    points: dict[str, Point | tuple[Point, ...]] = {
        "embed": Point("transformer.wte"),
        "resid_pre": LAYER,
        "ln1": Point("ln_1"),
        **attention,
        "attn.pattern": Point("attn", tuple_index=1),
        "resid_post": LAYER_OUT,
        "final_norm": Point("transformer.ln_f"),
        "unembed": Point("lm_head"),
    }
    if not parallel:
        points["resid_mid"] = Point("ln_2", io="input")
        points["ln2"] = Point("ln_2")
    if name == "gpt_bigcode":
        points.update(mlp_points("c_fc"))
    else:
        points.update(
            {
                "mlp.up": Point("mlp.fc_in"),
                "mlp.act": Point("mlp.act"),
                "mlp.down_in": Point("mlp.fc_out", io="input"),
                "mlp.out": Point("mlp"),
            }
        )
    return Adapter(
        name=name,
        architectures=(architecture,),
        model_types=(name,),
        layers="transformer.h",
        points=points,
        notes=notes,
    )


def _bigcode_qkv(part: str) -> tuple[Point, ...]:
    """GPT-BigCode's ``c_attn``: ``[q | k | v]`` with one kv head, or per head without MQA."""
    return (
        Point("attn.c_attn", fused="concat_mq", part=part, when={"multi_query": True}),
        Point("attn.c_attn", fused="per_head", part=part, when={"multi_query": False}),
    )


GPT_BIGCODE = _gpt_style(
    "gpt_bigcode",
    "GPTBigCodeForCausalLM",
    {
        "attn.q": _bigcode_qkv("q"),
        "attn.k": _bigcode_qkv("k"),
        "attn.v": _bigcode_qkv("v"),
        "attn.z": Point("attn.c_proj", io="input"),
        "attn.out": Point("attn.c_proj"),
    },
    parallel=False,
    notes="q, k, v fused in c_attn (multi-query by default); learned absolute positions",
)
GPTJ = _gpt_style(
    "gptj",
    "GPTJForCausalLM",
    {
        "attn.q": Point("attn.q_proj"),
        "attn.k": Point("attn.k_proj"),
        "attn.v": Point("attn.v_proj"),
        "attn.z": Point("attn.out_proj", io="input"),
        "attn.out": Point("attn.out_proj"),
    },
    parallel=True,
    notes="attention and MLP both read ln_1; partial interleaved rotary",
)
CODEGEN = _gpt_style(
    "codegen",
    "CodeGenForCausalLM",
    {
        "attn.q": Point("attn.qkv_proj", fused="codegen", part="q"),
        "attn.k": Point("attn.qkv_proj", fused="codegen", part="k"),
        "attn.v": Point("attn.qkv_proj", fused="codegen", part="v"),
        "attn.z": Point("attn.out_proj", io="input"),
        "attn.out": Point("attn.out_proj"),
    },
    parallel=True,
    notes="q, v, k fused in four model-parallel blocks; partial interleaved rotary",
)

_BLOOM_QKV = "self_attention.query_key_value"
BLOOM = Adapter(
    name="bloom",
    architectures=("BloomForCausalLM",),
    model_types=("bloom",),
    layers="transformer.h",
    notes="ALiBi instead of positions; a LayerNorm right after the embedding; attention and "
    "MLP modules add the residual themselves",
    points={
        "embed": Point("transformer.word_embeddings"),
        "resid_pre": LAYER,
        "ln1": Point("input_layernorm"),
        "attn.q": Point(_BLOOM_QKV, fused="per_head", part="q"),
        "attn.k": Point(_BLOOM_QKV, fused="per_head", part="k"),
        "attn.v": Point(_BLOOM_QKV, fused="per_head", part="v"),
        "attn.z": Point("self_attention.dense", io="input"),
        "attn.out": Point("self_attention.dense"),
        "attn.pattern": Point("self_attention", tuple_index=1),
        "resid_mid": Point(
            "post_attention_layernorm",
            io="input",
            when={"apply_residual_connection_post_layernorm": False},
        ),
        "ln2": Point("post_attention_layernorm"),
        "mlp.up": Point("mlp.dense_h_to_4h"),
        "mlp.act": Point("mlp.gelu_impl"),
        "mlp.down_in": Point("mlp.dense_4h_to_h", io="input"),
        "mlp.out": Point("mlp.dense_4h_to_h"),
        "resid_post": LAYER_OUT,
        "final_norm": Point("transformer.ln_f"),
        "unembed": Point("lm_head"),
    },
)

DENSE_ADAPTERS = (
    OLMO,
    OLMO2,
    OLMO3,
    EXAONE4,
    GEMMA,
    GRANITE,
    COHERE,
    COHERE2,
    HELIUM,
    SMOLLM3,
    SEED_OSS,
    ERNIE4_5,
    ARCEE,
    NEMOTRON,
    GLM,
    GLM4,
    STARCODER2,
    STABLELM,
    PERSIMMON,
    GPT_BIGCODE,
    GPTJ,
    CODEGEN,
    BLOOM,
)
