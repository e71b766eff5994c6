"""Slices of fused projections: which output features belong to q, k, v, gate or up."""

from __future__ import annotations

import torch
from einops import rearrange


def part_index(
    scheme: str, part: str, width: int, n_heads: int, n_kv: int, d_head: int
) -> torch.Tensor:
    """Indices into the fused output dimension (of size ``width``) that form ``part``.

    - ``concat``: ``[q | k | v]`` with ``n_heads`` query and ``n_kv`` key/value heads
      (GPT-2 ``c_attn``, Phi-3 ``qkv_proj``); ``concat_mq`` is the same with one kv head
      (Falcon multi-query).
    - ``per_head``: ``(head, [q, k, v], d_head)`` interleaved per head (GPT-NeoX, old Falcon).
    - ``grouped``: ``(kv_head, [q x group, k, v], d_head)`` (Falcon new decoder architecture).
    - ``halves``: ``[gate | up]`` (Phi-3 ``gate_up_proj``).
    - ``codegen``: four model-parallel blocks, each ``[q | v | k]`` of a quarter of the
      width (CodeGen ``qkv_proj``, which splits its output as query, value, key).
    """
    positions = torch.arange(width)
    if scheme == "halves":
        half = width // 2
        return {"gate": positions[:half], "up": positions[half:]}[part]
    if scheme in ("concat", "concat_mq"):
        n_kv = 1 if scheme == "concat_mq" else n_kv
        q, kv = n_heads * d_head, n_kv * d_head
        return {
            "q": positions[:q],
            "k": positions[q : q + kv],
            "v": positions[q + kv : q + 2 * kv],
        }[part]
    if scheme == "codegen":
        grid = rearrange(positions, "(mp three local) -> three mp local", mp=4, three=3)
        return grid["qvk".index(part)].flatten()
    if scheme == "per_head":
        grid = rearrange(positions, "(h three d) -> three h d", three=3, d=d_head)
        return grid["qkv".index(part)].flatten()
    if scheme == "grouped":
        group = n_heads // n_kv
        grid = rearrange(positions, "(kv g d) -> kv g d", kv=n_kv, d=d_head)
        take = {
            "q": slice(0, group),
            "k": slice(group, group + 1),
            "v": slice(group + 1, group + 2),
        }
        return grid[:, take[part]].flatten()
    raise ValueError(f"unknown fused scheme {scheme!r}")


def kv_heads(scheme: str | None, config_kv: int) -> int:
    """Key/value heads actually stored, which a scheme may fix (multi-query: one)."""
    return 1 if scheme == "concat_mq" else config_kv
