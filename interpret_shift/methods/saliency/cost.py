"""What each saliency mode costs, in time and memory, and the plan that follows from it.

Time is counted in floating-point operations from the model's shape (parameters outside
the embeddings and the output head, attention width, vocabulary) and turned into seconds
with throughputs measured on this code (docs/saliency.md, "Choosing the mode"). Memory is
counted in bytes of working memory (activations, tangents, cotangents; never the
weights), so that chunks can be sized from a budget.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from torch import nn

Mode = Literal["reverse", "forward"]

#: Measured throughputs (FLOP/s of the counts below) and fixed costs per pass and layer
#: (seconds): see docs/saliency.md. Only their ratios matter for choosing a mode.
REVERSE_SPEED, FORWARD_SPEED = 3e10, 2e10
REVERSE_PASS, FORWARD_PASS = 2e-3, 1e-2
#: Bytes of activations kept per token and layer for a backward, in units of elements of
#: the model's dtype: about 10 hidden-wide and 4 MLP-wide tensors (inputs of every
#: matrix product, norm and activation), counted from a llama layer; the estimates were
#: 15% above the peak RSS growth measured on the benchmark's 4-layer llama.
KEPT_HIDDEN, KEPT_MLP = 10, 4
#: Live tensors of one layer's backward or tangent pass, per token and cotangent/tangent.
LIVE_HIDDEN, LIVE_MLP = 6, 4
#: Vocabulary-wide float32 tensors alive per target position (logits, softmax, its grads).
LIVE_VOCAB = 4
#: Chunks are sized so that the estimate stays under this share of the budget: the
#: estimates were within 15% of the measured peaks (docs/saliency.md).
HEADROOM = 0.85
#: Reverse chunks beyond this gain nothing (the forward is shared by this many targets).
#: Tangent chunks beyond 8 positions were slower (4-layer llama, (32, 128), medians of 3:
#: 6.3 s with 8, 7.6 s with 16, 9.5 s with 32), likely as the tangents leave the caches.
MAX_TARGET_CHUNK, MAX_POSITION_CHUNK = 64, 8


@dataclasses.dataclass(frozen=True)
class Shape:
    """The sizes of a model that its cost depends on."""

    layers: int
    hidden: int
    mlp: int  # the MLP's inner width
    heads: int
    attention: int  # width of the attention's queries (heads x head dim)
    vocab: int
    body: int  # parameters of the layers (not the embeddings, not the output head)
    element: int  # bytes of one element of the model's dtype
    eager: bool  # attention weights materialised (T x T per head)

    @classmethod
    def of(cls, model: nn.Module) -> Shape:
        config = model.config.get_text_config()
        embed = model.get_input_embeddings().weight
        head = model.get_output_embeddings()
        skip = {id(embed)} | ({id(head.weight)} if head is not None else set())
        body = sum(p.numel() for p in model.parameters() if id(p) not in skip)
        hidden = int(getattr(config, "hidden_size", embed.shape[1]))
        heads = int(getattr(config, "num_attention_heads", 1) or 1)
        head_dim = getattr(config, "head_dim", None) or hidden // heads
        layers = int(getattr(config, "num_hidden_layers", 1) or 1)
        mlp = next((getattr(config, name) for name in ("intermediate_size", "ffn_dim", "n_inner")
                    if isinstance(getattr(config, name, None), int)), 4 * hidden)  # fmt: skip
        implementation = getattr(model.config, "_attn_implementation", "eager")
        return cls(layers, hidden, int(mlp), heads, heads * int(head_dim), int(embed.shape[0]),
                   int(body), embed.element_size(), implementation != "sdpa")  # fmt: skip

    # -- time ------------------------------------------------------------------------------
    def pass_flops(self, tokens: int) -> float:
        """One causal pass (forward, input-only backward or tangent) over ``tokens``."""
        return 2 * self.body * tokens + 2 * self.layers * self.attention * tokens**2

    def head_flops(self, positions: int) -> float:
        return 2 * self.vocab * self.hidden * positions

    def reverse_seconds(self, n: int, m: int, chunk: int, rows: int = 1) -> float:
        """One forward per chunk of targets over its prefix, one backward per target."""
        flops, passes = 0.0, 0
        for start in range(0, m, chunk):
            k, prefix = min(chunk, m - start), n + min(start + chunk, m) - 1
            flops += rows * ((1 + k) * self.pass_flops(prefix) + (k + k * k) * self.head_flops(1))
            passes += 2  # a forward and one batched backward
        return flops / REVERSE_SPEED + passes * self.layers * REVERSE_PASS

    def forward_seconds(self, n: int, m: int, chunk: int) -> float:
        """One primal pass per chunk of positions plus one tangent pass per position."""
        tokens, chunks = n + m - 1, math.ceil(n / chunk)
        flops = (chunks + n) * (self.pass_flops(tokens) + self.head_flops(m))
        return flops / FORWARD_SPEED + chunks * self.layers * FORWARD_PASS

    # -- memory ----------------------------------------------------------------------------
    def _layer_live(self, tokens: int) -> float:
        """Bytes of one layer's live tensors for one (co)tangent over ``tokens``."""
        width = LIVE_HIDDEN * self.hidden + LIVE_MLP * self.mlp
        attention = 3 * self.heads * tokens if self.eager else 0  # scores, softmax, grads
        return tokens * (width + attention) * max(self.element, 4)

    def reverse_bytes(self, prefix: int, chunk: int, rows: int = 1) -> float:
        """Kept activations of the longest prefix, plus the batched backward of a chunk."""
        kept = KEPT_HIDDEN * self.hidden + KEPT_MLP * self.mlp
        attention = 2 * self.heads * prefix if self.eager else 0
        graph = self.layers * prefix * (kept + attention) * self.element
        vocab = LIVE_VOCAB * 4 * self.vocab * (chunk + chunk * chunk)
        gradient = chunk * prefix * self.hidden * 4  # d t / d E of every target of the chunk
        return rows * (graph + vocab + gradient + chunk * self._layer_live(prefix))

    def forward_bytes(self, n: int, m: int, chunk: int) -> float:
        """The primal pass's live tensors plus each tangent's copy of them and of the logits."""
        tokens = n + m - 1
        per_tangent = self._layer_live(tokens) + LIVE_VOCAB * 4 * self.vocab * m
        return (1 + chunk) * per_tangent + chunk * tokens * self.hidden * self.element


@dataclasses.dataclass(frozen=True)
class Plan:
    """How one prompt (or batch) is explained: the mode, its chunk, and the estimate."""

    mode: Mode
    chunk: int
    seconds: float
    bytes: float
    fits: bool


def reverse_plan(shape: Shape, n: int, m: int, budget: float, chunk: int | None = None,
                 rows: int = 1) -> Plan:  # fmt: skip
    """The fastest target chunk whose memory fits ``budget`` (or the given chunk)."""
    prefix = n + max(m, 1) - 1
    options = [chunk] if chunk else range(1, max(1, min(m, MAX_TARGET_CHUNK)) + 1)
    fitting = [k for k in options if shape.reverse_bytes(prefix, k, rows) <= HEADROOM * budget]
    best = min(fitting or [min(options)], key=lambda k: shape.reverse_seconds(n, m, k, rows))
    return Plan("reverse", best, shape.reverse_seconds(n, m, best, rows),
                shape.reverse_bytes(prefix, best, rows), bool(fitting))  # fmt: skip


def forward_plan(shape: Shape, n: int, m: int, budget: float, chunk: int | None = None) -> Plan:
    """The largest position chunk (up to :data:`MAX_POSITION_CHUNK`) that fits ``budget``."""
    if chunk:
        best = chunk
    else:
        best = max(1, min(n, MAX_POSITION_CHUNK))
        while best > 1 and shape.forward_bytes(n, m, best) > HEADROOM * budget:
            best -= 1
    fits = shape.forward_bytes(n, m, best) <= HEADROOM * budget
    return Plan("forward", best, shape.forward_seconds(n, m, best),
                shape.forward_bytes(n, m, best), fits)  # fmt: skip


def choose(candidates: list[Plan]) -> Plan:
    """The fastest plan that fits; if none fits, the one needing the least memory."""
    fitting = [plan for plan in candidates if plan.fits]
    if fitting:
        return min(fitting, key=lambda plan: plan.seconds)
    return min(candidates, key=lambda plan: plan.bytes)
