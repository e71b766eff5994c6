"""LoRA adapters (PEFT) as the tuned model: the base with the adapter merged in, and the
adapter's low-rank factors kept for the metrics that can use them exactly.

A LoRA layer adds ``ΔW = B @ A * scaling`` to a linear weight (``B``: out x r, ``A``:
r x in). Explainers see the merged model, a plain ``transformers`` model; weight-delta
metrics read ``(B * scaling, A)`` instead of subtracting two full matrices. Only plain LoRA
on linear layers is factored: DoRA and other variants, LoRA on embeddings and
``modules_to_save`` copies are merged like the rest but have no factors.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from interpret_shift.errors import ModelLoadError

CONFIG = "adapter_config.json"
WEIGHTS = "adapter_model.safetensors"
NAME = "default"  # the adapter name PEFT gives a single loaded adapter


@dataclass(frozen=True)
class LoraFactors:
    """Per module path of the merged model: ``(B * scaling, A)`` in float32 on the CPU,
    oriented like the module's ``(out_features, in_features)`` weight."""

    folder: Path
    base_model: str | None
    digest: str
    factors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(repr=False)
    warnings: tuple[str, ...] = ()

    def get(self, module_path: str) -> tuple[torch.Tensor, torch.Tensor] | None:
        return self.factors.get(module_path)

    def identity(self) -> dict:
        return {"folder": str(self.folder), "base_model": self.base_model, "sha256": self.digest}


def split_source(source: str) -> tuple[str, str | None]:
    """``BASE+ADAPTER_DIR`` -> (BASE, ADAPTER_DIR); anything else -> (source, None).

    A path that exists as written is never split (folder names may contain ``+``).
    """
    if "+" not in source or Path(source).expanduser().exists():
        return source, None
    base, _, adapter = source.rpartition("+")
    return base, adapter


def read_config(folder: str | Path, base_source: str) -> tuple[dict, list[str]]:
    """The adapter's config, checked: a LoRA adapter, safetensors weights; and a warning
    when it names another base model than the one it is put on."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ModelLoadError(
            f"The adapter folder {path} does not exist.",
            "Pass the folder PeftModel.save_pretrained() wrote: --tuned BASE+ADAPTER_DIR.",
        )
    if not (path / CONFIG).is_file():
        raise ModelLoadError(
            f"{path} has no {CONFIG}, so it is not a PEFT adapter folder.",
            "Pass the folder PeftModel.save_pretrained() wrote (adapter_config.json and "
            "adapter_model.safetensors).",
        )
    try:
        config = json.loads((path / CONFIG).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelLoadError(f"{path / CONFIG} is not valid JSON ({error}).",
                             "Save the adapter again.") from error  # fmt: skip
    if str(config.get("peft_type", "")).upper() != "LORA":
        raise ModelLoadError(
            f"{path} holds a {config.get('peft_type')!r} adapter; only LoRA adapters are read.",
            "Merge the adapter into its base yourself and pass the merged model as --tuned.",
        )
    if not (path / WEIGHTS).is_file():
        raise ModelLoadError(
            f"{path} has no {WEIGHTS} (pickled .bin adapters are not loaded).",
            "Save the adapter with safe_serialization=True (PEFT's default).",
        )
    warnings = []
    named = config.get("base_model_name_or_path")
    if named and not _same_model(named, base_source):
        warnings.append(
            f"The adapter in {path} was trained on {named!r} but is applied to "
            f"{base_source!r}; its shapes fit (else loading fails), check that it is the "
            "same model."
        )
    return config, warnings


def apply_lora(model: nn.Module, folder: str | Path, base_source: str):
    """The base ``model`` with the adapter merged in, and the adapter's factors."""
    folder = Path(folder).expanduser()
    _config, warnings = read_config(folder, base_source)
    peft = _require_peft()
    if any(p.device.type == "meta" for p in model.parameters()):
        raise ModelLoadError(
            "A LoRA adapter is merged into its base in memory, which an offloaded base "
            "(weights on disk) does not allow.",
            "Load the base without offloading, or merge the adapter beforehand and pass the "
            "merged checkpoint as --tuned.",
        )
    try:
        wrapped = peft.PeftModel.from_pretrained(model, str(folder), is_trainable=False)
    except (RuntimeError, ValueError, KeyError) as error:
        raise ModelLoadError(
            f"The adapter in {folder} does not fit {base_source} "
            f"({str(error).splitlines()[0][:300]}).",
            "Use the adapter with the base model it was trained on.",
        ) from error
    factors = _factors(wrapped)
    merged = wrapped.merge_and_unload()
    merged.eval().requires_grad_(False)
    digest = hashlib.sha256((folder / WEIGHTS).read_bytes()).hexdigest()[:16]
    named = _config.get("base_model_name_or_path")
    return merged, LoraFactors(folder, named, digest, factors, tuple(warnings))


def _factors(wrapped) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``(B * scaling, A)`` of every plain LoRA linear layer, by merged-model path."""
    from peft.tuners.lora.layer import Linear

    found = {}
    for name, module in wrapped.named_modules():
        if not isinstance(module, Linear) or NAME not in module.lora_A:
            continue
        if module.use_dora.get(NAME) or NAME in (getattr(module, "lora_variant", None) or {}):
            continue  # DoRA and other variants: not a pure low-rank sum
        b = module.lora_B[NAME].weight.detach().float().cpu() * module.scaling[NAME]
        a = module.lora_A[NAME].weight.detach().float().cpu()
        # B @ A is (out, in) whatever the layer stores (fan_in_fan_out only transposes storage)
        found[name.removeprefix("base_model.model.")] = (b, a)
    return found


def _same_model(named: str, source: str) -> bool:
    def short(text: str) -> str:
        return Path(text.removeprefix("demo:").rstrip("/")).name.lower()

    return named == source or short(named) == short(source)


def _require_peft():
    try:
        import peft
    except ImportError as error:
        raise ModelLoadError(
            f"Loading a LoRA adapter needs the package 'peft' ({error}).",
            "Install it: pip install 'interpret-shift[lora]'.",
        ) from error
    return peft
