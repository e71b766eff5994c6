"""Cross-model activation patching, batched: many patched points of one prompt per forward.

The receiving model reads the prompt and the response; at one hook point (a layer's
residual stream, attention output or MLP output) its activation at every position is
replaced by the other model's activation there. Rows of a batch never see each other
(attention is within a row), so a batch row patched at one point is exactly the
single-point patched run. Two ways to fill the batch:

* ``growing`` (the default where the model allows it): a run patched at layer *i* equals
  the unpatched run below *i*, so that prefix is computed once. The forward starts with
  one unpatched row; at layer *i*'s input it gains a copy of that row for every point
  inside layer *i* (attention / MLP output; the copy is patched there, on its own row),
  and at layer *i*'s output a row holding the other model's residual stream. Later
  layers see the bigger batch, the layers below never repeat work.
* ``copies``: the input replicated once per point, row *r* patched at point *r*. Needs
  nothing of the model; used when the growing batch is refused (below).

The growing batch relies on the model's own batch-1 tensors (rotary cos/sin, the causal
mask) broadcasting over the grown batch. Models whose per-batch tensors do not (BLOOM's
ALiBi bias) fail or differ, so each model is checked once on a tiny input against the
``copies`` way, and the answer is kept on ``subject.memo``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch

#: Hook points that can be patched, by canonical role (``layers.{i}.<role>``).
COMPONENTS = ("resid_post", "attn.out", "mlp.out")
STRATEGIES = ("growing", "copies")

Patch = tuple[str, torch.Tensor]  # (hook point, the other model's activation (1, T, d))


def scores(
    logits: torch.Tensor, tokens: torch.Tensor, target_logp: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per batch row: the summed log-probability of ``tokens`` and the mean KL(target || row).

    ``logits`` (R, m, V) at the m response positions, ``tokens`` (m,), ``target_logp``
    (m, V) the log-probabilities the KL is measured against.
    """
    logp = logits.float().log_softmax(-1)
    index = tokens.to(logp.device).expand(logp.shape[0], -1)[..., None]
    chosen = logp.gather(-1, index)[..., 0].sum(-1)
    target = target_logp.to(logp.device)
    kl = (target.exp() * (target - logp)).sum(-1).clamp_min(0).mean(-1)
    return chosen, kl


@torch.no_grad()
def clean_run(subject, ids: torch.Tensor, m: int, names: Sequence[str]):
    """One unpatched forward of ``ids`` (T,): log-probs (m, V) at the response positions and
    the activations at ``names`` (each (1, T, d))."""
    output, cache = subject.hooks.run_with_cache(
        ids[None].to(subject.device), names=list(names), stop_early=False,
        logits_to_keep=m, use_cache=False,
    )  # fmt: skip
    return output.logits[0].float().log_softmax(-1), cache


def _replace_row(row: int, source: torch.Tensor):
    def hook(activation: torch.Tensor, name: str) -> torch.Tensor:
        patched = activation.clone()
        patched[row] = source[0].to(device=activation.device, dtype=activation.dtype)
        return patched

    return hook


def _add_copies(count: int):
    """Layer input: ``count`` more rows, copies of the unpatched row 0."""

    def hook(hidden: torch.Tensor, name: str) -> torch.Tensor:
        return torch.cat([hidden, hidden[:1].expand(count, *hidden.shape[1:])])

    return hook


def _add_row(source: torch.Tensor):
    """Layer output: one more row, the other model's residual stream."""

    def hook(hidden: torch.Tensor, name: str) -> torch.Tensor:
        return torch.cat([hidden, source.to(device=hidden.device, dtype=hidden.dtype)])

    return hook


def _logits(receiver, batch: torch.Tensor, keep: int) -> torch.Tensor:
    """The receiver's logits (R, keep, V) at the last ``keep`` positions of ``batch``.

    The positions go in as indices, not a count: the model then gathers them into a
    contiguous tensor and its unembedding is one matrix product, where a strided slice
    of a batch falls back to a batched product about three times slower on a CPU.
    """
    length = batch.shape[-1]
    positions = torch.arange(length - keep, length, device=receiver.device)
    return receiver.model(batch, logits_to_keep=positions, use_cache=False).logits


@torch.no_grad()
def copied_logits(receiver, ids: torch.Tensor, patches: Sequence[Patch], keep: int):
    """Logits (R, keep, V) of the input replicated once per patch, row r patched at patch r."""
    hooks = [(name, _replace_row(row, source)) for row, (name, source) in enumerate(patches)]
    batch = ids[None].to(receiver.device).expand(len(patches), -1)
    with receiver.hooks.scope(forward=hooks):
        return _logits(receiver, batch, keep)


@torch.no_grad()
def growing_logits(receiver, ids: torch.Tensor, patches: Sequence[Patch], keep: int):
    """Logits (R, keep, V) of the patched runs in ``patches`` order, by one forward whose
    batch grows from the unpatched row as the layers with patched points are reached."""
    layout = receiver.layout
    placed = []  # (layer, at the output?, patch index)
    for index, (name, _) in enumerate(patches):
        role, layer = layout.split(name)
        if layer is None:
            raise ValueError(f"{name!r} is not inside a layer: the growing batch cannot patch it")
        placed.append((layer, role == "resid_post", index))
    placed.sort()  # the row order: by layer, the points inside a layer before its output
    copies = Counter(layer for layer, at_output, _ in placed if not at_output)
    grow = [(f"layers.{layer}.resid_pre", _add_copies(n)) for layer, n in copies.items()]
    patch, rows = [], [0] * len(patches)
    for row, (_, at_output, index) in enumerate(placed, start=1):
        name, source = patches[index]
        rows[index] = row
        patch.append((name, _add_row(source) if at_output else _replace_row(row, source)))
    # the copies first: hooks on a layer's input run in the order they were added
    with receiver.hooks.scope(forward=grow + patch):
        logits = _logits(receiver, ids[None].to(receiver.device), keep)
    if logits.shape[0] != len(patches) + 1:
        raise RuntimeError(f"the growing batch ended with {logits.shape[0]} rows, not "
                           f"{len(patches) + 1}")  # fmt: skip
    if rows == list(range(1, len(patches) + 1)):
        return logits[1:]  # already in order (patched_scores sorts by depth): no copy
    return logits[torch.tensor(rows, device=logits.device)]


@torch.no_grad()
def patched_scores(
    receiver,
    ids: torch.Tensor,
    tokens: torch.Tensor,
    target_logp: torch.Tensor,
    patches: Sequence[Patch],
    batch_size: int,
    strategy: str = "copies",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-prob of ``tokens`` and KL to ``target_logp`` for each patch, in order.

    ``patches`` are (hook point, the other model's activation (1, T, d)) for the input
    ``ids`` (T,); ``batch_size`` patched rows per forward (the growing batch adds its one
    unpatched row), filled the ``strategy`` way. The hooks live only inside the forward
    (removed also on an exception).
    """
    run = {"growing": growing_logits, "copies": copied_logits}[strategy]
    m = len(tokens)
    order = sorted(range(len(patches)), key=lambda k: _depth(receiver, patches[k][0]))
    logps, kls = torch.zeros(len(patches)), torch.zeros(len(patches))
    for start in range(0, len(patches), batch_size):
        chunk = order[start : start + batch_size]  # neighbouring layers share the most
        logits = run(receiver, ids, [patches[k] for k in chunk], m)
        logp, kl = scores(logits, tokens, target_logp)
        logps[chunk], kls[chunk] = logp.cpu(), kl.cpu()
    return logps, kls


def _depth(receiver, name: str) -> tuple[int, bool]:
    role, layer = receiver.layout.split(name)
    return (-1 if layer is None else layer), role == "resid_post"


def choose_strategy(receiver, roles: Sequence[str]) -> str:
    """``growing`` when this model's growing batch equals the ``copies`` way on a tiny input
    for these roles, else ``copies``; checked once per model and set of roles."""
    key = ("patching-growing-batch", tuple(sorted(roles)))
    return receiver.memo(key, lambda: "growing" if _growing_agrees(receiver, roles) else "copies")


@torch.no_grad()
def _growing_agrees(receiver, roles: Sequence[str]) -> bool:
    n = receiver.layout.n_layers
    names = [f"layers.{layer}.{role}" for layer in sorted({0, n // 2, n - 1}) for role in roles]
    vocab = receiver.model.get_input_embeddings().num_embeddings
    ids = torch.arange(1, 7) % vocab
    try:
        _, cache = receiver.hooks.run_with_cache(ids[None].to(receiver.device), names=names,
                                                 stop_early=False, use_cache=False)  # fmt: skip
        generator = torch.Generator().manual_seed(0)
        patches = []
        for name in names:  # every row patched differently, so a mixed-up row shows
            clean = cache[name]
            noise = torch.randn(clean.shape, generator=generator).to(clean)
            patches.append((name, clean + noise * clean.float().std().clamp_min(1e-3).to(clean)))
        grown = growing_logits(receiver, ids, patches, len(ids)).float()
        copied = copied_logits(receiver, ids, patches, len(ids)).float()
    except Exception:  # a shape the model cannot broadcast: the copies way still works
        return False
    precise = receiver.model.get_input_embeddings().weight.dtype in (torch.float32, torch.float64)
    tolerance = (1e-4 if precise else 3e-2) * max(1.0, float(copied.abs().max()))
    return grown.shape == copied.shape and float((grown - copied).abs().max()) <= tolerance
