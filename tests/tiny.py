"""Tiny random-weight models of every supported family, built from configs (no hub)."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM

VOCAB = 96
COMMON = dict(
    vocab_size=VOCAB, max_position_embeddings=64, pad_token_id=0, bos_token_id=1, eos_token_id=2
)

#: family -> (model_type, config overrides). Sizes: d_model 32, 4 heads, 2 layers.
TINY = {
    "llama": (
        "llama",
        dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
    ),
    "mistral": (
        "mistral",
        dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
    ),
    "qwen2": (
        "qwen2",
        dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
    ),
    "qwen3": (
        "qwen3",
        dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
        ),
    ),
    "gemma2": (
        "gemma2",
        dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
        ),
    ),
    "gemma3": (
        "gemma3_text",
        dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=8,
        ),
    ),
    "gpt2": ("gpt2", dict(n_embd=32, n_layer=2, n_head=4, n_inner=48, n_positions=64)),
    "gpt_neox": (
        "gpt_neox",
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4),
    ),
    "gpt_neox_serial": (
        "gpt_neox",
        dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            use_parallel_residual=False,
        ),
    ),
    "opt": (
        "opt",
        dict(
            hidden_size=32,
            ffn_dim=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            word_embed_proj_dim=32,
        ),
    ),
    "phi": (
        "phi",
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4),
    ),
    "phi3": (
        "phi3",
        dict(
            hidden_size=32,
            intermediate_size=48,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
        ),
    ),
    "falcon": ("falcon", dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)),
    "falcon_new": (
        "falcon",
        dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            new_decoder_architecture=True,
            num_kv_heads=2,
        ),
    ),
    "falcon_mha": (
        "falcon",
        dict(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            multi_query=False,
            parallel_attn=False,
        ),
    ),
}
FAMILIES = sorted(TINY)


def tiny_config(family: str, attn: str = "eager"):
    model_type, overrides = TINY[family]
    config = AutoConfig.for_model(model_type, **COMMON, **overrides)
    config.architectures = [AutoModelForCausalLM._model_mapping[type(config)].__name__]
    config._attn_implementation = attn
    return config


def tiny_model(family: str, seed: int = 0, attn: str = "eager"):
    """A random-weight model; norms get random weights too, so folding is really tested."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(family, attn), attn_implementation=attn)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or "ln" in name:
                parameter.add_(torch.randn_like(parameter) * 0.3)
    return model.eval().requires_grad_(False)  # a study subject: inputs get gradients, not weights


def tokens(batch: int = 2, length: int = 7, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(3, VOCAB, (batch, length), generator=generator)


def tiny_tokenizer():
    """A word-level fast tokenizer over a few dozen words (fits the tiny vocabulary)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<s>", "</s>", "<unk>"] + (
        "the a of to and in is it you that was for on are with as be at one have this from "
        "by not word what all were we when your can said there use an each which she do how "
        "if will up other about out many then so some would make like time has look two "
        "more write go see no way could first water day get come made may part "
        "please translate summarize explain list give answer question text sentence"
    ).split()
    vocab = {word: index for index, word in enumerate(dict.fromkeys(words))}
    assert len(vocab) <= VOCAB
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )


# -- every family with a built-in table (tests/test_families.py) ---------------------------

_LLAMA_SIZES = dict(
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
)
_MOE = dict(num_experts_per_tok=2, moe_intermediate_size=16)
_GPT_SIZES = dict(n_embd=32, n_layer=2, n_head=4, n_positions=64)

#: family -> (model_type, config overrides) for the families added with issue 16.
TINY_MORE = {
    **{
        family: (family, dict(_LLAMA_SIZES))
        for family in (
            "olmo",
            "olmo2",
            "olmo3",
            "exaone4",
            "gemma",
            "granite",
            "cohere",
            "cohere2",
            "helium",
            "smollm3",
            "seed_oss",
            "ernie4_5",
            "arcee",
            "nemotron",
            "glm",
            "glm4",
            "starcoder2",
            "stablelm",
        )
    },
    "persimmon": (
        "persimmon",
        dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4),
    ),
    "gpt_bigcode": ("gpt_bigcode", dict(_GPT_SIZES, n_inner=48)),
    "gpt_bigcode_mha": ("gpt_bigcode", dict(_GPT_SIZES, n_inner=48, multi_query=False)),
    "gptj": ("gptj", dict(_GPT_SIZES, n_inner=48, rotary_dim=4)),
    "codegen": ("codegen", dict(_GPT_SIZES, n_inner=48, n_ctx=64, rotary_dim=4)),
    "bloom": ("bloom", dict(hidden_size=32, n_layer=2, n_head=4)),
    "mixtral": ("mixtral", dict(_LLAMA_SIZES, num_local_experts=4, num_experts_per_tok=2)),
    "olmoe": ("olmoe", dict(_LLAMA_SIZES, num_experts=4, **_MOE)),
    "qwen2_moe": (
        "qwen2_moe",
        dict(_LLAMA_SIZES, num_experts=4, shared_expert_intermediate_size=24, **_MOE),
    ),
    "qwen3_moe": ("qwen3_moe", dict(_LLAMA_SIZES, num_experts=4, mlp_only_layers=[1], **_MOE)),
    "granitemoe": ("granitemoe", dict(_LLAMA_SIZES, num_local_experts=4, num_experts_per_tok=2)),
}
ALL_TINY = {**TINY, **TINY_MORE}


def family_config(family: str, attn: str = "eager"):
    """The tiny config of any family in ``ALL_TINY`` (the classic ones and the newer ones)."""
    model_type, overrides = ALL_TINY[family]
    config = AutoConfig.for_model(model_type, **COMMON, **overrides)
    config.architectures = [AutoModelForCausalLM._model_mapping[type(config)].__name__]
    config._attn_implementation = attn
    return config


def family_model(family: str, seed: int = 0, attn: str = "eager"):
    """Like :func:`tiny_model` for any family in ``ALL_TINY``; expert weights are randomised too."""
    torch.manual_seed(seed)
    config = family_config(family, attn)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attn)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "norm" in name or "ln" in name:
                parameter.add_(torch.randn_like(parameter) * 0.3)
            elif parameter.dim() == 3 or "gate" in name or "router" in name:
                parameter.normal_(0, 0.2)  # MoE weights may start as zeros or empty
    return model.eval().requires_grad_(False)
