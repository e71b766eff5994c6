"""Every ``*ForCausalLM`` type of the installed transformers, as a tiny random model.

For each model type whose tiny config can be built (a generic shrinker sets the usual size
attributes the config has; types whose config, model or first forward fails are counted
apart), the subject is made the way users make it (a table if one matches, else an
inferred and proved adapter), its hook points all fire with the model's own shapes, and
each built-in method runs: saliency on a short prompt with a given response, heads and
ffn where they apply. A method that cannot apply (heads without attention q/k, ffn without
an MLP down-projection) is skipped with the reason the adapter gives; that is not a
failure. At least 90 % of the buildable types must work; the failures are printed.
"""

from __future__ import annotations

import contextlib
import time
import warnings

import pytest
import torch
from tiny import tiny_tokenizer
from transformers import AutoModelForCausalLM
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from interpret_shift.core.explainer import run_explainer
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.subject import Subject
from interpret_shift.lexicon.words import WordList
from interpret_shift.methods.ffn.explainer import FFNConcepts
from interpret_shift.methods.heads.explainer import HeadPatterns
from interpret_shift.methods.saliency.explainer import SaliencyExplainer

VOCAB = 128
#: Size attributes a config may have, and their tiny values (set only where they exist).
SIZES = dict(
    num_hidden_layers=2, n_layer=2, num_layers=2, n_layers=2, decoder_layers=2,
    hidden_size=32, n_embd=32, d_model=32, dim=32, embed_dim=32,
    num_attention_heads=4, n_head=4, num_heads=4, n_heads=4, decoder_attention_heads=4,
    num_key_value_heads=2, n_kv_heads=2, num_kv_heads=2,
    intermediate_size=64, n_inner=64, ffn_dim=64, decoder_ffn_dim=64, ffn_hidden_size=64,
    head_dim=8, rotary_dim=4, max_position_embeddings=64, n_positions=64, n_ctx=64,
    vocab_size=VOCAB, pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
    num_experts=4, num_local_experts=4, n_routed_experts=4, moe_num_experts=4,
    num_experts_per_tok=2, moe_topk=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
    moe_shared_expert_intermediate_size=32, first_k_dense_replace=1,
    kv_lora_rank=16, q_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8,
    linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
    linear_value_head_dim=8, state_size=8, expand=2, conv_kernel=4, time_step_rank=4,
    mamba_d_state=8, mamba_n_heads=4, mamba_d_head=16, mamba_n_groups=1, mamba_expand=2,
    attention_hidden_size=32, sliding_window=32, is_decoder=True,
)  # fmt: skip
MAX_PARAMETERS = 3_000_000
MIN_SHARE = 0.9


def tiny_config(model_type: str):
    """The type's config with every size attribute it has made tiny."""
    cls = CONFIG_MAPPING[model_type]
    default = cls()
    names = set(default.to_dict()) | {key for key in SIZES if hasattr(default, key)}
    settable = {
        key: value
        for key, value in SIZES.items()
        if key in names and not isinstance(getattr(cls, key, None), property)
    }
    config = cls(**settable)
    for key, value in settable.items():  # attribute maps (n_embd -> hidden_size) and the like
        with contextlib.suppress(Exception):
            if getattr(config, key, value) != value:
                setattr(config, key, value)
    config.architectures = [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]]
    return config


def build(model_type: str):
    """A tiny random model that runs a forward pass, or the reason there is none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        config = tiny_config(model_type)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, attn_implementation="eager")
        size = sum(p.numel() for p in skeleton.parameters())
        if size > MAX_PARAMETERS:
            raise ValueError(f"the tiny config still has {size:,} parameters")
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(
            config, attn_implementation="eager", experts_implementation="eager"
        )
        model.eval().requires_grad_(False)
        model(torch.randint(3, 90, (1, 5)))
    return model


def check(model, model_type: str, words: WordList) -> tuple[str, dict[str, str]]:
    """Subject, hook points and every applicable method; returns (adapter, skipped methods)."""
    subject = Subject.from_model(model, tiny_tokenizer(), source=model_type)
    names = subject.hooks.names
    n = subject.layout.n_layers
    for needed in ("embed", "layers.0.resid_pre", f"layers.{n - 1}.resid_post", "unembed"):
        assert needed in names, f"no {needed} point"
    _, cache = subject.hooks.run_with_cache(torch.randint(3, 90, (1, 5)), stop_early=False)
    assert set(cache) == set(names), f"points that never fired: {set(names) - set(cache)}"
    prompt = PromptRecord("p", "please translate the text", response="the water")
    saliency = run_explainer(SaliencyExplainer(chat_template=False), subject, [prompt])
    assert saliency["p"].arrays, "saliency wrote no arrays"
    skipped = {}
    layout = subject.layout
    if layout.entry("attn.q", 0) is not None and layout.entry("attn.k", 0) is not None:
        heads = HeadPatterns(word_list=words, top_k=4, baseline=8, layers=[0])
        assert run_explainer(heads, subject)["layer.0"].arrays
    else:
        skipped["heads"] = subject.adapter.notes or "the adapter has no attention q/k points"
    if layout.entry("mlp.down_in", 0) is not None or subject.adapter.experts is not None:
        ffn = FFNConcepts(word_list=words, components=2, top_k=2, layers=[0], svd="exact")
        assert run_explainer(ffn, subject)["layer.0"].arrays
    else:
        skipped["ffn"] = subject.adapter.notes or "the adapter has no MLP down-projection"
    return subject.adapter.name, skipped


@contextlib.contextmanager
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.mark.xdist_group("all_architectures")
def test_at_least_90_percent_of_buildable_causal_lm_types_work():
    words = WordList([f"w{i}" for i in range(5, 40)], token_ids=[[i] for i in range(5, 40)],
                     name="sweep")  # fmt: skip
    unbuildable, failed, worked = {}, {}, {}
    start = time.perf_counter()
    with one_thread():
        for model_type in sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
            try:
                model = build(model_type)
            except Exception as error:  # noqa: BLE001 - counted apart, with the reason
                unbuildable[model_type] = f"{type(error).__name__}: {error}".splitlines()[0]
                continue
            try:
                worked[model_type] = check(model, model_type, words)
            except Exception as error:  # noqa: BLE001 - the test reports every failure
                failed[model_type] = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    seconds = time.perf_counter() - start
    buildable = len(worked) + len(failed)
    inferred = sorted(t for t, (name, _) in worked.items() if name.startswith("inferred:"))
    print(f"\n{buildable} buildable causal LM types ({len(unbuildable)} not buildable tiny), "
          f"{len(worked)} work ({len(worked) - len(inferred)} by table, {len(inferred)} "
          f"inferred), {len(failed)} fail; {seconds:.0f} s")  # fmt: skip
    for model_type, reason in sorted(failed.items()):
        print(f"  FAIL {model_type}: {reason}")
    for model_type, (_, skipped) in sorted(worked.items()):
        for method, reason in skipped.items():
            print(f"  skip {method} on {model_type}: {reason}")
    assert buildable >= 100, f"only {buildable} types built; the shrinker is broken"
    assert len(worked) >= MIN_SHARE * buildable, f"{len(worked)}/{buildable} work: {failed}"
