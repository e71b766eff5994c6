"""Cross-model activation patching, batched: many patched points of one prompt per forward.

The receiving model reads the prompt and the response; at one hook point (a layer's
residual stream, attention output or MLP output) its activation at every position is
replaced by the other model's activation there. Rows of a batch never see each other
(attention is within a row), so a batch row patched at one point is exactly the
single-point patched run. Three ways to fill the batch (:data:`STRATEGIES` has them
cheapest first):

* ``growing``: a run patched at layer *i* equals the receiver's clean run below *i*, so
  the batch starts at layer *i*. At layer *i*'s input it gains, for every point inside
  layer *i* (attention / MLP output), a row holding the clean run's residual stream
  there, patched at its point; at layer *i*'s output a row holding the other model's
  residual stream. The unpatched row the model was fed is dropped at the first patched
  layer: the clean run already gave everything it would.
* ``lean``: the growing batch, also skipping what a patch replaces: a row patched at a
  layer's attention output does not run that attention (the normed input is cut to the
  older rows, the patched output appended), a row patched at its MLP output runs neither
  (its attention output is the clean run's), and the last layer's MLP runs only at the
  positions whose logits are read.
* ``copies``: the input replicated once per point, row *r* patched at point *r*. Needs
  nothing of the model.

The growing ways rely on the model's own batch-1 tensors (rotary cos/sin, the causal
mask) broadcasting over the grown batch, and ``lean`` also on the attention reading only
the ``ln1`` point and the MLP only ``ln2``. Models that break either (BLOOM's per-row
ALiBi bias; a parallel block with one norm) fail or differ, so each model is checked once
on a tiny input against the ``copies`` way, and the first way that agrees is kept on
``subject.memo``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

#: Hook points that can be patched, by canonical role (``layers.{i}.<role>``).
COMPONENTS = ("resid_post", "attn.out", "mlp.out")
#: The ways to batch, cheapest first.
STRATEGIES = ("lean", "growing", "copies")
#: What the growing ways read from the receiver's own clean run, per patched layer.
PREFIX = ("resid_pre", "attn.out")
_KINDS = ("attn.out", "mlp.out", "resid_post")  # the row order inside a layer

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


def captured(subject, names: Sequence[str]) -> list[str]:
    """The points a clean run captures: ``names`` (the other model patches them in) and,
    per layer, what the growing ways read from this model's own clean run."""
    layers = sorted({subject.layout.split(name)[1] for name in names} - {None})
    prefix = [f"layers.{layer}.{role}" for layer in layers for role in PREFIX
              if subject.layout.entry(role, layer) is not None]  # fmt: skip
    return list(dict.fromkeys([*names, *prefix]))


@torch.no_grad()
def clean_run(subject, ids: torch.Tensor, m: int, names: Sequence[str]):
    """One unpatched forward of ``ids`` (T,): log-probs (m, V) at the response positions and
    the activations (each (1, T, d)) at ``names`` and at what :func:`captured` adds."""
    output, cache = subject.hooks.run_with_cache(
        ids[None].to(subject.device), names=captured(subject, names), stop_early=False,
        logits_to_keep=m, use_cache=False,
    )  # fmt: skip
    return output.logits[0].float().log_softmax(-1), cache


def _on(like: torch.Tensor, *parts: torch.Tensor) -> list[torch.Tensor]:
    """``parts`` on the device and in the dtype of ``like`` (hooks may sit on another device)."""
    return [part.to(device=like.device, dtype=like.dtype) for part in parts]


def _replace_row(row: int, source: torch.Tensor):
    def hook(activation: torch.Tensor, name: str) -> torch.Tensor:
        patched = activation.clone()
        patched[row] = _on(activation, source[0])[0]
        return patched

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


@dataclasses.dataclass
class _Layer:
    """One layer of a growing batch: ``before`` rows arrive (patched at earlier layers); the
    layer adds one row per source, in this order: attention output, MLP output (both enter
    at its input), residual stream (at its output)."""

    before: int = 0
    attn: list[torch.Tensor] = dataclasses.field(default_factory=list)
    mlp: list[torch.Tensor] = dataclasses.field(default_factory=list)
    resid: list[torch.Tensor] = dataclasses.field(default_factory=list)

    @property
    def copies(self) -> int:
        return len(self.attn) + len(self.mlp)


def _growing_hooks(receiver, plan: dict[int, _Layer], clean, length: int, keep: int, lean: bool):
    """The hooks of one growing forward over ``length`` tokens (see the module docstring)."""
    hooks, last = [], receiver.layout.n_layers - 1
    for layer, rows in sorted(plan.items()):
        at = f"layers.{layer}."
        b, a, copies = rows.before, len(rows.attn), rows.copies
        if copies:
            own_attn = clean.get(at + "attn.out")
            hooks += [(at + "resid_pre", _grow(b, clean[at + "resid_pre"], copies)),
                      (at + "attn.out", _attention_rows(b, rows, own_attn))]  # fmt: skip
            if lean and b:  # the new rows' attention outputs are known: run the older ones'
                hooks.append((at + "ln1", _cut(b)))
        cut = lean and b + a > 0  # (a module cannot run on no rows at all)
        if rows.mlp or (cut and layer == last):
            hooks.append((at + "mlp.out", _mlp_rows(b + a, rows.mlp, length)))
            if cut:  # no MLP for the rows patched there; at the last layer, read positions only
                hooks.append((at + "ln2", _cut(b + a, keep if layer == last else None)))
        if rows.resid:
            hooks.append((at + "resid_post", _append(b + copies, rows.resid)))
    return hooks


def _grow(before: int, clean_input: torch.Tensor, count: int):
    """Layer input: the older rows, then ``count`` copies of the clean run's input."""

    def hook(hidden: torch.Tensor, name: str) -> torch.Tensor:
        return torch.cat([hidden[:before], *_on(hidden, clean_input.expand(count, -1, -1))])

    return hook


def _cut(rows: int, positions: int | None = None):
    """A normed input cut to the rows (and last positions) whose module output is needed."""

    def hook(normed: torch.Tensor, name: str) -> torch.Tensor:
        if positions is None:
            return normed[:rows]
        return normed[:rows, -positions:].contiguous()  # one matrix product, not a batched one

    return hook


def _attention_rows(before: int, rows: _Layer, own: torch.Tensor | None):
    """Attention output: the older rows, the patched ones, then the MLP-patched rows'."""

    def hook(out: torch.Tensor, name: str) -> torch.Tensor:
        if out.shape[0] > before:  # computed for the new rows too
            tail = [out[before + len(rows.attn) :]]
        else:  # lean: the MLP-patched rows read the clean run's attention output
            tail = _on(out, own.expand(len(rows.mlp), -1, -1)) if rows.mlp else []
        return torch.cat([out[:before], *_on(out, *rows.attn), *tail])

    return hook


def _mlp_rows(kept: int, sources: list[torch.Tensor], length: int):
    """MLP output: the first ``kept`` rows (back to every position), then the patched ones."""

    def hook(out: torch.Tensor, name: str) -> torch.Tensor:
        if out.shape[1] < length:  # the last layer ran at the read positions only
            out = torch.cat([out.new_zeros(out.shape[0], length - out.shape[1], out.shape[2]),
                             out], 1)  # fmt: skip
        return torch.cat([out[:kept], *_on(out, *sources)])

    return hook


def _append(kept: int, sources: list[torch.Tensor]):
    """Layer output: the first ``kept`` rows, then the other model's residual streams."""

    def hook(hidden: torch.Tensor, name: str) -> torch.Tensor:
        return torch.cat([hidden[:kept], *_on(hidden, *sources)])

    return hook


@torch.no_grad()
def growing_logits(
    receiver, ids: torch.Tensor, patches: Sequence[Patch], keep: int, clean, lean: bool = False
):
    """Logits (R, keep, V) of the patched runs in ``patches`` order, by one forward whose
    batch grows as the layers with patched points are reached; ``clean`` is the receiver's
    own clean run (:func:`captured`)."""
    order = sorted(range(len(patches)), key=lambda k: _depth(receiver, patches[k][0]))
    plan: dict[int, _Layer] = {}
    for k in order:
        name, source = patches[k]
        role, layer = receiver.layout.split(name)
        if layer is None or role not in _KINDS:
            raise ValueError(f"{name!r} is not one of {', '.join(_KINDS)} inside a layer: the "
                             "growing batch cannot patch it")  # fmt: skip
        rows = plan.setdefault(layer, _Layer())
        {"attn.out": rows.attn, "mlp.out": rows.mlp, "resid_post": rows.resid}[role].append(source)
    before = 0
    for layer in sorted(plan):
        plan[layer].before = before
        before += plan[layer].copies + len(plan[layer].resid)
    hooks = _growing_hooks(receiver, plan, clean, len(ids), keep, lean)
    with receiver.hooks.scope(forward=hooks):
        logits = _logits(receiver, ids[None].to(receiver.device), keep)
    if logits.shape[0] != len(patches):
        raise RuntimeError(f"the growing batch ended with {logits.shape[0]} rows, not "
                           f"{len(patches)}")  # fmt: skip
    if order == list(range(len(patches))):
        return logits  # already in order (patched_scores sorts by depth): no copy
    return logits[torch.argsort(torch.tensor(order)).to(logits.device)]


@torch.no_grad()
def patched_scores(
    receiver,
    ids: torch.Tensor,
    tokens: torch.Tensor,
    target_logp: torch.Tensor,
    patches: Sequence[Patch],
    batch_size: int,
    strategy: str = "copies",
    clean=None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-prob of ``tokens`` and KL to ``target_logp`` for each patch, in order.

    ``patches`` are (hook point, the other model's activation (1, T, d)) for the input
    ``ids`` (T,); ``batch_size`` patched rows per forward, filled the ``strategy`` way.
    The growing ways read the receiver's clean run, ``clean`` (from :func:`clean_run`;
    captured here when not given). The hooks live only inside the forward (removed also
    on an exception).
    """
    m = len(tokens)
    if strategy != "copies" and clean is None:
        clean = clean_run(receiver, ids, m, [name for name, _ in patches])[1]
    order = sorted(range(len(patches)), key=lambda k: _depth(receiver, patches[k][0]))
    logps, kls = torch.zeros(len(patches)), torch.zeros(len(patches))
    for start in range(0, len(patches), batch_size):
        chunk = order[start : start + batch_size]  # neighbouring layers share the most
        logits = _batched_logits(receiver, ids, [patches[k] for k in chunk], m, clean, strategy)
        logp, kl = scores(logits, tokens, target_logp)
        logps[chunk], kls[chunk] = logp.cpu(), kl.cpu()
    return logps, kls


def _batched_logits(receiver, ids, patches: Sequence[Patch], keep: int, clean, strategy: str):
    if strategy == "copies":
        return copied_logits(receiver, ids, patches, keep)
    return growing_logits(receiver, ids, patches, keep, clean, lean=strategy == "lean")


def _depth(receiver, name: str) -> tuple[int, int]:
    role, layer = receiver.layout.split(name)
    return (-1 if layer is None else layer), (_KINDS + (role,)).index(role)


def choose_strategy(receiver, roles: Sequence[str]) -> str:
    """The cheapest way in :data:`STRATEGIES` whose logits equal the ``copies`` way's on a
    tiny input with these roles patched; checked once per model and set of roles."""
    key = ("patching-batching", tuple(sorted(roles)))
    return receiver.memo(key, lambda: _cheapest_exact_way(receiver, roles))


@torch.no_grad()
def _cheapest_exact_way(receiver, roles: Sequence[str]) -> str:
    n = receiver.layout.n_layers
    names = [f"layers.{layer}.{role}" for layer in sorted({0, n // 2, n - 1}) for role in roles]
    vocab = receiver.model.get_input_embeddings().num_embeddings
    ids, keep = torch.arange(1, 7) % vocab, 3  # fewer read positions than tokens, as in use
    try:
        _, clean = clean_run(receiver, ids, keep, names)
        generator = torch.Generator().manual_seed(0)
        patches = []
        for name in names:  # every row patched differently, so a mixed-up row shows
            activation = clean[name]
            noise = torch.randn(activation.shape, generator=generator).to(activation)
            scale = activation.float().std().clamp_min(1e-3).to(activation)
            patches.append((name, activation + noise * scale))
        copied = copied_logits(receiver, ids, patches, keep).float()
    except Exception:  # the model cannot be checked here; the copies way needs nothing of it
        return "copies"
    precise = receiver.model.get_input_embeddings().weight.dtype in (torch.float32, torch.float64)
    tolerance = (1e-4 if precise else 3e-2) * max(1.0, float(copied.abs().max()))
    for way in STRATEGIES[:-1]:
        try:
            found = _batched_logits(receiver, ids, patches, keep, clean, way).float()
        except Exception:  # a shape the model cannot broadcast: a plainer way may still work
            continue
        if found.shape == copied.shape and float((found - copied).abs().max()) <= tolerance:
            return way
    return "copies"
