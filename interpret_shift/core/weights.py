"""Canonical weight matrices without a forward pass, from a loaded model or streamed
tensor by tensor from safetensors shards (memory-mapped; nothing else is loaded).

Conventions (``d`` = d_model, ``dh`` = d_head):
- ``W_q(layer)``, ``W_k(layer)``: ``(n_heads, d, dh)`` so that ``E @ W_q[h]`` gives head
  ``h``'s queries for embeddings ``E``; the input norm's weight is folded in as a per-row
  scale, key heads are repeated for grouped-query attention.
- ``W_down(layer)``: ``(d_ff, d)``: one row per FFN neuron, its contribution to the residual.
  A mixture-of-experts layer stacks every routed expert's rows (expert 0 first), then a
  shared expert's: ``(n_experts * d_ff + d_shared, d)``; ``W_down_experts`` keeps them apart.
- ``embed()``, ``unembed()``: ``(vocab, d)``.
Everything is returned as float32 on the CPU.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import torch
from einops import rearrange, repeat
from safetensors import safe_open
from torch import nn

from interpret_shift.core.adapters import Adapter, Layout, find_adapter
from interpret_shift.errors import ModelLoadError


class TensorSource(Protocol):
    """Named tensors: ``get`` returns None for a name it does not have."""

    def get(self, key: str) -> torch.Tensor | None: ...

    def has_module(self, path: str) -> bool: ...


class ModelTensors:
    """Tensors of a loaded model, by parameter name."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model

    def get(self, key: str) -> torch.Tensor | None:
        path, _, attr = key.rpartition(".")
        try:
            value = getattr(self.model.get_submodule(path), attr, None)
        except AttributeError:
            return None
        return None if value is None else value.detach()

    def has_module(self, path: str) -> bool:
        try:
            self.model.get_submodule(path)
        except AttributeError:
            return False
        return True


def safetensors_shards(folder: str | Path) -> list[Path]:
    """The ``*.safetensors`` shards of a checkpoint folder, in order; an error without any."""
    folder = Path(folder)
    shards = sorted(folder.glob("*.safetensors")) if folder.is_dir() else []
    if not shards:
        raise ModelLoadError(
            f"{folder} is not a folder of .safetensors files, so weights cannot be streamed "
            "from it.",
            "Pass the folder save_pretrained() wrote (config.json and *.safetensors), or "
            "load the model without streaming.",
        )
    return shards


class SafetensorsTensors:
    """Tensors of a checkpoint folder, read one at a time from memory-mapped shards.

    Each read opens its shard, copies the one tensor out and closes the map again, so
    resident memory stays near the size of the largest tensor, not of the checkpoint.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.files: dict[str, Path] = {}
        for shard in safetensors_shards(self.folder):
            with safe_open(shard, framework="pt") as handle:
                self.files.update(dict.fromkeys(handle.keys(), shard))
        self.prefixes = {key.rsplit(".", i)[0] for key in self.files for i in (1, 2, 3)}

    def _key(self, key: str) -> str | None:
        if key in self.files:
            return key
        # Hub checkpoints may omit the base-model prefix (GPT-2: 'h.0...' for 'transformer.h.0...').
        short = key.split(".", 1)[-1]
        return short if short in self.files else None

    def get(self, key: str) -> torch.Tensor | None:
        stored = self._key(key)
        if stored is None:
            return None
        with safe_open(self.files[stored], framework="pt") as handle:
            return handle.get_tensor(stored)

    def has_module(self, path: str) -> bool:
        return path in self.prefixes or path.split(".", 1)[-1] in self.prefixes


class Weights:
    """Canonical matrices of one model, read lazily from a :class:`TensorSource`."""

    def __init__(self, adapter: Adapter, config, tensors: TensorSource) -> None:
        self.adapter, self.config, self.tensors = adapter, config, tensors
        self.layout = Layout(adapter, config, tensors.has_module)

    @classmethod
    def from_model(cls, model: nn.Module, adapter: Adapter | None = None) -> Weights:
        return cls(adapter or find_adapter(model.config), model.config, ModelTensors(model))

    @classmethod
    def from_folder(cls, folder: str | Path, adapter: Adapter | None = None) -> Weights:
        """Stream from a checkpoint folder without building the model."""
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(folder)
        return cls(adapter or find_adapter(config), config, SafetensorsTensors(folder))

    # -- raw access --------------------------------------------------------------------
    def _param(self, path: str, param: str = "weight") -> torch.Tensor | None:
        value = self.tensors.get(f"{path}.{param}")
        return None if value is None else value.float()

    def rows(self, role: str, layer: int | None = None) -> torch.Tensor:
        """The weight of a point's module as ``(out_features, in_features)``, fused slice taken."""
        point = self.layout.entry(role, layer)
        path = self.layout.module_path(role, layer)
        weight = None if path is None else self._param(path)
        if weight is None:
            raise ModelLoadError(
                f"The checkpoint has no weight for {role!r}"
                + (f" in layer {layer}" if layer is not None else "")
                + f" (looked for {path}.weight).",
                "Check that the adapter matches this checkpoint.",
            )
        if point.weight_type == "conv1d":
            weight = weight.T
        index = self.layout.fused_index(point, weight.shape[0])
        return weight if index is None else weight[index]

    def _scale(self, path: str | None) -> torch.Tensor | None:
        """A norm's effective per-feature scale (weight plus the family's offset)."""
        weight = None if path is None else self._param(path)
        return None if weight is None else weight + self.adapter.norm_offset

    # -- canonical matrices ------------------------------------------------------------
    def embed(self) -> torch.Tensor:
        return self.rows("embed")

    def unembed(self) -> torch.Tensor:
        path = self.layout.module_path("unembed")
        weight = None if path is None else self._param(path)
        return self.embed() if weight is None else weight  # tied embeddings store one copy

    def ln1_scale(self, layer: int) -> torch.Tensor | None:
        return self._scale(self.layout.module_path("ln1", layer))

    def _heads(self, role: str, n_heads: int, layer: int, head_norm: str | None) -> torch.Tensor:
        weight = self.rows(role, layer)  # (heads * dh, d)
        per_head = rearrange(weight, "(h dh) d -> h d dh", h=n_heads)
        scale = self.ln1_scale(layer)
        if scale is not None:
            per_head = per_head * scale[None, :, None]
        column_scale = self._scale(head_norm and f"{self.layout.layer_path(layer)}.{head_norm}")
        if column_scale is not None:
            # one scale per head dimension (Qwen3), or per feature of all heads (OLMo-2)
            rows = column_scale.reshape(-1, per_head.shape[-1])
            per_head = per_head * (rows[:, None, :] if rows.shape[0] > 1 else rows[None])
        return per_head

    def W_q(self, layer: int) -> torch.Tensor:
        return self._heads("attn.q", self.layout.n_heads, layer, self.adapter.q_norm)

    def W_k(self, layer: int) -> torch.Tensor:
        keys = self._heads("attn.k", self.layout.n_kv, layer, self.adapter.k_norm)
        return repeat(keys, "kv d dh -> (kv g) d dh", g=self.layout.n_heads // self.layout.n_kv)

    def W_down(self, layer: int) -> torch.Tensor:
        if self.adapter.experts is None or self.layout.entry("mlp.down_in", layer) is not None:
            return self.rows("mlp.down_in", layer).T.contiguous()
        parts = [self.W_down_experts(layer).flatten(0, 1)]
        shared = self.W_down_shared(layer)
        if shared is not None:
            parts.append(shared)
        return torch.cat(parts).contiguous()

    def W_down_shared(self, layer: int) -> torch.Tensor | None:
        """``(d_shared, d)``: an MoE layer's always-on shared expert (Qwen2-MoE), if any."""
        if self.n_experts(layer) == 0:
            return None
        shared = self._expert_tensor(self.adapter.experts.shared_down, layer)
        return None if shared is None else shared.T.contiguous()

    def n_experts(self, layer: int) -> int:
        """Routed experts in ``layer`` (0 for a dense layer or family)."""
        spec = self.adapter.experts
        if spec is None or self.layout.entry("mlp.down_in", layer) is not None:
            return 0
        return int(getattr(self.config, spec.count))

    def W_down_experts(self, layer: int) -> torch.Tensor:
        """``(n_experts, d_ff, d)``: each routed expert's down-projection, one row per neuron."""
        count = self.n_experts(layer)
        if count == 0:
            raise ModelLoadError(
                f"Layer {layer} of this {self.adapter.name} model has no routed experts.",
                "Use W_down for dense layers.",
            )
        stacked = self._expert_tensor(self.adapter.experts.down, layer, count)
        if stacked is None:
            raise ModelLoadError(
                f"The checkpoint has no expert down-projections in layer {layer} (looked for "
                + ", ".join(self.adapter.experts.down)
                + ").",
                "Check that the adapter matches this checkpoint.",
            )
        return stacked.transpose(1, 2).contiguous()

    def _expert_tensor(
        self, names: tuple[str, ...], layer: int, count: int | None = None
    ) -> torch.Tensor | None:
        """The first candidate found: a stacked tensor, or ``{e}`` per expert stacked here."""
        base = self.layout.layer_path(layer)
        for name in names:
            if "{e}" not in name:
                value = self.tensors.get(f"{base}.{name}")
            else:
                found = [self.tensors.get(f"{base}.{name.format(e=e)}") for e in range(count or 0)]
                missing = not found or any(v is None for v in found)
                value = None if missing else torch.stack(found)
            if value is not None:
                return value.float()
        return None


def fingerprint(named_tensors: Iterable[tuple[str, torch.Tensor]], samples: int = 256) -> str:
    """A cheap identity for a set of weights: names, shapes, dtypes and evenly spaced values.

    Reading every weight of a 7B model to hash it would cost minutes; a strided sample
    still changes whenever a checkpoint was trained further or swapped.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(named_tensors, key=lambda item: item[0]):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // samples)
        sample = flat[::step][:samples].float().cpu().numpy().tobytes()
        digest.update(json.dumps([name, list(tensor.shape), str(tensor.dtype)]).encode())
        digest.update(sample)
    return digest.hexdigest()[:16]


def checkpoint_fingerprint(folder: str | Path, samples: int = 256) -> str:
    """A cheap identity for a safetensors checkpoint folder, read without loading it.

    Hashes each shard's header (tensor names, dtypes, shapes, offsets) and ``samples``
    evenly spaced 64-byte pieces of its data, so a retrained or swapped checkpoint changes it.
    """
    digest = hashlib.sha256()
    for shard in safetensors_shards(folder):
        size = shard.stat().st_size
        with shard.open("rb") as handle:
            header_size = int.from_bytes(handle.read(8), "little")
            digest.update(shard.name.encode() + handle.read(header_size))
            start = 8 + header_size
            step = max(64, (size - start) // samples)
            for offset in range(start, size, step):
                handle.seek(offset)
                digest.update(handle.read(64))
    return digest.hexdigest()[:16]
