"""Adapters inferred from a model's module tree, for causal LMs that no table describes.

Two steps. :func:`read_tree` places the roles by name and shape alone (it works on a
``meta`` skeleton, so a model that cannot be placed fails before any weight is read).
:func:`infer_adapter` then runs one small forward on the loaded model and settles what
names cannot: which norm feeds attention and which the MLP, whether the block is serial or
parallel, the layout of a fused q/k/v projection. The result is an ordinary
:class:`Adapter` table; :mod:`interpret_shift.core.adapters.probe` proves it on the model
(hidden states, residual identities, attention scores) before anything uses it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from interpret_shift.core.adapters.spec import Adapter, Experts, Point
from interpret_shift.errors import ModelLoadError

PREFIX = "inferred:"
MODEL_ROLES = ("embed", "final_norm", "unembed")
DOCS = "docs/inferred-adapters.md"

Q_NAMES = ("q_proj", "query", "q", "wq", "query_proj", "q_lin")
K_NAMES = ("k_proj", "key", "k", "wk", "key_proj", "k_lin")
V_NAMES = ("v_proj", "value", "v", "wv", "value_proj", "v_lin")
QKV_NAMES = ("qkv_proj", "c_attn", "query_key_value", "Wqkv", "qkv", "W_pack", "wqkv", "in_proj")
O_NAMES = ("o_proj", "out_proj", "dense", "c_proj", "wo", "o", "out_lin", "output.dense", "proj")
GATE_NAMES = ("gate_proj", "w1", "wi_0", "fc1_g", "gate")
UP_NAMES = (
    "up_proj",
    "c_fc",
    "fc1",
    "dense_h_to_4h",
    "fc_in",
    "w3",
    "wi",
    "wi_1",
    "intermediate.dense",
)
DOWN_NAMES = ("down_proj", "c_proj", "fc2", "dense_4h_to_h", "fc_out", "w2", "wo", "output.dense")
GATE_UP_NAMES = ("gate_up_proj", "w12", "fc1_gate_up")
QK_NORMS = (
    ("q_norm", "k_norm"),
    ("q_layernorm", "k_layernorm"),
    ("query_layernorm", "key_layernorm"),
)
EXPERT_COUNTS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts")
ATTN_WORDS = ("attention", "attn")
MLP_WORDS = ("mlp", "feedforward", "feed_forward", "ffn", "moe")


def is_inferred(adapter: Adapter) -> bool:
    return adapter.name.startswith(PREFIX)


def choose_adapter(config, adapters: Iterable[Adapter], model: nn.Module | None = None) -> Adapter:
    """The table for ``config`` if there is one, else an adapter inferred from the module
    tree (of ``model``, or of a skeleton built on the meta device: no weights are read).

    An inferred adapter is a draft until :func:`~interpret_shift.core.adapters.probe.settle`
    has proved it on the loaded model.
    """
    from interpret_shift.core.adapters import find_adapter

    try:
        return find_adapter(config, adapters)
    except ModelLoadError as no_table:
        if model is None:
            from transformers import AutoModelForCausalLM

            with torch.device("meta"):
                model = AutoModelForCausalLM.from_config(config)
        try:
            return infer_adapter(model).adapter
        except ModelLoadError as error:
            raise ModelLoadError(f"{no_table.what} {error.what}", error.fix) from error


@dataclass
class Tree:
    """Roles placed by name and shape: paths relative to one layer unless said otherwise."""

    layers: str
    embed: str
    unembed: str | None
    final_norms: list[str]
    attn: str | None = None
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None
    qkv_type: str = "linear"
    o: str | None = None
    o_type: str = "linear"
    mlp: str | None = None
    up: str | None = None
    gate: str | None = None
    gate_up: str | None = None
    down: str | None = None
    mlp_type: str = "linear"
    act: str | None = None
    experts: Experts | None = None
    norms: list[str] = field(default_factory=list)  # layer-level norms, in registration order
    q_norm: str | None = None
    k_norm: str | None = None
    notes: dict[str, str] = field(default_factory=dict)  # role -> why it is not placed


def _text_config(config):
    getter = getattr(config, "get_text_config", None)
    return getter() if callable(getter) else config


def _path_of(model: nn.Module, target: nn.Module | None) -> str | None:
    if target is None:
        return None
    return next((name for name, module in model.named_modules() if module is target), None)


def _is_norm(module: nn.Module) -> bool:
    """A normalisation layer (with or without a weight: NanoChat's RMSNorm has none)."""
    name = type(module).__name__.lower()
    return isinstance(module, (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm)) or name.endswith("norm")


def _linear_shape(module: nn.Module) -> tuple[int, int, str] | None:
    """``(in, out, weight_type)`` of a linear-like module, or None."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    if isinstance(module, nn.Linear):
        return module.in_features, module.out_features, "linear"
    if type(module).__name__ == "Conv1D":  # GPT-2 style: weight is (in, out)
        return weight.shape[0], weight.shape[1], "conv1d"
    if isinstance(module, nn.Embedding):
        return None
    return weight.shape[1], weight.shape[0], "linear"


def _find_layers(model: nn.Module, n_layers: int) -> str:
    """The ModuleList of decoder blocks: ``n_layers`` long, the most parameters."""
    best, best_size = None, -1
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) == n_layers and name:
            size = sum(p.numel() for p in module.parameters())
            if size > best_size:
                best, best_size = name, size
    if best is None:
        raise ModelLoadError(
            f"Could not place the decoder layers: no list of {n_layers} blocks "
            "(config.num_hidden_layers) in the module tree.",
            f"Write an adapter table for this architecture ({DOCS}).",
        )
    return best


def _by_name(modules: dict[str, nn.Module], names: Iterable[str]) -> str | None:
    """The first module whose path ends with one of ``names`` (in the order of ``names``)."""
    for wanted in names:
        for path in modules:
            if path == wanted or path.endswith("." + wanted):
                return path
    return None


def _container(layer: nn.Module, words: tuple[str, ...], exclude: str | None = None) -> str | None:
    """The shallowest submodule whose name or class says it is attention / an MLP."""
    found = []
    for path, module in layer.named_modules():
        if not path or (exclude and (path == exclude or path.startswith(exclude + "."))):
            continue
        label = (path.rsplit(".", 1)[-1] + " " + type(module).__name__).lower()
        if "norm" in label or "dropout" in label or _linear_shape(module) is not None:
            continue
        if any(word in label for word in words):
            found.append(path)
    return min(found, key=lambda p: p.count("."), default=None)


def read_tree(model: nn.Module) -> Tree:
    """Place every role by name and shape (no forward; a meta skeleton will do)."""
    config = _text_config(model.config)
    n_layers = int(config.num_hidden_layers)
    d_model = int(config.hidden_size)
    layers = _find_layers(model, n_layers)
    embed = _path_of(model, model.get_input_embeddings())
    if embed is None:
        raise ModelLoadError(
            "Could not place the token embedding (get_input_embeddings() returned nothing).",
            f"Write an adapter table for this architecture ({DOCS}).",
        )
    unembed = _path_of(model, model.get_output_embeddings())
    block = model.get_submodule(f"{layers}.0")
    base = layers.rsplit(".", 1)[0] if "." in layers else ""
    owner = model.get_submodule(base) if base else model
    final = [
        f"{base}.{name}" if base else name
        for name, child in owner.named_children()
        if _is_norm(child) and child is not model.get_input_embeddings()
    ]
    tree = Tree(layers=layers, embed=embed, unembed=unembed, final_norms=final)
    width = getattr(model.get_input_embeddings(), "weight", None)
    if isinstance(width, torch.Tensor) and width.shape[-1] != d_model:
        why = (
            f"the token embedding is {width.shape[-1]} wide, not d_model={d_model} (it is "
            "projected), so words cannot be read through the weights"
        )
        tree.notes["attn.q"] = tree.notes["mlp.down_in"] = why
    modules = dict(block.named_modules())
    _place_attention(tree, block, modules, config, d_model)
    _place_mlp(tree, block, modules, d_model, config)
    tree.norms = [
        path
        for path, module in modules.items()
        if path
        and _is_norm(module)
        and not _inside(path, tree.attn if tree.q or tree.qkv else None)
        and _width_ok(module, d_model)
    ]
    return tree


def _width_ok(norm: nn.Module, d_model: int) -> bool:
    weight = getattr(norm, "weight", None)
    return not isinstance(weight, torch.Tensor) or weight.shape[-1] == d_model


def _inside(path: str, container: str | None) -> bool:
    return bool(container) and (path == container or path.startswith(container + "."))


def _place_attention(tree: Tree, block: nn.Module, modules: dict, config, d_model: int) -> None:
    attn = _container(block, ATTN_WORDS)
    if attn is None:
        tree.notes["attention"] = "no attention module in the block (attention-free model)"
        return
    tree.attn = attn
    inner = {p: m for p, m in modules.items() if _inside(p, attn) and _linear_shape(m)}
    shapes = {p: _linear_shape(m) for p, m in inner.items()}
    reading = {p for p, s in shapes.items() if s[0] == d_model}
    q, k, v = (
        _by_name({p: inner[p] for p in reading}, names) for names in (Q_NAMES, K_NAMES, V_NAMES)
    )
    if q and k and v:
        tree.q, tree.k, tree.v = q, k, v
    else:
        qkv = _by_name({p: inner[p] for p in reading}, QKV_NAMES)
        if qkv is None:
            tree.notes["attn.q"] = (
                f"no q/k/v projections found in {attn} (looked for {', '.join(Q_NAMES[:3])}, "
                f"... or a fused {', '.join(QKV_NAMES[:3])}, ...)"
            )
        tree.qkv = qkv
        tree.qkv_type = shapes[qkv][2] if qkv else "linear"
    writing = {p: inner[p] for p, s in shapes.items() if s[1] == d_model and p not in (q, k, v)}
    o = _by_name(writing, O_NAMES) or (next(iter(writing)) if len(writing) == 1 else None)
    # BERT-style: the output projection sits beside the attention core, in attention.output
    tree.o = o
    tree.o_type = shapes[o][2] if o else "linear"
    if o is None:
        tree.notes["attn.out"] = f"no output projection (to d_model={d_model}) found in {attn}"
    for q_norm, k_norm in QK_NORMS:
        qn, kn = _by_name(modules, (f"{attn}.{q_norm}",)), _by_name(modules, (f"{attn}.{k_norm}",))
        if qn and kn:
            tree.q_norm, tree.k_norm = qn, kn
            break


def _stacked_experts(modules: dict, paths: list[str], config, d_model: int) -> Experts | None:
    """Where the experts' stacked down-projections are: ``(n_experts, d_model, d_ff)``."""
    for path in paths:
        for name in ("down_proj", "w2", "down"):
            weight = getattr(modules[path], name, None)
            if not isinstance(weight, torch.Tensor) or weight.dim() != 3:
                continue
            if weight.shape[1] != d_model:
                continue
            for count in EXPERT_COUNTS:
                if getattr(config, count, None) == weight.shape[0]:
                    return Experts(count=count, down=(f"{path}.{name}",))
    return None


def _place_mlp(tree: Tree, block: nn.Module, modules: dict, d_model: int, config) -> None:
    mlp = _container(block, MLP_WORDS, exclude=tree.attn)
    scope = {
        p: m
        for p, m in modules.items()
        if (_inside(p, mlp) if mlp else not _inside(p, tree.attn)) and _linear_shape(m)
    }
    if mlp:
        # experts keep their weights as stacked parameters (no per-expert modules)
        stacked = [p for p, m in modules.items() if _inside(p, mlp) and "expert" in p.lower()]
        if stacked and not any("expert" in p.lower() for p in scope):
            tree.mlp = mlp
            tree.experts = _stacked_experts(modules, stacked, config, d_model)
            if tree.experts is None:
                tree.notes["mlp.down_in"] = (
                    "mixture of experts whose stacked down-projections could not be placed"
                )
            return
    shapes = {p: _linear_shape(m) for p, m in scope.items()}
    down_candidates = {
        p: scope[p] for p, s in shapes.items() if s[1] == d_model and s[0] != d_model
    }
    down = _by_name(down_candidates, DOWN_NAMES) or (
        next(iter(down_candidates)) if len(down_candidates) == 1 else None
    )
    if down is None:
        tree.mlp = mlp
        tree.notes["mlp.down_in"] = "no MLP down-projection (d_ff -> d_model) found in the block"
        return
    d_ff = shapes[down][0]
    tree.mlp, tree.down, tree.mlp_type = mlp, down, shapes[down][2]
    reading = {p: scope[p] for p, s in shapes.items() if s[0] == d_model}
    fused = {p: reading[p] for p in reading if shapes[p][1] == 2 * d_ff}
    tree.gate_up = _by_name(fused, GATE_UP_NAMES)
    if tree.gate_up is None:
        widths = {p: reading[p] for p in reading if shapes[p][1] == d_ff}
        tree.up = _by_name(widths, UP_NAMES)
        gate = _by_name({p: m for p, m in widths.items() if p != tree.up}, GATE_NAMES)
        if tree.up is None and len(widths) == 1:
            tree.up = next(iter(widths))
        if gate is not None and tree.up in ("w1", f"{mlp}.w1"):
            tree.up, gate = gate, tree.up
        tree.gate = gate
    acts = [
        p
        for p, m in modules.items()
        if (_inside(p, mlp) if mlp else True)
        and type(m).__module__.startswith(
            ("transformers.activations", "torch.nn.modules.activation")
        )
    ]
    tree.act = acts[0] if len(acts) == 1 else None


# -- dataflow on the loaded model ---------------------------------------------------------


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return None


def trace(
    model: nn.Module, layer_path: str, ids: torch.Tensor, extra: Iterable[str] = ()
) -> dict[str, tuple]:
    """Inputs and outputs of every submodule of one layer (paths relative to it) and of the
    ``extra`` modules (absolute paths, prefixed by '/'), in one forward pass."""
    seen: dict[str, tuple] = {}
    handles = []
    block = model.get_submodule(layer_path)
    watched = list(block.named_modules()) + [("/" + p, model.get_submodule(p)) for p in extra]

    def watch(path):
        def hook(module, args, kwargs, output):
            first = (
                args[0]
                if args
                else next((v for v in kwargs.values() if isinstance(v, torch.Tensor)), None)
            )
            if path not in seen:
                seen[path] = (first, _first_tensor(output), output, kwargs)

        return hook

    try:
        for path, module in watched:
            handles.append(module.register_forward_hook(watch(path), with_kwargs=True))
        with torch.no_grad():
            model(ids)
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _same(a, b) -> bool:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor) or a.shape != b.shape:
        return False
    scale = b.abs().max().item() or 1.0
    return (a.float() - b.float()).abs().max().item() <= 1e-5 * max(scale, 1.0)


def probe_ids(config, length: int = 6) -> torch.Tensor:
    """A few ordinary token ids (no special ones), the same every time."""
    vocab = int(getattr(config, "vocab_size", 0) or 128)
    generator = torch.Generator().manual_seed(0)
    return torch.randint(
        min(3, vocab - 1), max(4, min(vocab, 1000)), (1, length), generator=generator
    )


@dataclass
class Inference:
    """An inferred table, the placed tree it came from, and why some roles are missing."""

    adapter: Adapter
    tree: Tree
    roles: dict
    notes: dict[str, str]
    proved: bool = False


FINAL_NAMES = ("norm", "ln_f", "final_layernorm", "final_layer_norm", "norm_f", "final_norm")


def infer_adapter(model: nn.Module) -> Inference:
    """An adapter for ``model`` from its module tree (and, if loaded, one traced forward).

    On a meta skeleton the norms are placed by name and order only; the loaded model
    settles them. Raises :class:`ModelLoadError` naming the role that could not be placed.
    """
    tree = read_tree(model)
    meta = any(p.is_meta for p in model.parameters())
    if not meta:
        device = next(model.parameters()).device
        n_layers = int(_text_config(model.config).num_hidden_layers)
        last = f"{tree.layers}.{n_layers - 1}"
        seen = trace(model, f"{tree.layers}.0", probe_ids(model.config).to(device),
                     extra=[last, *tree.final_norms])  # fmt: skip
        roles = _settle_norms(tree, seen)
        block_in = seen.get("", (None,))[0]
        attn_output = seen.get(tree.attn, (None, None, None))[2] if tree.attn else None
        roles["pattern"] = (
            isinstance(attn_output, tuple)
            and len(attn_output) > 1
            and isinstance(attn_output[1], torch.Tensor)
            and attn_output[1].dim() == 4
        )
        block_out = seen.get("", (None, None, None))[2]
        if isinstance(block_out, list) and block_out:  # OpenAI-GPT: hooks need a tensor/tuple
            roles["resid_post"] = next(
                (p for p, v in reversed(seen.items()) if p and not p.startswith("/")
                 and _same(v[1], block_out[0])),
                None,
            )  # fmt: skip
        roles["flat"] = {  # OPT-style: modules that see (batch * seq, features)
            path
            for path, (_, out, *_) in seen.items()
            if not path.startswith("/")
            and isinstance(out, torch.Tensor)
            and out.dim() == 2
            and isinstance(block_in, torch.Tensor)
            and block_in.dim() == 3
        }
        last_out = seen.get("/" + last, (None, None))[1]
        roles["final_norm"] = next(
            (n for n in tree.final_norms if _same(seen.get("/" + n, (None,))[0], last_out)), None
        )
    else:
        roles = _guess_norms(tree)
        named = [n for n in tree.final_norms if n.rsplit(".", 1)[-1] in FINAL_NAMES]
        roles["final_norm"] = (named or tree.final_norms or [None])[-1]
    adapter = build(tree, model.config, roles)
    return Inference(adapter, tree, roles, dict(tree.notes))


def _guess_norms(tree: Tree) -> dict[str, str | None]:
    """Without a forward: the first layer-level norm reads the block input, the second the MLP's."""
    norms = tree.norms
    ln1 = norms[0] if norms and tree.attn else None
    ln2 = norms[1] if len(norms) > 1 and tree.attn and tree.down else None
    return {"ln1": ln1, "ln2": ln2, "resid_mid": ln2, "parallel": None}


def _settle_norms(tree: Tree, seen: dict[str, tuple]) -> dict[str, str | None]:
    """Which norm feeds attention (ln1) and which the MLP (ln2), and where resid_mid is."""
    block_in = seen.get("", (None,))[0]
    attn_in = seen.get(tree.attn, (None,))[0] if tree.attn else None
    if tree.q or tree.qkv:
        attn_in = seen.get(tree.q or tree.qkv, (attn_in,))[0]
    mlp_reader = tree.mlp or tree.up or tree.gate_up
    mlp_in = seen.get(mlp_reader, (None,))[0] if mlp_reader else None
    ln1 = next((n for n in tree.norms if n in seen and _same(seen[n][1], attn_in)), None)
    ln2 = next(
        (n for n in tree.norms if n in seen and n != ln1 and _same(seen[n][1], mlp_in)), None
    )
    resid_mid = None
    parallel = mlp_in is not None and (
        _same(mlp_in, block_in) or (ln2 is not None and _same(seen[ln2][0], block_in))
    )
    if ln2 is not None and not parallel:
        resid_mid = ln2
    elif ln2 is None and tree.mlp and mlp_in is not None and not parallel:
        resid_mid = tree.mlp  # no pre-MLP norm (OLMo-2): the MLP reads the stream itself
    return {"ln1": ln1, "ln2": ln2, "resid_mid": resid_mid, "parallel": parallel or None}


def fused_schemes(width: int, n_heads: int, n_kv: int, d_head: int) -> list[tuple[str, int]]:
    """Fusion schemes a q/k/v projection of ``width`` outputs may use: (scheme, kv heads)."""
    schemes = []
    if width == (n_heads + 2 * n_kv) * d_head:
        schemes += [("concat", n_kv)] + ([("per_head", n_kv)] if n_kv == n_heads else [])
        if n_kv != n_heads and n_heads % n_kv == 0:
            schemes.append(("grouped", n_kv))
    if width == (n_heads + 2) * d_head and n_kv != 1:
        schemes.append(("concat_mq", 1))
    return schemes


def build(tree: Tree, config, roles: dict[str, str | None], scheme: str | None = None) -> Adapter:
    """The adapter table for a placed tree (``scheme``: the q/k/v fusion, if fused)."""
    text = _text_config(config)
    architecture = (getattr(config, "architectures", None) or [None])[0]
    model_type = getattr(config, "model_type", "unknown")
    layer_in, layer_out = Point("", io="input"), Point("", io="output")
    points: dict[str, Point] = {"embed": Point(tree.embed), "resid_pre": layer_in}
    if roles.get("ln1"):
        points["ln1"] = Point(roles["ln1"])
    if tree.q and tree.k and tree.v:
        points |= {"attn.q": Point(tree.q), "attn.k": Point(tree.k), "attn.v": Point(tree.v)}
    elif tree.qkv:
        chosen = scheme or _default_scheme(tree, text)
        if chosen:
            points |= {
                f"attn.{part}": Point(tree.qkv, fused=chosen, part=part, weight_type=tree.qkv_type)
                for part in "qkv"
            }
    if tree.o:
        points["attn.z"] = Point(tree.o, io="input", weight_type=tree.o_type)
        points["attn.out"] = Point(tree.o, weight_type=tree.o_type)
    if tree.attn and (tree.q or tree.qkv) and roles.get("pattern", True):
        points["attn.pattern"] = Point(tree.attn, tuple_index=1)
    if roles.get("resid_mid"):
        points["resid_mid"] = Point(roles["resid_mid"], io="input")
    if roles.get("ln2"):
        points["ln2"] = Point(roles["ln2"])
    kind = tree.mlp_type
    if tree.gate_up:
        points["mlp.gate"] = Point(tree.gate_up, fused="halves", part="gate", weight_type=kind)
        points["mlp.up"] = Point(tree.gate_up, fused="halves", part="up", weight_type=kind)
    if tree.gate:
        points["mlp.gate"] = Point(tree.gate, weight_type=kind)
    if tree.up:
        points["mlp.up"] = Point(tree.up, weight_type=kind)
    if tree.act and tree.down:
        points["mlp.act"] = Point(tree.act)
    if tree.down:
        points["mlp.down_in"] = Point(tree.down, io="input", weight_type=kind)
    if tree.mlp:
        points["mlp.out"] = Point(tree.mlp)
    elif tree.down:
        points["mlp.out"] = Point(tree.down, weight_type=kind)
    points["resid_post"] = Point(roles["resid_post"]) if roles.get("resid_post") else layer_out
    if roles.get("final_norm"):
        points["final_norm"] = Point(roles["final_norm"])
    if tree.unembed:
        points["unembed"] = Point(tree.unembed)
    flat = roles.get("flat") or set()
    points = {
        role: replace(point, tokens_flat=True)
        if point.module in flat and role not in MODEL_ROLES
        else point
        for role, point in points.items()
    }
    per_head = (tree.q_norm, tree.k_norm) if "attn.q" in points else (None, None)
    return Adapter(
        name=PREFIX + str(model_type),
        architectures=(architecture,) if architecture else (),
        model_types=(str(model_type),),
        layers=tree.layers,
        points=points,
        norm_offset=0.0,
        q_norm=per_head[0],
        k_norm=per_head[1],
        experts=tree.experts,
    )


def _default_scheme(tree: Tree, config) -> str | None:
    """Before the probe picks one: the scheme the shapes allow first."""
    return None if tree.qkv is None else "concat"


def without(adapter: Adapter, roles: Iterable[str]) -> Adapter:
    """The same table without ``roles`` (points the probe could not prove)."""
    drop = set(roles)
    points = {name: point for name, point in adapter.points.items() if name not in drop}
    keep_norms = not drop & {"attn.q", "attn.k"}
    return replace(
        adapter,
        points=points,
        q_norm=adapter.q_norm if keep_norms else None,
        k_norm=adapter.k_norm if keep_norms else None,
    )


def adapter_source(adapter: Adapter, name: str | None = None) -> str:
    """The adapter as Python source: a table to paste into a plugin (or tables.py) and edit."""
    name = name or adapter.name.removeprefix(PREFIX)
    variable = "".join(c if c.isalnum() else "_" for c in name).upper()
    lines = [
        "from interpret_shift.core.adapters import Adapter, Point"
        + (", Experts" if adapter.experts else ""),
        "",
        f"{variable} = Adapter(",
        f"    name={name!r},",
        f"    architectures={tuple(adapter.architectures)!r},",
        f"    model_types={tuple(adapter.model_types)!r},",
        f"    layers={adapter.layers!r},",
    ]
    for field_name in ("q_norm", "k_norm"):
        value = getattr(adapter, field_name)
        if value:
            lines.append(f"    {field_name}={value!r},")
    if adapter.norm_offset:
        lines.append(f"    norm_offset={adapter.norm_offset!r},")
    if adapter.experts:
        lines.append(f"    experts={adapter.experts!r},")
    lines.append("    points={")
    for role, entry in adapter.points.items():
        candidates = entry if isinstance(entry, tuple) else (entry,)
        shown = ", ".join(_point_source(point) for point in candidates)
        if len(candidates) > 1:
            shown = f"({shown})"
        lines.append(f"        {role!r}: {shown},")
    lines += ["    },", ")"]
    if adapter.notes:
        lines.insert(2, f"# left out when inferred: {adapter.notes}")
    return "\n".join(lines) + "\n"


def _point_source(point: Point) -> str:
    """``Point(...)`` with only the fields that differ from the defaults."""
    default = Point(point.module)
    parts = [repr(point.module)]
    for name in ("io", "tuple_index", "fused", "part", "weight_type", "tokens_flat"):
        value = getattr(point, name)
        if value != getattr(default, name):
            parts.append(f"{name}={value!r}")
    if point.when:
        parts.append(f"when={dict(point.when)!r}")
    return f"Point({', '.join(parts)})"
