"""Forward and backward hooks on canonical points, always inside a scope that removes them.

A hook function gets the activation (or its gradient) at a point and the point's
name; it may return a tensor to replace it, or ``None`` to leave it alone. Virtual
points (slices of fused projections) see only their slice, and a replacement is
written back into the fused tensor.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import nn

from interpret_shift.core.adapters import BoundPoint, Layout
from interpret_shift.errors import HookPointError

HookFn = Callable[[torch.Tensor, str], "torch.Tensor | None"]
NameFilter = str | Iterable[str] | Callable[[str], bool] | None


class StopForward(Exception):
    """Raised by the early-stop hook once the last needed layer has run."""


class HookScope:
    """Owns the handles of the hooks it added and removes exactly those."""

    def __init__(self, registry: HookRegistry) -> None:
        self.registry = registry
        self._handles: list = []
        self._token_shapes: dict[str, torch.Size] = {}

    def _shaper(self, point: BoundPoint) -> _Shaper:
        """How to go between the module's tensor and the canonical activation."""
        if not point.point.tokens_flat:
            return _Shaper(point, None)
        if point.layer_path not in self._token_shapes:
            self._token_shapes[point.layer_path] = torch.Size()
            layer = self.registry.model.get_submodule(point.layer_path)

            def record(module, args, kwargs):
                hidden = args[0] if args else kwargs["hidden_states"]
                self._token_shapes[point.layer_path] = hidden.shape[:-1]

            self._handles.append(layer.register_forward_pre_hook(record, with_kwargs=True))
        return _Shaper(point, lambda: self._token_shapes[point.layer_path])

    def _attach(self, point: BoundPoint, fn) -> None:
        module = self.registry.model.get_submodule(point.path)
        if point.io == "input":
            handle = module.register_forward_pre_hook(_input_hook(point, fn), with_kwargs=True)
        else:
            handle = module.register_forward_hook(_output_hook(point, fn))
        self._handles.append(handle)

    def add_forward(self, name: str, fn: HookFn) -> None:
        point = self.registry.resolve(name)
        shaper = self._shaper(point)
        self._attach(point, lambda tensor, _: shaper.put(tensor, fn(shaper.take(tensor), name)))

    def add_backward(self, name: str, fn: HookFn) -> None:
        """Call ``fn`` with the gradient of the loss with respect to the point's activation."""
        point = self.registry.resolve(name)
        shaper = self._shaper(point)

        def on_gradient(grad: torch.Tensor) -> torch.Tensor | None:
            return shaper.put(grad, fn(shaper.take(grad), name))

        def watch(tensor: torch.Tensor, _: str) -> None:
            # The module's own tensor, so the hook sees the gradient the model uses.
            if tensor.requires_grad:
                self._handles.append(tensor.register_hook(on_gradient))

        self._attach(point, watch)

    def add_stop_after(self, layer: int) -> None:
        module = self.registry.model.get_submodule(self.registry.layout.layer_path(layer))

        def stop(*_):
            raise StopForward

        self._handles.append(module.register_forward_hook(stop))

    def remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()


class ActivationCache(dict):
    """Captured activations by canonical name (a plain dict, with a few helpers)."""

    def stack(self, role: str) -> torch.Tensor:
        """``cache.stack('resid_post')``: the per-layer activations stacked on a new dim 0."""
        layers = sorted(int(name.split(".")[1]) for name in self if name.endswith(f".{role}"))
        if not layers:
            raise KeyError(f"no {role!r} activations in the cache")
        return torch.stack([self[f"layers.{layer}.{role}"] for layer in layers])


class HookRegistry:
    """The canonical points of one loaded model, and scopes to hook them."""

    def __init__(self, model: nn.Module, layout: Layout) -> None:
        self.model, self.layout = model, layout

    @property
    def names(self) -> list[str]:
        return self.layout.names

    def resolve(self, name: str) -> BoundPoint:
        role, layer = self.layout.split(name)
        point = self.layout.entry(role, layer)
        if point is None:
            raise HookPointError(
                f"This {self.layout.adapter.name} model has no {role!r} point "
                "(e.g. parallel-residual blocks have no resid_mid).",
                "Run `interpret-shift hookpoints MODEL` to list the points it has.",
            )
        if role == "attn.pattern":
            self._require_eager()
        path = self.layout.module_path(role, layer)
        index = None
        if point.fused is not None:
            width = self.model.get_submodule(path).weight.shape[
                0 if point.weight_type == "linear" else 1
            ]
            index = self.layout.fused_index(point, width)
        layer_path = None if layer is None else self.layout.layer_path(layer)
        return BoundPoint(name, path, point, index, layer_path)

    def _require_eager(self) -> None:
        implementation = getattr(self.model.config, "_attn_implementation", None)
        if implementation != "eager":
            raise HookPointError(
                f"Attention patterns need eager attention, but this model runs {implementation!r}.",
                "Load it with attn_implementation='eager' (CLI: --attn eager), or call "
                "model.set_attn_implementation('eager') before hooking 'attn.pattern'.",
            )

    def select(self, names: NameFilter) -> list[str]:
        """Names matching a filter: exact names or glob patterns, a predicate, or None (all)."""
        if names is None:
            return list(self.names)
        if callable(names):
            return [name for name in self.names if names(name)]
        patterns = [names] if isinstance(names, str) else list(names)
        exact = set(patterns) & set(self.names)  # most callers name points: no matching
        globs = [p for p in patterns if p not in exact]
        matches = re.compile("|".join(fnmatch.translate(p) for p in globs)).match if globs else None
        chosen = [n for n in self.names if n in exact or (matches and matches(n))]
        unmatched = [p for p in globs if not any(fnmatch.fnmatchcase(n, p) for n in self.names)]
        if unmatched:
            self.layout.split(unmatched[0])  # raises the helpful error for a bad name
            raise HookPointError(f"No hook point matches {unmatched[0]!r}.")
        return chosen

    @contextmanager
    def scope(
        self,
        forward: Mapping[str, HookFn] | Iterable[tuple[str, HookFn]] = (),
        backward: Mapping[str, HookFn] | Iterable[tuple[str, HookFn]] = (),
    ) -> Iterator[HookScope]:
        """Hooks that live exactly as long as the ``with`` block, also on exceptions."""
        scope = HookScope(self)
        try:
            for name, fn in _pairs(forward):
                scope.add_forward(name, fn)
            for name, fn in _pairs(backward):
                scope.add_backward(name, fn)
            yield scope
        finally:
            scope.remove()

    def run_with_cache(
        self,
        *args,
        names: NameFilter = None,
        offload: bool = False,
        stop_early: bool = True,
        grad: bool = False,
        **kwargs,
    ) -> tuple[object | None, ActivationCache]:
        """Run the model once and capture the chosen points.

        ``offload`` moves each capture to the CPU; ``stop_early`` ends the forward pass
        after the last layer a chosen point needs (the output is then ``None``).
        """
        chosen = self.select(names)
        cache = ActivationCache()

        def keep(activation: torch.Tensor, name: str) -> None:
            kept = activation if grad else activation.detach()
            # Always copy: some models add into their outputs in place afterwards.
            cache[name] = kept.to("cpu", copy=True) if offload else kept.clone()

        last_layer = _last_layer(chosen, self.layout)
        with self.scope(forward=[(name, keep) for name in chosen]) as scope:
            if stop_early and last_layer is not None and last_layer < self.layout.n_layers - 1:
                scope.add_stop_after(last_layer)
            with torch.set_grad_enabled(grad):
                try:
                    output = self.model(*args, **kwargs)
                except StopForward:
                    output = None
        return output, cache


def _pairs(hooks) -> list[tuple[str, HookFn]]:
    return list(hooks.items()) if isinstance(hooks, Mapping) else list(hooks)


def _last_layer(names: list[str], layout: Layout) -> int | None:
    """The deepest layer the names need, or None if a model-level point after the layers is."""
    layers = []
    for name in names:
        role, layer = layout.split(name)
        if layer is None and role != "embed":
            return None
        layers.append(-1 if layer is None else layer)
    return max(layers, default=None)


class _Shaper:
    """Maps a module's tensor to the canonical activation (fused slice, token shape) and back."""

    def __init__(self, point: BoundPoint, token_shape: Callable[[], torch.Size] | None) -> None:
        self.index, self.token_shape = point.index, token_shape

    def take(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.index is not None:
            tensor = tensor.index_select(-1, self.index.to(tensor.device))
        if self.token_shape is not None:
            tensor = tensor.unflatten(0, self.token_shape())
        return tensor

    def put(self, tensor: torch.Tensor, value: torch.Tensor | None) -> torch.Tensor | None:
        if value is None:
            return None
        if self.token_shape is not None:
            value = value.flatten(0, len(self.token_shape()) - 1)
        if self.index is not None:
            value = tensor.index_copy(-1, self.index.to(tensor.device), value)
        return value


def _output_hook(point: BoundPoint, fn: Callable[[torch.Tensor, str], torch.Tensor | None]):
    """A module forward hook that hands ``fn`` the point's tensor and puts back its result."""
    position = point.point.tuple_index

    def hook(module, inputs, output):
        tensor = output[position] if isinstance(output, tuple) else output
        if tensor is None:
            raise HookPointError(
                f"{module.__class__.__name__} returned no tensor for {point.name!r}.",
                "For attention patterns, load the model with attn_implementation='eager'.",
            )
        new = fn(tensor, point.name)
        if new is None:
            return None
        if isinstance(output, tuple):
            return (*output[:position], new, *output[position + 1 :])
        return new

    return hook


def _input_hook(point: BoundPoint, fn: Callable[[torch.Tensor, str], torch.Tensor | None]):
    """A module forward pre-hook on the module's first tensor argument."""

    def hook(module, args, kwargs):
        if args:
            new = fn(args[0], point.name)
            return None if new is None else ((new, *args[1:]), kwargs)
        # called with keywords only: the first tensor keyword is the input
        key = next(k for k, v in kwargs.items() if isinstance(v, torch.Tensor))
        new = fn(kwargs[key], point.name)
        return None if new is None else (args, {**kwargs, key: new})

    return hook
