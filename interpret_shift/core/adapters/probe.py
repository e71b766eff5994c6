"""Proof that an adapter fits the loaded model: one small forward on a few tokens.

What is checked (each where the adapter has the points):

- every point fires, with the width its role implies (d_model for the residual stream);
- ``resid_pre`` of layer *i* is the model's own ``hidden_states[i]``, the last layer's
  ``resid_post`` (or the final norm's output) is ``hidden_states[-1]``, and ``resid_post``
  of one layer is ``resid_pre`` of the next;
- residual identities: ``resid_mid = resid_pre + attn.out`` and ``resid_post = resid_mid +
  mlp.out`` (``resid_post = resid_pre + attn.out + mlp.out`` for parallel blocks), allowing
  a constant factor (Granite's residual multiplier) or a norm on the branch (Gemma-2's and
  OLMo-2's post-norms);
- the ``attn.q``/``attn.k`` points reproduce the attention probabilities the model returns
  under eager attention: the probe applies the q/k norms, the model's own rotary cos/sin
  (as the attention module received them) and the scale, and compares the softmax.

The probe runs once per model fingerprint and adapter (kept in memory for the process).
A model on the ``meta`` device, or offloaded to disk, is not probed (the report says why).
Hooks come from the caller (``capture``), so this module does not depend on the hook
machinery it helps to prove.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from interpret_shift.core.adapters.bind import Layout
from interpret_shift.core.adapters.infer import probe_ids

#: ``capture(ids, **kwargs) -> (model output, {canonical name: activation})``.
Capture = Callable[..., tuple[object, dict]]

RESIDUAL = ("resid_pre", "ln1", "attn.out", "resid_mid", "ln2", "mlp.out", "resid_post")


@dataclass
class ProbeReport:
    """What held, what was not checked (and why), and what failed (point -> reason)."""

    adapter: str
    held: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    rotary: str | None = None
    unreplayed: str | None = None  # why q/k could not be tied to the attention probabilities

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict:
        return {"adapter": self.adapter, "held": self.held, "skipped": self.skipped,
                "failed": self.failed}  # fmt: skip


def _tolerance(dtype: torch.dtype) -> float:
    return 1e-4 if dtype == torch.float32 else 3e-2


def close(a: torch.Tensor | None, b: torch.Tensor | None, tol: float) -> bool:
    """Equal up to ``tol`` relative to the larger magnitude (shapes must agree)."""
    if a is None or b is None or a.shape != b.shape:
        return False
    a, b = a.float(), b.float()
    scale = max(a.abs().max().item(), b.abs().max().item(), 1.0)
    return (a - b).abs().max().item() <= tol * scale


def offloaded(model: nn.Module) -> str | None:
    """Why the model cannot be probed cheaply, if it cannot."""
    if any(p.is_meta for p in model.parameters()):
        return "the model is on the meta device (no weights loaded)"
    device_map = getattr(model, "hf_device_map", None) or {}
    if any(str(where) == "disk" for where in device_map.values()):
        return "part of the model is offloaded to disk"
    return None


@contextlib.contextmanager
def eager_attention(model: nn.Module) -> Iterator[bool]:
    """Eager attention for the block (attention probabilities need it), then as it was."""
    config = model.config
    before = getattr(config, "_attn_implementation", None)
    if before == "eager":
        yield True
        return
    try:
        model.set_attn_implementation("eager")
    except Exception:  # noqa: BLE001 - some models cannot switch; q/k are then not checked
        yield False
        return
    try:
        yield True
    finally:
        model.set_attn_implementation(before)


def probe(model: nn.Module, layout: Layout, capture: Capture) -> ProbeReport:
    """Run the checks on ``model``; failures are listed in the report, not raised."""
    report = ProbeReport(layout.adapter.name)
    why = offloaded(model)
    if why:
        report.skipped["all"] = why
        return report
    config = model.config
    device = next(model.parameters()).device
    ids = probe_ids(config).to(device)
    tol = _tolerance(next(model.parameters()).dtype)
    attn_inputs: dict[int, dict] = {}
    handles = _watch_attention(model, layout, attn_inputs)
    was_training = model.training
    model.eval()  # dropout off: the identities are exact
    try:
        with eager_attention(model) as eager, torch.no_grad():
            kwargs = {"output_hidden_states": True, "output_attentions": eager}
            try:
                output, cache = capture(ids, **kwargs)
            except (TypeError, ValueError):
                output, cache = capture(ids)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    _check_fired(layout, cache, output, report)
    _check_hidden_states(layout, cache, output, report, tol)
    _check_residuals(model, layout, cache, report, tol)
    attentions = getattr(output, "attentions", None) if eager else None
    _check_query_key(model, layout, cache, attentions, attn_inputs, report, tol)
    return report


def _attention_path(layout: Layout, layer: int) -> str | None:
    """The attention module: the pattern point's, else the q projection's parent."""
    path = layout.module_path("attn.pattern", layer)
    q = layout.module_path("attn.q", layer)
    if path is None and q is not None and "." in q:
        path = q.rsplit(".", 1)[0]
    return path


def _watch_attention(model, layout: Layout, store: dict) -> list:
    """Keep the keyword arguments each attention module is called with (rotary cos/sin)."""
    handles = []
    for layer in range(layout.n_layers):
        path = _attention_path(layout, layer)
        if path is None:
            continue

        def keep(module, args, kwargs, layer=layer):
            store[layer] = kwargs

        module = model.get_submodule(path)
        handles.append(module.register_forward_pre_hook(keep, with_kwargs=True))
    return handles


def _width(layout: Layout, role: str, output) -> int | None:
    if role in RESIDUAL or role == "final_norm":  # an embedding may be narrower (ELECTRA)
        return layout.d_model
    if role in ("attn.q", "attn.z"):
        return layout.n_heads * layout.d_head
    if role in ("attn.k", "attn.v"):
        return layout.n_kv * layout.d_head
    if role == "unembed":
        logits = getattr(output, "logits", None)
        return None if logits is None else logits.shape[-1]
    return None


def _check_fired(layout: Layout, cache: dict, output, report: ProbeReport) -> None:
    for name in layout.names:
        role, layer = layout.split(name)
        value = cache.get(name)
        if not isinstance(value, torch.Tensor):
            module = layout.module_path(role, layer)
            report.failed[name] = f"its module {module or '(layer)'} never produced a tensor"
            continue
        if role == "attn.pattern":
            continue
        width = _width(layout, role, output)
        if width is not None and value.shape[-1] != width:
            report.failed[name] = f"width {value.shape[-1]}, expected {width}"
    if not any(n in report.failed for n in layout.names):
        report.held.append("every point fires with its width")


def _check_hidden_states(layout, cache, output, report: ProbeReport, tol: float) -> None:
    states = getattr(output, "hidden_states", None)
    n = layout.n_layers
    if states is None or len(states) != n + 1:
        report.skipped["hidden_states"] = "the model returns no output_hidden_states"
        return
    bad = []
    for layer in range(n):
        name = f"layers.{layer}.resid_pre"
        if name in cache and not close(cache[name], states[layer], tol):
            bad.append(name)
    last = [cache.get(f"layers.{n - 1}.resid_post"), cache.get("final_norm")]
    if not any(close(value, states[n], tol) for value in last if value is not None):
        bad.append(f"layers.{n - 1}.resid_post")
    if bad and _states_after_each_layer(cache, states, n, tol):
        bad = []  # Mamba's convention: hidden_states[i] is the output of layer i
    for layer in range(n - 1):
        post, pre = (
            cache.get(f"layers.{layer}.resid_post"),
            cache.get(f"layers.{layer + 1}.resid_pre"),
        )
        if post is not None and pre is not None and not close(post, pre, tol):
            bad.append(f"layers.{layer}.resid_post")
    for name in bad:
        report.failed.setdefault(name, "does not equal the model's own output_hidden_states")
    if not bad:
        report.held.append("resid_pre/resid_post equal output_hidden_states")


def _states_after_each_layer(cache: dict, states, n: int, tol: float) -> bool:
    """hidden_states[i] = resid_post of layer i (i < n), hidden_states[n] = the final norm's."""
    posts = [cache.get(f"layers.{layer}.resid_post") for layer in range(n)]
    return all(close(post, states[layer], tol) for layer, post in enumerate(posts)) and close(
        cache.get("final_norm"), states[n], tol
    )


def _branch_matches(after, before, branch, norms: list[nn.Module], tol: float) -> bool:
    """``after == before + c * branch`` for a constant c, or ``before + norm(branch)``.

    Compared at the scale of the residual stream (the sum), not of the difference, which
    loses digits where the stream is large.
    """
    if branch is None or after.shape != branch.shape:
        return False
    if close(after, before + branch, tol):
        return True
    b, d = branch.float().flatten(), (after.float() - before.float()).flatten()
    c = (b @ d / (b @ b).clamp_min(1e-30)).item()
    if c != 0 and close(after, before + c * branch.float(), tol):
        return True
    for norm in norms:
        with contextlib.suppress(Exception):
            if close(after, before + norm(branch.to(next(norm.parameters()).dtype)), tol):
                return True
    return False


def _layer_norms(model, layout: Layout, layer: int) -> list[nn.Module]:
    block = model.get_submodule(layout.layer_path(layer))
    return [
        m
        for m in block.modules()
        if m is not block
        and "norm" in type(m).__name__.lower()
        and isinstance(getattr(m, "weight", None), torch.Tensor)
        and m.weight.shape[-1] == layout.d_model
    ]


def _check_residuals(model, layout: Layout, cache: dict, report: ProbeReport, tol: float) -> None:
    held = True
    for layer in range(layout.n_layers):
        get = {r: cache.get(f"layers.{layer}.{r}") for r in RESIDUAL}
        if get["resid_pre"] is None or get["resid_post"] is None:
            continue
        norms = _layer_norms(model, layout, layer)
        if get["resid_mid"] is not None:
            pairs = [
                ("resid_mid", get["resid_mid"], get["resid_pre"], get["attn.out"]),
                ("resid_post", get["resid_post"], get["resid_mid"], get["mlp.out"]),
            ]
            for name, after, before, branch in pairs:
                if branch is not None and not _branch_matches(after, before, branch, norms, tol):
                    held = False
                    report.failed.setdefault(  # resid_mid is the point this identity puts in doubt
                        f"layers.{layer}.resid_mid",
                        "the residual identity fails ("
                        + ("resid_mid = resid_pre + attn.out" if name == "resid_mid"
                           else "resid_post = resid_mid + mlp.out") + ")",
                    )  # fmt: skip
        elif get["attn.out"] is not None and get["mlp.out"] is not None:
            branch = get["attn.out"] + get["mlp.out"]
            if not _branch_matches(get["resid_post"], get["resid_pre"], branch, norms, tol):
                report.skipped["residuals"] = (
                    "the block has no resid_mid and is not a plain parallel sum (a post-norm "
                    "block); only resid_pre/resid_post are checked"
                )
                return
    if held and any(f"layers.0.{r}" in cache for r in ("resid_mid", "attn.out")):
        report.held.append("residual identities")


# -- attention scores from q and k ---------------------------------------------------------


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    return torch.stack((-x[..., 1::2], x[..., ::2]), dim=-1).flatten(-2)


def _rotations(cos: torch.Tensor, sin: torch.Tensor, namespace) -> dict[str, Callable]:
    """Ways the model may apply its rotary embedding to (b, h, s, d) queries or keys."""
    cos, sin = cos.float().unsqueeze(1), sin.float().unsqueeze(1)
    rot = cos.shape[-1]

    def partial(rotate, c, s):
        def apply(x):
            head, rest = x[..., :rot], x[..., rot:]
            return torch.cat((head * c + rotate(head) * s, rest), dim=-1)

        return apply

    ways = {
        "rotate-half": partial(_rotate_half, cos, sin),
        "interleaved": partial(_rotate_pairs, cos, sin),
    }
    half = rot // 2
    ways["interleaved-halves"] = partial(
        _rotate_pairs,
        cos[..., :half].repeat_interleave(2, -1),
        sin[..., :half].repeat_interleave(2, -1),
    )
    own = getattr(namespace, "apply_rotary_pos_emb", None)
    if callable(own):

        def model_own(x):
            return own(x, x, cos.squeeze(1), sin.squeeze(1))[0]

        ways["model's apply_rotary_pos_emb"] = model_own
    return ways


def _head_norm(model, layout: Layout, layer: int, path: str | None, x: torch.Tensor, heads: int):
    """Apply the adapter's q/k norm as the model does: per head, or over all heads at once."""
    if path is None:
        return x
    try:
        norm = model.get_submodule(f"{layout.layer_path(layer)}.{path}")
    except AttributeError:  # a table's optional norm (Cohere's use_qk_norm=False)
        return x
    weight = getattr(norm, "weight", None)
    if weight is None or weight.shape[-1] == x.shape[-1]:
        return norm(x)
    return norm(x.unflatten(-1, (heads, -1))).flatten(-2)


def _check_query_key(model, layout, cache, attentions, attn_inputs, report, tol) -> None:
    if "layers.0.attn.q" not in cache or "layers.0.attn.k" not in cache:
        return
    if attentions is None or len(attentions) != layout.n_layers or attentions[0] is None:
        report.skipped["attn.q/attn.k"] = (
            "the model returns no attention probabilities under eager attention"
        )
        return
    adapter = layout.adapter
    for layer in range(layout.n_layers):
        names = (f"layers.{layer}.attn.q", f"layers.{layer}.attn.k")
        if not all(name in cache for name in names) or attentions[layer] is None:
            continue  # a layer without attention (hybrid models)
        q = _head_norm(model, layout, layer, adapter.q_norm, cache[f"layers.{layer}.attn.q"],
                       layout.n_heads)  # fmt: skip
        k = _head_norm(model, layout, layer, adapter.k_norm, cache[f"layers.{layer}.attn.k"],
                       layout.n_kv)  # fmt: skip
        found = _replay(model, layout, layer, q, k, attentions[layer], attn_inputs.get(layer), tol)
        if found is None:
            known = (
                "rotary cos/sin"
                if (attn_inputs.get(layer) or {}).get("position_embeddings") is not None
                else "no position arguments"
            )
            report.unreplayed = (
                f"q and k of layer {layer} do not reproduce the model's attention probabilities "
                f"under the position encodings the probe can replay (the attention module got "
                f"{known}; tried no rotation, rotate-half, interleaved, ALiBi)"
            )
            report.skipped["attn.q/attn.k"] = report.unreplayed
            return
        report.rotary = found
    report.held.append(f"attention probabilities from q/k ({report.rotary})")


def _replay(model, layout, layer, q, k, probs, kwargs, tol) -> str | None:
    """The position encoding under which softmax(q k^T) reproduces ``probs``, if any."""
    b, s = q.shape[:2]
    q = q.float().view(b, s, layout.n_heads, layout.d_head).transpose(1, 2)
    k = k.float().view(b, s, layout.n_kv, layout.d_head).transpose(1, 2)
    k = k.repeat_interleave(layout.n_heads // layout.n_kv, dim=1)
    attention = model.get_submodule(_attention_path(layout, layer))
    ways: dict[str, Callable] = {"no rotation": lambda x: x}
    position = (kwargs or {}).get("position_embeddings")
    if isinstance(position, (tuple, list)) and len(position) == 2:
        namespace = importlib.import_module(type(attention).__module__)
        ways = _rotations(position[0], position[1], namespace) | ways
    config = model.config
    scales = [getattr(attention, "scaling", None), layout.d_head**-0.5,
              getattr(config, "attention_multiplier", None)]  # fmt: skip
    cap = getattr(config, "attn_logit_softcapping", None)
    alibi = (kwargs or {}).get("alibi")  # Bloom: scores + beta * alibi, (b * h, 1, s)
    bias = 0.0
    if isinstance(alibi, torch.Tensor) and alibi.numel() == b * layout.n_heads * s:
        beta = float(getattr(attention, "beta", 1.0))
        bias = alibi.float().reshape(b, layout.n_heads, 1, s) * beta
    mask = torch.ones(s, s, dtype=torch.bool, device=q.device).tril()
    target = probs.float()
    for label, rotate in ways.items():
        try:
            raw = rotate(q) @ rotate(k).transpose(-1, -2)
        except Exception:  # noqa: BLE001 - a form that does not fit these shapes
            continue
        for scale in {float(x) for x in scales if x}:
            scores = raw * scale + bias
            if cap:
                scores = torch.tanh(scores / cap) * cap
            probs_hat = scores.masked_fill(~mask, float("-inf")).softmax(-1)
            if close(probs_hat, target, max(tol, 1e-4) * 10):
                return label
    return None


# -- once per model fingerprint --------------------------------------------------------------

_PROVED: dict[str, ProbeReport] = {}


def adapter_key(adapter) -> str:
    """A stable identity for an adapter's table (its name and every entry)."""
    text = json.dumps([adapter.name, adapter.layers, repr(sorted(adapter.points.items())),
                       adapter.q_norm, adapter.k_norm], default=str)  # fmt: skip
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _model_key(model: nn.Module, fingerprint: str) -> str:
    """The weights' fingerprint, the model's class and config: two architectures with the
    same parameter names and shapes (BART and mBART), or one config flag (GPT-NeoX's
    use_parallel_residual), must not share a proof."""
    kind = type(model)
    try:
        settings = json.dumps(model.config.to_dict(), sort_keys=True, default=str)
    except Exception:  # noqa: BLE001 - a config that does not serialise: its repr
        settings = repr(model.config)
    config = hashlib.sha256(settings.encode()).hexdigest()[:16]
    return f"{fingerprint}:{kind.__module__}.{kind.__qualname__}:{config}"


def probe_once(model, layout: Layout, capture: Capture, fingerprint: str) -> ProbeReport:
    """:func:`probe`, remembered per (model fingerprint, adapter, transformers version)."""
    import transformers

    key = (
        f"{_model_key(model, fingerprint)}:{adapter_key(layout.adapter)}:{transformers.__version__}"
    )
    if key not in _PROVED:
        _PROVED[key] = probe(model, layout, capture)
    return _PROVED[key]


# -- proving an adapter before use ----------------------------------------------------------

REQUIRED = ("embed", "resid_pre", "resid_post", "unembed")
_TOGETHER = {"attn.q": ("attn.q", "attn.k", "attn.pattern"), "attn.k": ("attn.q", "attn.k")}


def has_module(model: nn.Module) -> Callable[[str], bool]:
    def exists(path: str) -> bool:
        try:
            model.get_submodule(path)
        except AttributeError:
            return False
        return True

    return exists


#: Roles every decoder has where a table defines them: a table that names one whose module
#: is in no layer was written for another module tree (tables also pick between variants
#: by module existence, so optional roles such as ln2 or resid_mid are not checked).
CORE = ("embed", "ln1", "attn.q", "attn.k", "attn.v", "attn.out", "mlp.down_in", "final_norm",
        "unembed")  # fmt: skip


def missing_modules(layout: Layout) -> list[tuple[str, str]]:
    """Core roles of the table that resolve to no module in any layer: ``(role, path)``."""
    from interpret_shift.core.adapters.spec import LAYER_POINTS

    missing = []
    for role in CORE:
        candidates = layout.adapter.candidates(role)
        if not candidates or (role == "mlp.down_in" and layout.adapter.experts is not None):
            continue  # a mixture-of-experts table names down_in for its dense layers only
        layers = range(layout.n_layers) if role in LAYER_POINTS else [None]
        if all(layout.entry(role, layer) is None for layer in layers):
            base = layout.layer_path(0) if role in LAYER_POINTS else ""
            paths = [".".join(p for p in (base, c.module) if p) for c in candidates]
            missing.append((role, " or ".join(paths)))
    return missing


def check_table(
    model: nn.Module,
    adapter,
    capture_for: Callable[[Layout], Capture],
    fingerprint: str,
    source: str,
) -> ProbeReport:
    """Probe a table adapter; a failure is a :class:`ModelLoadError` naming the points."""
    from interpret_shift.errors import ModelLoadError

    layout = Layout(adapter, model.config, has_module(model))
    report = probe_once(model, layout, capture_for(layout), fingerprint)
    for role, path in missing_modules(layout):
        report.failed.setdefault(role, f"the table names {path}, which this model does not have")
    if report.failed:
        import transformers

        shown = "; ".join(f"{name}: {why}" for name, why in list(report.failed.items())[:4])
        raise ModelLoadError(
            f"The {adapter.name} adapter does not fit {source} as loaded by transformers "
            f"{transformers.__version__}: {shown}.",
            "The model's module tree differs from the table (a renamed module, or another "
            "variant of the family). Fix the table (docs/inferred-adapters.md shows how to "
            "print an inferred one as a starting point), or pass no table for this "
            "architecture so that one is inferred and proved.",
        )
    return report


def prove_inferred(
    model: nn.Module, capture_for: Callable[[Layout], Capture], source: str
) -> tuple[object, ProbeReport, dict[str, str]]:
    """Infer a table from the loaded model, prove it, and drop what cannot be proved.

    Returns the adapter, the probe's report and the roles left out (role -> why). The
    roles every explainer needs (embedding, residual stream, unembedding) must hold, or a
    :class:`ModelLoadError` says which could not be placed.
    """
    from interpret_shift.core.adapters.infer import infer_adapter, without
    from interpret_shift.errors import ModelLoadError

    inference = infer_adapter(model)
    adapter, dropped = inference.adapter, dict(inference.notes)
    if "attn.q" in dropped:
        adapter = without(adapter, ("attn.q", "attn.k", "attn.v", "attn.pattern"))
    if "mlp.down_in" in dropped:
        adapter = without(adapter, ("mlp.down_in",))
    for role in REQUIRED:
        if role not in adapter.points:
            raise ModelLoadError(
                f"Could not infer an adapter for {source}: the {role!r} role could not be "
                "placed in its module tree.",
                "Write an adapter table for this architecture (see docs/inferred-adapters.md).",
            )
    adapter = _choose_scheme(model, adapter, inference, capture_for, dropped)
    report = ProbeReport(adapter.name)
    for _ in range(5):
        layout = Layout(adapter, model.config, has_module(model))
        report = probe(model, layout, capture_for(layout))
        if report.skipped.get("all"):
            break
        failed_roles = {layout.split(name)[0]: why for name, why in report.failed.items()}
        fatal = [role for role in failed_roles if role in REQUIRED]
        if fatal:
            role = fatal[0]
            raise ModelLoadError(
                f"Could not infer an adapter for {source}: the {role!r} role was placed at "
                f"{layout.module_path(role, 0 if role != 'embed' and role != 'unembed' else None)!r}"
                f" but {failed_roles[role]}.",
                "Write an adapter table for this architecture (see docs/inferred-adapters.md).",
            )
        if not failed_roles:
            break
        down = adapter.points.get("mlp.down_in")
        mlp_out = adapter.points.get("mlp.out")
        if (
            "resid_mid" in failed_roles
            and down is not None
            and mlp_out is not None
            and (mlp_out.module != down.module)
        ):
            # Bloom-style MLPs add the residual inside: the branch is the down-projection's output
            adapter = _with_point(adapter, "mlp.out", replace(down, io="output"))
            continue
        drop = set()
        for role, why in failed_roles.items():
            drop |= set(_TOGETHER.get(role, (role,)))
            dropped[role] = why
        adapter = without(adapter, drop)
    if "attn.q" not in adapter.points and "attn.q" not in dropped:
        dropped["attn.q"] = "no attention q/k points"
    if "attn.q" in adapter.points and "attn.q/attn.k" in report.skipped:
        dropped["attn.q"] = report.skipped["attn.q/attn.k"]
        adapter = without(adapter, ("attn.q", "attn.k", "attn.pattern"))
        if adapter.points.get("attn.v") and adapter.points["attn.v"].fused:
            adapter = without(adapter, ("attn.v",))
    return adapter, report, dropped


def _with_point(adapter, role: str, point):
    return replace(adapter, points={**adapter.points, role: point})


def _choose_scheme(model, adapter, inference, capture_for, dropped: dict):
    """For a fused q/k/v projection: the fusion scheme under which q/k reproduce attention."""

    from interpret_shift.core.adapters.infer import fused_schemes
    from interpret_shift.core.adapters.spec import Point

    tree = inference.tree
    if tree.qkv is None or "attn.q" not in adapter.points:
        return adapter
    probe_layout = Layout(adapter, model.config, has_module(model))
    width = model.get_submodule(f"{tree.layers}.0.{tree.qkv}").weight.shape[
        0 if tree.qkv_type == "linear" else 1
    ]
    schemes = fused_schemes(width, probe_layout.n_heads, probe_layout.n_kv, probe_layout.d_head)
    for scheme, _ in schemes:
        points = dict(adapter.points)
        for part in "qkv":
            points[f"attn.{part}"] = Point(tree.qkv, fused=scheme, part=part,
                                           weight_type=tree.qkv_type)  # fmt: skip
        candidate = replace(adapter, points=points)
        layout = Layout(candidate, model.config, has_module(model))
        report = probe(model, layout, capture_for(layout))
        if not any(".attn.q" in name or ".attn.k" in name for name in report.failed):
            if "attn.q/attn.k" not in report.skipped:
                return candidate
    dropped["attn.q"] = (
        f"the fused projection {tree.qkv} (width {width}) splits into q, k and v under none of "
        f"the known schemes ({', '.join(s for s, _ in schemes) or 'none fits the width'}) "
        "such that q and k reproduce the attention probabilities"
    )
    from interpret_shift.core.adapters.infer import without

    return without(adapter, ("attn.q", "attn.k", "attn.v"))


_INFERRED: dict[str, tuple] = {}


def settle(
    model: nn.Module,
    adapter,
    capture_for: Callable[[Layout], Capture],
    fingerprint: Callable[[], str],
    source: str,
) -> tuple[object, str | None]:
    """The adapter to use on ``model``, proved on it, and a notice line for the user (or None).

    A table is probed (:func:`check_table`); an inferred draft is inferred again from the
    loaded model and proved (:func:`prove_inferred`). Models on the meta device or offloaded
    to disk are not probed. Both are remembered per model fingerprint.
    """

    from interpret_shift.core.adapters.infer import is_inferred

    if offloaded(model):
        return adapter, None
    if not is_inferred(adapter):
        check_table(model, adapter, capture_for, fingerprint(), source)
        return adapter, None
    import transformers

    key = f"{_model_key(model, fingerprint())}:{transformers.__version__}"
    if key not in _INFERRED:
        proved, report, dropped = prove_inferred(model, capture_for, source)
        notes = "; ".join(f"no {role}: {why}" for role, why in sorted(dropped.items()))
        _INFERRED[key] = (replace(proved, notes=notes), report)
    proved, report = _INFERRED[key]
    return proved, notice(proved, report, source)


def notice(adapter, report: ProbeReport, source: str) -> str:
    """One paragraph saying that the adapter was inferred and what was proved."""
    text = (
        f"{source}: no adapter table for this architecture, so one was inferred from the "
        f"module tree ({adapter.name}) and proved on the model: {', '.join(report.held)}."
    )
    if adapter.notes:
        text += f" Left out: {adapter.notes}."
    return text + " See docs/inferred-adapters.md to turn it into a table."
