"""What an architecture adapter is: a table from canonical names to module paths.

An adapter is plain data. Each canonical point names the module whose input or output
it is, relative to one decoder layer (``layers.{i}.*``) or to the model (top-level
points). Fused projections (one module computing q, k and v, or gate and up) are
exposed as *virtual* points: a named fusion scheme says which slice of the module's output
(and of its weight's rows) belongs to the part. Mixture-of-experts layers add router points
and an :class:`Experts` entry that says where the stacked expert weights are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

IO = Literal["output", "input"]

#: Fusion schemes of fused projections; see ``interpret_shift.core.adapters.fusion``.
FUSION_SCHEMES = ("concat", "concat_mq", "per_head", "grouped", "halves", "codegen")

#: Canonical per-layer points an adapter may define.
LAYER_POINTS = (
    "resid_pre",
    "ln1",
    "attn.q",
    "attn.k",
    "attn.v",
    "attn.z",
    "attn.out",
    "attn.pattern",
    "resid_mid",
    "ln2",
    "mlp.router",
    "mlp.router_weights",
    "mlp.experts_chosen",
    "mlp.gate",
    "mlp.up",
    "mlp.act",
    "mlp.down_in",
    "mlp.experts_out",
    "mlp.shared_out",
    "mlp.out",
    "resid_post",
)
#: Canonical model-level points.
MODEL_POINTS = ("embed", "final_norm", "unembed")


@dataclass(frozen=True)
class Point:
    """Where a canonical point lives.

    ``module`` is a dotted path (relative to the layer for per-layer points). The
    activation is the module's ``io`` (first positional argument, or first element of
    a tuple output; ``tuple_index`` picks another element). ``fused`` names a fusion scheme
    and ``part`` the slice of it. ``when`` lists config attributes that must have the
    given values for this entry to apply (a point may have several candidate entries).
    ``weight_type`` is ``"linear"`` (rows are outputs) or ``"conv1d"`` (GPT-2's
    transposed Conv1D). ``tokens_flat`` marks modules that see ``(batch * seq, features)``
    (OPT's MLP); hooks still get ``(batch, seq, features)``.
    """

    module: str
    io: IO = "output"
    tuple_index: int = 0
    fused: str | None = None
    part: str | None = None
    when: Mapping[str, object] = field(default_factory=dict)
    weight_type: Literal["linear", "conv1d"] = "linear"
    tokens_flat: bool = False


@dataclass(frozen=True)
class Experts:
    """Where a mixture-of-experts layer keeps its expert MLPs' down-projections.

    transformers 5 stores the routed experts of a layer as one module with stacked 3-D
    parameters (``experts.down_proj``: ``(n_experts, d_model, d_ff)``), so there is no
    module per expert to hook; checkpoints on disk often keep one tensor per expert.
    ``down`` lists candidate tensor names relative to the layer: a name with ``{e}`` is
    one ``(d_model, d_ff)`` matrix per expert, one without is the stacked tensor. ``count``
    is the config attribute with the number of routed experts; ``shared_down`` the
    candidates for an always-on shared expert's down weight (Qwen2-MoE).
    """

    count: str
    down: tuple[str, ...]
    shared_down: tuple[str, ...] = ()


@dataclass(frozen=True)
class Adapter:
    """One architecture family's table.

    ``points`` maps a canonical name to one entry or to candidate entries, the first
    whose module exists and whose ``when`` holds is used. ``norm_offset`` is added to
    a norm's weight before folding (Gemma's RMSNorm scales by ``1 + weight``).
    ``q_norm``/``k_norm`` name per-head norms applied after the projections (Qwen3,
    Gemma3), folded into the head matrices as a per-column scale. ``experts`` marks a
    mixture-of-experts family (see :class:`Experts`); ``notes`` is free text for the
    generated family list (docs/families.md).
    """

    name: str
    architectures: tuple[str, ...]
    model_types: tuple[str, ...]
    layers: str
    points: Mapping[str, Point | tuple[Point, ...]]
    norm_offset: float = 0.0
    q_norm: str | None = None
    k_norm: str | None = None
    experts: Experts | None = None
    notes: str = ""

    def candidates(self, name: str) -> tuple[Point, ...]:
        entry = self.points.get(name, ())
        return entry if isinstance(entry, tuple) else (entry,)

    def validate(self) -> None:
        """Check the table's shape, so a bad plugin adapter fails at load, not mid-run."""
        if not self.name or not self.layers:
            raise ValueError("adapter needs a name and a layers path")
        if not (self.architectures or self.model_types):
            raise ValueError(f"adapter {self.name!r} matches no architecture or model_type")
        known = set(LAYER_POINTS) | set(MODEL_POINTS)
        for name in self.points:
            if name not in known:
                raise ValueError(f"adapter {self.name!r}: unknown canonical point {name!r}")
            for point in self.candidates(name):
                if point.fused is not None and point.fused not in FUSION_SCHEMES:
                    raise ValueError(f"adapter {self.name!r}: {name} has an unknown fusion scheme")
                if point.fused is not None and point.part is None:
                    raise ValueError(f"adapter {self.name!r}: {name} is fused but has no part")
        for required in ("embed", "unembed", "attn.q", "attn.k"):
            if required not in self.points:
                raise ValueError(f"adapter {self.name!r} lacks the required point {required!r}")
        if "mlp.down_in" not in self.points and self.experts is None:
            raise ValueError(f"adapter {self.name!r} needs an 'mlp.down_in' point or experts")
