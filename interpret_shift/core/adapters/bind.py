"""An adapter bound to one model: canonical names resolved to modules, slices and sizes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch

from interpret_shift.core.adapters.fusion import kv_heads, part_index
from interpret_shift.core.adapters.spec import LAYER_POINTS, MODEL_POINTS, Adapter, Point
from interpret_shift.errors import HookPointError


@dataclass(frozen=True)
class BoundPoint:
    """A canonical point of one model: ``path`` is the full module path ('' is the root)."""

    name: str
    path: str
    point: Point
    index: torch.Tensor | None  # feature indices of a virtual (fused) point
    layer_path: str | None = None

    @property
    def io(self) -> str:
        return self.point.io


class Layout:
    """Resolves canonical names against a config and a module tree.

    ``has_module(path)`` says whether a module exists; it is backed by the live model
    or, for streamed checkpoints, by the tensor names of the safetensors files.
    """

    def __init__(self, adapter: Adapter, config, has_module: Callable[[str], bool]) -> None:
        self.adapter, self.config, self._has_module = adapter, config, has_module
        self.n_layers = int(config.num_hidden_layers)
        # attention-free models (Mamba, RWKV) have no heads: 0, and no attention points
        self.n_heads = int(getattr(config, "num_attention_heads", None) or 0)
        self.d_model = int(config.hidden_size)
        per_head = self.d_model // self.n_heads if self.n_heads else 0
        self.d_head = int(getattr(config, "head_dim", None) or per_head)
        config_kv = getattr(config, "num_key_value_heads", None) or getattr(
            config, "num_kv_heads", None
        )
        q_entry = self.entry("attn.q", 0)
        self.n_kv = kv_heads(q_entry.fused if q_entry else None, int(config_kv or self.n_heads))

    def layer_path(self, layer: int) -> str:
        return f"{self.adapter.layers}.{layer}"

    def _applies(self, point: Point, base: str) -> bool:
        if any(getattr(self.config, key, None) != value for key, value in point.when.items()):
            return False
        return point.module == "" or self._has_module(_join(base, point.module))

    def entry(self, role: str, layer: int | None) -> Point | None:
        """The first candidate entry of ``role`` that applies to this model, if any."""
        base = self.layer_path(layer) if role in LAYER_POINTS else ""
        for point in self.adapter.candidates(role):
            if self._applies(point, base):
                return point
        return None

    def module_path(self, role: str, layer: int | None = None) -> str | None:
        point = self.entry(role, layer)
        if point is None:
            return None
        base = self.layer_path(layer) if role in LAYER_POINTS else ""
        return _join(base, point.module)

    def fused_index(self, point: Point, width: int) -> torch.Tensor | None:
        if point.fused is None:
            return None
        return part_index(point.fused, point.part, width, self.n_heads, self.n_kv, self.d_head)

    @cached_property
    def names(self) -> list[str]:
        """Every canonical point this model has, in forward order."""
        names = [] if self.entry("embed", None) is None else ["embed"]
        for layer in range(self.n_layers):
            names += [
                f"layers.{layer}.{role}"
                for role in LAYER_POINTS
                if self.entry(role, layer) is not None
            ]
        names += [role for role in MODEL_POINTS[1:] if self.entry(role, None) is not None]
        return names

    def split(self, name: str) -> tuple[str, int | None]:
        """``'layers.3.attn.q'`` -> ``('attn.q', 3)``; ``'embed'`` -> ``('embed', None)``."""
        if name in MODEL_POINTS:
            return name, None
        parts = name.split(".", 2)
        if len(parts) == 3 and parts[0] == "layers" and parts[1].isdigit():
            layer, role = int(parts[1]), parts[2]
            if role in LAYER_POINTS and layer < self.n_layers:
                return role, layer
        raise HookPointError(
            f"{name!r} is not a hook point of this {self.adapter.name} model.",
            "Run `interpret-shift hookpoints MODEL` to list them; per-layer points look like "
            f"'layers.0.attn.q' (layers 0..{self.n_layers - 1}).",
        )


def _join(base: str, module: str) -> str:
    return ".".join(part for part in (base, module) if part)
