"""Where a model's weights live: device maps, memory limits and offloading (accelerate).

A model loaded with a device map may have parts on several devices, on the CPU, or on
disk (``offload_folder``). accelerate's hooks move every module's inputs and weights to its
execution device during the forward pass, so hooks, caches and gradients work unchanged;
only code that reads parameters *outside* a forward pass must look through those hooks:
an offloaded parameter sits on the ``meta`` device and its values are in the hook's
``weights_map``. :class:`PlacedTensors` and :func:`named_weights` read them from there.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interpret_shift.core.memory import parse_size
from interpret_shift.core.weights import ModelTensors
from interpret_shift.errors import InputError, ModelLoadError

#: Device-map strategies accelerate places by itself.
STRATEGIES = ("auto", "balanced", "balanced_low_0", "sequential")


def parse_device_map(value: str | dict | None) -> str | dict | None:
    """``auto`` (or another strategy), one device (``cpu``, ``cuda:1``, ``0``), a JSON object
    ``{"module": device, ...}`` or the path of a ``.json`` file holding one."""
    if value is None or isinstance(value, dict):
        return value
    text = str(value).strip()
    if text.endswith(".json") and not text.startswith("{"):
        path = Path(text).expanduser()
        if not path.is_file():
            raise InputError(f"The device map file {path} does not exist.", "Check the path.")
        text = path.read_text(encoding="utf-8")
    if text.startswith("{"):
        try:
            mapping = json.loads(text)
        except json.JSONDecodeError as error:
            raise InputError(
                f"The device map is not valid JSON ({error.msg}).",
                'Write it like {"model.embed_tokens": 0, "model.layers.0": 0, "lm_head": "cpu"}.',
            ) from error
        if not isinstance(mapping, dict) or not all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in mapping.values()
        ):
            raise InputError(
                "A device map maps module names to devices (a GPU index, 'cpu' or 'disk').",
                'Write it like {"model.embed_tokens": 0, "model.layers.0": 0, "lm_head": "cpu"}.',
            )
        return mapping
    return int(text) if text.isdigit() else text


def parse_max_memory(text: str | None) -> dict[str | int, int] | None:
    """``SIZE`` (every accelerator, or the CPU on a machine without one) or
    ``DEVICE=SIZE,...`` (e.g. ``0=20GiB,cpu=64GiB``), in bytes per device."""
    if text is None:
        return None
    if "=" not in text:
        size = parse_size(text)
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return {index: size for index in range(gpus)} or {"cpu": size}
    limits: dict[str | int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        device, sep, size = part.partition("=")
        device = device.strip()
        if not sep or not device:
            raise InputError(
                f"--max-memory {text!r}: {part!r} is not DEVICE=SIZE.",
                "Write one size (4GiB) or a list like 0=20GiB,1=20GiB,cpu=64GiB.",
            )
        limits[int(device) if device.isdigit() else device] = parse_size(size)
    return limits


def placement_options(
    device_map: str | dict | None,
    max_memory: dict[str | int, int] | None = None,
    offload_folder: str | Path | None = None,
) -> dict[str, Any]:
    """``from_pretrained`` keywords for a placement, checked before any weight is read."""
    if device_map is None:
        if offload_folder is not None:
            raise InputError(
                "--offload-folder only applies to a model placed with a device map.",
                "Add --device-map auto (or an explicit map with 'disk' entries).",
            )
        return {}
    require_accelerate()
    options: dict[str, Any] = {"device_map": device_map}
    if max_memory is not None:
        options["max_memory"] = dict(max_memory)
    if offload_folder is not None:
        folder = Path(offload_folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        options["offload_folder"] = str(folder)
    elif isinstance(device_map, dict) and "disk" in device_map.values():
        raise InputError(
            "The device map puts modules on 'disk' but no --offload-folder was given.",
            "Add --offload-folder DIR (a folder with room for the offloaded weights).",
        )
    return options


def budget_for(max_memory: dict[str | int, int] | None, device: torch.device) -> int | None:
    """The memory limit of ``device`` in a ``max_memory`` table (the working-memory budget)."""
    if not max_memory:
        return None
    key: str | int = (device.index or 0) if device.type == "cuda" else device.type
    return max_memory.get(key, min(max_memory.values()))


def require_accelerate() -> None:
    try:
        import accelerate  # noqa: F401
    except ImportError as error:
        raise ModelLoadError(
            f"Placing a model with a device map needs the package 'accelerate' ({error}).",
            "Install it: pip install 'interpret-shift[devices]'.",
        ) from error


def input_device(model: nn.Module) -> torch.device:
    """Where the model's inputs go: the embedding's execution device under accelerate's
    hooks (its weight may be offloaded, i.e. on ``meta``), else its weight's device."""
    embed = model.get_input_embeddings()
    for hook in _hooks(embed):
        device = getattr(hook, "execution_device", None)
        if device is not None:
            return torch.device(device if not isinstance(device, int) else f"cuda:{device}")
    if embed.weight.device.type != "meta":
        return embed.weight.device
    placed = next((p.device for p in model.parameters() if p.device.type != "meta"), None)
    return placed or torch.device("cpu")


def is_offloaded(model: nn.Module) -> bool:
    """Some weight lives only in an offload map (CPU or disk), not on the module."""
    return any(p.device.type == "meta" for p in model.parameters())


class PlacedTensors(ModelTensors):
    """A loaded model's tensors by name, offloaded ones read from accelerate's weight maps."""

    def get(self, key: str) -> torch.Tensor | None:
        value = super().get(key)
        if value is None or value.device.type != "meta":
            return value
        return offloaded(self.model, key)


def named_weights(model: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """``model.named_parameters()`` with offloaded values read from their weight maps."""
    for name, parameter in model.named_parameters():
        if parameter.device.type == "meta":
            value = offloaded(model, name)
            if value is None:
                raise ModelLoadError(
                    f"The weight {name} is on the meta device and no offload map holds it.",
                    "Load the model with from_pretrained(device_map=..., offload_folder=...).",
                )
            yield name, value
        else:
            yield name, parameter.detach()


def offloaded(model: nn.Module, key: str) -> torch.Tensor | None:
    """The value of parameter ``key`` from the weight map of the hook that loads it."""
    aliases = [key] + _aliases(model, key)
    for name in aliases:
        parts = name.split(".")
        for cut in range(len(parts) - 1, -1, -1):  # the deepest module with a map first
            path, rest = ".".join(parts[:cut]), ".".join(parts[cut:])
            try:
                module = model.get_submodule(path)
            except AttributeError:
                continue
            for hook in _hooks(module):
                weights = getattr(hook, "weights_map", None)
                if weights is None:
                    continue
                try:
                    return weights[rest].detach()
                except KeyError:
                    continue
    return None


def _aliases(model: nn.Module, key: str) -> list[str]:
    """Other names of a shared (tied) parameter."""
    path, _, attr = key.rpartition(".")
    try:
        target = getattr(model.get_submodule(path), attr)
    except AttributeError:
        return []
    return [name for name, p in model.named_parameters(remove_duplicate=False)
            if p is target and name != key]  # fmt: skip


def _hooks(module: nn.Module) -> list:
    hook = getattr(module, "_hf_hook", None)
    if hook is None:
        return []
    return list(getattr(hook, "hooks", None) or [hook])
