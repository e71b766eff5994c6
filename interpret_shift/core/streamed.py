"""A model that is never loaded: its module tree on the meta device, its values streamed
from its safetensors checkpoint, cast as loading would cast them.

Such a subject stands for the model ``from_pretrained(folder, dtype=...)`` would build, and
is identified exactly like it: :func:`loaded_fingerprint` computes
:func:`~interpret_shift.core.weights.fingerprint` of the parameters that load would give
(names and shapes from the skeleton, dtype as asked, sampled values read from the shards),
so records and metrics of a weight-only run and of a full run are interchangeable.
"""

from __future__ import annotations

import hashlib
import json

import torch
from safetensors import safe_open
from torch import nn

from interpret_shift.core.weights import SafetensorsTensors


class CastTensors:
    """Checkpoint tensors cast to the dtype a loaded model would hold them in."""

    def __init__(self, tensors: SafetensorsTensors, dtype: torch.dtype) -> None:
        self.tensors, self.dtype = tensors, dtype

    def get(self, key: str) -> torch.Tensor | None:
        value = self.tensors.get(key)
        return None if value is None or not value.is_floating_point() else value.to(self.dtype)

    def has_module(self, path: str) -> bool:
        return self.tensors.has_module(path)


def matches(skeleton: nn.Module, tensors: SafetensorsTensors) -> bool:
    """Every parameter has a stored tensor of its name and shape (read from the headers):
    loading would neither miss nor convert anything, so streaming stands for loading."""
    for name, parameter in skeleton.named_parameters():
        key = tensors._key(name)
        if key is None:
            return False
        with safe_open(tensors.files[key], framework="pt") as handle:
            if tuple(handle.get_slice(key).get_shape()) != tuple(parameter.shape):
                return False
    return True


def loaded_fingerprint(
    skeleton: nn.Module, tensors: SafetensorsTensors, samples: int = 256
) -> str | None:
    """The fingerprint the loaded model would have, reading only the sampled values; ``None``
    when a parameter has no tensor of its name and shape in the checkpoint (a checkpoint
    that loading converts: then there is nothing exact to match)."""
    digest = hashlib.sha256()
    for name, parameter in sorted(skeleton.named_parameters(), key=lambda item: item[0]):
        sample = _sample(tensors, name, tuple(parameter.shape), samples)
        if sample is None:
            return None
        sample = sample.to(parameter.dtype).float().numpy().tobytes()
        digest.update(json.dumps([name, list(parameter.shape), str(parameter.dtype)]).encode())
        digest.update(sample)
    return digest.hexdigest()[:16]


def _sample(
    tensors: SafetensorsTensors, name: str, shape: tuple[int, ...], samples: int
) -> torch.Tensor | None:
    """``flat[::step][:samples]`` of a stored tensor, reading one row per sampled value."""
    key = tensors._key(name)
    if key is None:
        return None
    with safe_open(tensors.files[key], framework="pt") as handle:
        stored = handle.get_slice(key)
        if tuple(stored.get_shape()) != shape:
            return None
        numel = 1
        for size in shape:
            numel *= size
        step = max(1, numel // samples)
        flat = torch.arange(0, numel, step)[:samples]
        if len(shape) < 2 or numel <= 4 * samples:
            return handle.get_tensor(key).reshape(-1)[flat]
        width = numel // shape[0]
        rows = {}
        for row in sorted(set((flat // width).tolist())):
            rows[row] = stored[row : row + 1].reshape(-1)
        return torch.stack([rows[int(i) // width][int(i) % width] for i in flat])
