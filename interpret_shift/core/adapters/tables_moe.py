"""Tables of mixture-of-experts families (transformers 5 module trees).

Each MoE block has a router (``gate`` or ``router``) returning ``(logits, top-k weights,
top-k indices)`` and one ``experts`` module holding every routed expert as stacked 3-D
parameters, so individual experts are not modules and cannot be hooked one by one. The
hook points are the router's three outputs, the routed experts' weighted sum
(``mlp.experts_out``), a shared expert where there is one, and the block's output. The
expert weights are read by :class:`~interpret_shift.core.adapters.spec.Experts` entries,
which also know the per-expert tensor names checkpoints keep on disk.
"""

from __future__ import annotations

from interpret_shift.core.adapters.layouts import llama_like, moe_experts, moe_points

_ROUTED = "top-k routed experts stacked in one module"

MIXTRAL = llama_like(
    "mixtral",
    ("MixtralForCausalLM",),
    ("mixtral",),
    moe=moe_points(),
    experts=moe_experts("num_local_experts", legacy=("block_sparse_moe.experts.{e}.w2.weight",)),
    notes=_ROUTED + " (checkpoints: block_sparse_moe.experts.{e}.w1/w2/w3)",
)
OLMOE = llama_like(
    "olmoe",
    ("OlmoeForCausalLM",),
    ("olmoe",),
    moe=moe_points(),
    experts=moe_experts("num_experts"),
    qk_norms=("q_norm", "k_norm"),
    notes=_ROUTED + "; q/k RMSNorm over all heads at once",
)
QWEN2_MOE = llama_like(
    "qwen2_moe",
    ("Qwen2MoeForCausalLM",),
    ("qwen2_moe",),
    moe=moe_points(shared="shared_expert"),
    experts=moe_experts("num_experts", shared="shared_expert"),
    notes=_ROUTED + " plus a shared expert behind a sigmoid gate; layers in mlp_only_layers "
    "are dense",
)
QWEN3_MOE = llama_like(
    "qwen3_moe",
    ("Qwen3MoeForCausalLM",),
    ("qwen3_moe",),
    moe=moe_points(),
    experts=moe_experts("num_experts"),
    qk_norms=("q_norm", "k_norm"),
    notes=_ROUTED + "; per-head q/k RMSNorm; layers in mlp_only_layers are dense",
)
GRANITEMOE = llama_like(
    "granitemoe",
    ("GraniteMoeForCausalLM",),
    ("granitemoe",),
    moe=moe_points("block_sparse_moe", router="router"),
    experts=moe_experts(
        "num_local_experts",
        block="block_sparse_moe",
        legacy=("block_sparse_moe.output_linear.weight",),
    ),
    notes=_ROUTED + " (checkpoints: stacked input_linear/output_linear); Granite's "
    "multipliers as in granite",
)

MOE_ADAPTERS = (MIXTRAL, OLMOE, QWEN2_MOE, QWEN3_MOE, GRANITEMOE)
