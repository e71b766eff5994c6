"""Building blocks of the built-in tables: the module trees most families share.

Most decoder-only models since Llama keep one module tree (``model.layers.{i}`` with
``self_attn.{q,k,v,o}_proj`` and an ``mlp``) and differ in where the norms sit, how the
MLP is split and whether attention and MLP read the same input. :func:`llama_like` builds
a table from those choices; :func:`moe_points` gives the points of a mixture-of-experts
block, whose experts live in one module with stacked 3-D weights.
"""

from __future__ import annotations

from typing import Literal

from interpret_shift.core.adapters.spec import Adapter, Experts, Point

LAYER = Point("", io="input")  # the decoder layer's own input/output
LAYER_OUT = Point("", io="output")

Mlp = Literal["gated", "fused", "plain", "c_fc", "moe"]


def mlp_points(kind: Mlp, prefix: str = "mlp") -> dict[str, Point | tuple[Point, ...]]:
    """The MLP's points for one of the usual module layouts.

    - ``gated``: ``gate_proj``, ``up_proj``, ``act_fn``, ``down_proj`` (Llama).
    - ``fused``: ``gate_up_proj`` split in halves, ``activation_fn``, ``down_proj`` (GLM).
    - ``plain``: ``up_proj``, ``act_fn``, ``down_proj`` without a gate (Nemotron, Arcee).
    - ``c_fc``: ``c_fc``, ``act``, ``c_proj`` as ``nn.Linear`` (StarCoder2).
    """
    p = f"{prefix}."
    if kind == "gated":
        return {
            "mlp.gate": Point(p + "gate_proj"),
            "mlp.up": Point(p + "up_proj"),
            "mlp.act": Point(p + "act_fn"),
            "mlp.down_in": Point(p + "down_proj", io="input"),
            "mlp.out": Point(prefix),
        }
    if kind == "fused":
        return {
            "mlp.gate": Point(p + "gate_up_proj", fused="halves", part="gate"),
            "mlp.up": Point(p + "gate_up_proj", fused="halves", part="up"),
            "mlp.act": Point(p + "activation_fn"),
            "mlp.down_in": Point(p + "down_proj", io="input"),
            "mlp.out": Point(prefix),
        }
    if kind == "plain":
        return {
            "mlp.up": Point(p + "up_proj"),
            "mlp.act": Point(p + "act_fn"),
            "mlp.down_in": Point(p + "down_proj", io="input"),
            "mlp.out": Point(prefix),
        }
    if kind == "c_fc":
        return {
            "mlp.up": Point(p + "c_fc"),
            "mlp.act": Point(p + "act"),
            "mlp.down_in": Point(p + "c_proj", io="input"),
            "mlp.out": Point(prefix),
        }
    return moe_points(prefix)


def moe_points(
    block: str = "mlp", router: str = "gate", shared: str | None = None
) -> dict[str, Point | tuple[Point, ...]]:
    """Points of a transformers-5 MoE block: router outputs, routed and shared experts.

    The router returns ``(logits, top-k weights, top-k indices)`` for flattened tokens;
    hooks see them as ``(batch, seq, ...)``. Dense layers of a partly sparse model
    (Qwen-MoE ``mlp_only_layers``) keep the Llama MLP, so its points are candidates too:
    each applies only where its module exists.
    """
    r, e = f"{block}.{router}", f"{block}.experts"
    points: dict[str, Point | tuple[Point, ...]] = {
        "mlp.router": Point(r, tuple_index=0, tokens_flat=True),
        "mlp.router_weights": Point(r, tuple_index=1, tokens_flat=True),
        "mlp.experts_chosen": Point(r, tuple_index=2, tokens_flat=True),
        "mlp.experts_out": Point(e, tokens_flat=True),
        "mlp.out": Point(block),
    }
    dense = mlp_points("gated", block)
    for role in ("mlp.gate", "mlp.up", "mlp.act", "mlp.down_in"):
        points[role] = dense[role]
    if shared is not None:
        points["mlp.shared_out"] = Point(f"{block}.{shared}", tokens_flat=True)
    return points


def moe_experts(
    count: str, block: str = "mlp", legacy: tuple[str, ...] = (), shared: str | None = None
) -> Experts:
    """Expert down-projections: the model's stacked tensor, then on-disk per-expert names."""
    shared_down = () if shared is None else (f"{block}.{shared}.down_proj.weight",)
    return Experts(
        count=count,
        down=(f"{block}.experts.down_proj", f"{block}.experts.{{e}}.down_proj.weight", *legacy),
        shared_down=shared_down,
    )


def llama_like(
    name: str,
    architectures: tuple[str, ...],
    model_types: tuple[str, ...],
    *,
    ln1: str | None = "input_layernorm",
    ln2: str | None = "post_attention_layernorm",
    parallel: bool = False,
    mlp: Mlp = "gated",
    norm_offset: float = 0.0,
    qk_norms: tuple[str, str] | None = None,
    final_norm: str = "model.norm",
    experts: Experts | None = None,
    moe: dict[str, Point | tuple[Point, ...]] | None = None,
    serial_when: dict[str, object] | None = None,
    notes: str = "",
) -> Adapter:
    """Llama and its descendants share one module tree; the arguments say where they differ.

    ``ln1``/``ln2`` are the pre-attention and pre-MLP norms (None for post-norm blocks,
    OLMo-2, that normalise each sublayer's output instead); ``parallel`` blocks feed
    attention and MLP the same input and have no ``resid_mid``; ``serial_when`` names the
    config values under which a block with an optional parallel mode is serial (StableLM).
    """
    points: dict[str, Point | tuple[Point, ...]] = {
        "embed": Point("model.embed_tokens"),
        "resid_pre": LAYER,
        "attn.q": Point("self_attn.q_proj"),
        "attn.k": Point("self_attn.k_proj"),
        "attn.v": Point("self_attn.v_proj"),
        "attn.z": Point("self_attn.o_proj", io="input"),
        "attn.out": Point("self_attn.o_proj"),
        "attn.pattern": Point("self_attn", tuple_index=1),
        "resid_post": LAYER_OUT,
        "final_norm": Point(final_norm),
        "unembed": Point("lm_head"),
    }
    if ln1 is not None:
        points["ln1"] = Point(ln1)
    if not parallel:
        block = "mlp" if moe is None else _block_of(moe)
        when = serial_when or {}
        points["resid_mid"] = Point(ln2 or block, io="input", when=when)
        if ln2 is not None:
            points["ln2"] = Point(ln2, when=when)
    points.update(moe if moe is not None else mlp_points(mlp))
    return Adapter(
        name=name,
        architectures=architectures,
        model_types=model_types,
        layers="model.layers",
        points=points,
        norm_offset=norm_offset,
        q_norm=f"self_attn.{qk_norms[0]}" if qk_norms else None,
        k_norm=f"self_attn.{qk_norms[1]}" if qk_norms else None,
        experts=experts,
        notes=notes,
    )


def _block_of(moe: dict[str, Point | tuple[Point, ...]]) -> str:
    out = moe["mlp.out"]
    return (out[0] if isinstance(out, tuple) else out).module
