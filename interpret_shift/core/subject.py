"""A subject: one loaded model, its tokenizer, its architecture adapter and where its
weights are read from. Everything that belongs to one model lives here (explainers keep no
per-model state): the hook registry, the canonical weights, the fingerprint and ``memo``,
a cache keyed by the subject itself.

``load_subject`` accepts a local folder, a hub id, a ``.gguf`` file (or ``gguf_file=``),
``demo:base`` / ``demo:tuned`` for the embedded pair, or a model object, and turns every
way of getting it wrong into a :class:`ModelLoadError` that says what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interpret_shift import demo
from interpret_shift.core.adapters import BUILTIN_ADAPTERS, Adapter, Layout
from interpret_shift.core.adapters.infer import choose_adapter, is_inferred
from interpret_shift.core.adapters.probe import settle
from interpret_shift.core.hooks import HookRegistry
from interpret_shift.core.lora import LoraFactors, apply_lora, split_source
from interpret_shift.core.lora import read_config as read_lora_config
from interpret_shift.core.placement import (
    PlacedTensors,
    budget_for,
    input_device,
    named_weights,
    parse_device_map,
    parse_max_memory,
    placement_options,
)
from interpret_shift.core.streamed import CastTensors, loaded_fingerprint, matches
from interpret_shift.core.weights import (
    ModelTensors,
    SafetensorsTensors,
    Weights,
    checkpoint_fingerprint,
    fingerprint,
    safetensors_shards,
)
from interpret_shift.errors import InterpretShiftError, ModelLoadError

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Subject:
    """A model under study. ``source`` is what the user named; ``label`` a short name.

    ``weights_from``: a safetensors checkpoint folder that weight-only explainers stream
    from (one tensor at a time) instead of the loaded model's parameters.
    ``memory_budget``: bytes of working memory an explainer may use on this model's device
    (``None``: a share of what is free, see :mod:`interpret_shift.core.memory`).
    ``checkpoint``: set for a weight-only subject, whose ``model`` is a skeleton on the meta
    device (no values) standing for this safetensors folder loaded: every weight is
    streamed from it, cast to the model's dtype, and it is identified like the loaded
    model (:mod:`interpret_shift.core.streamed`, docs/scale.md). Only weight explainers run.
    ``lora``: the LoRA adapter merged into ``model``, whose factors give exact weight deltas.
    """

    model: nn.Module
    tokenizer: object
    adapter: Adapter
    source: str
    label: str = ""
    options: dict = field(default_factory=dict)
    weights_from: Path | None = None
    memory_budget: int | None = None
    checkpoint: Path | None = None
    lora: LoraFactors | None = None
    memo_store: dict = field(default_factory=dict, repr=False)

    @cached_property
    def layout(self) -> Layout:
        return Layout(self.adapter, self.model.config, ModelTensors(self.model).has_module)

    @cached_property
    def hooks(self) -> HookRegistry:
        return HookRegistry(self.model, self.layout)

    @property
    def weights_only(self) -> bool:
        """No weight values in memory: ``model`` is a skeleton (see ``checkpoint``)."""
        return self.checkpoint is not None

    def _own_tensors(self):
        """The model's own values: its parameters (offloaded ones through accelerate's
        maps), or for a weight-only subject its checkpoint cast as loading would."""
        if self.checkpoint is not None:
            return CastTensors(SafetensorsTensors(self.checkpoint), self.dtype)
        return PlacedTensors(self.model)

    @cached_property
    def weights(self) -> Weights:
        """Canonical matrices: streamed from ``weights_from`` if set, else the model's."""
        if self.weights_from is not None:
            return Weights(self.adapter, self.model.config, SafetensorsTensors(self.weights_from))
        return Weights(self.adapter, self.model.config, self._own_tensors())

    @cached_property
    def fingerprint(self) -> str:
        if self.checkpoint is not None:  # what the loaded model's would be, else the files'
            found = loaded_fingerprint(self.model, SafetensorsTensors(self.checkpoint))
            return found or checkpoint_fingerprint(self.checkpoint)
        return fingerprint(named_weights(self.model))  # offloaded weights read from their maps

    @cached_property
    def weights_identity(self) -> dict[str, str]:
        """Where weight-only explainers read from, and a fingerprint of exactly that."""
        if self.weights_from is None:
            return {"source": "loaded model", "fingerprint": self.fingerprint}
        return {
            "source": str(self.weights_from),
            "fingerprint": checkpoint_fingerprint(self.weights_from),
        }

    def memo(self, key: Any, compute: Callable[[], Any]) -> Any:
        """A value computed once per subject (word spaces and the like)."""
        if key not in self.memo_store:
            self.memo_store[key] = compute()
        return self.memo_store[key]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[None]:
        """Eval mode and frozen parameters for the block, then the caller's settings back.

        Explainers differentiate inputs, never weights; a model the caller handed in is
        left as it was found.
        """
        was_training = self.model.training
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.model.eval()
        for parameter in trainable:
            parameter.requires_grad_(False)
        try:
            yield
        finally:
            for parameter in trainable:
                parameter.requires_grad_(True)
            self.model.train(was_training)

    def check_weights(self, layers: Iterable[int] | None = None) -> None:
        """Refuse a ``weights_from`` checkpoint that is not this model's (sampled check)."""
        if self.weights_from is None:
            return
        loaded = Weights(self.adapter, self.model.config, self._own_tensors())
        streamed = self.weights
        n = loaded.layout.n_layers
        for layer in sorted({0, n - 1} if layers is None else set(layers)):
            for role in ("attn.q", "mlp.down_in"):
                if loaded.layout.entry(role, layer) is None:
                    continue
                a, b = loaded.rows(role, layer), streamed.rows(role, layer)
                if a.shape != b.shape or not torch.allclose(a, b, rtol=1e-2, atol=1e-3):
                    raise ModelLoadError(
                        f"The weights in {self.weights_from} are not those of {self.source} "
                        f"({role} of layer {layer} differs).",
                        "Pass the checkpoint folder of this very model (e.g. --tuned-weights "
                        "for the tuned model), or leave the option out to read the loaded one.",
                    )

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    @property
    def device(self) -> torch.device:
        """Where inputs go: the embedding's execution device (see core.placement)."""
        return input_device(self.model)

    def delta_factors(self, role: str, layer: int | None = None):
        """``(B, A)`` with ``rows_tuned - rows_base = B @ A`` for ``weights.rows(role, layer)``
        (LoRA scaling folded into ``B``), or ``None`` where the adapter has no plain LoRA
        factors (no adapter, an untouched matrix, DoRA, ...). Float32 on the CPU."""
        if self.lora is None:
            return None
        path = self.layout.module_path(role, layer)
        found = None if path is None else self.lora.get(path)
        if found is None:
            return None
        b, a = found
        index = self.layout.fused_index(self.layout.entry(role, layer), b.shape[0])
        return (b if index is None else b[index]), a

    def provenance(self) -> dict:
        """What identifies this model in a record's metadata."""
        return {
            "model": self.source,
            "label": self.label,
            "fingerprint": self.fingerprint,
            "weights": self.weights_identity,
            "adapter": self.adapter.name,
            "adapter_inferred": is_inferred(self.adapter),
            "architecture": (self.model.config.architectures or [type(self.model).__name__])[0],
            "dtype": str(self.dtype).removeprefix("torch."),
            "chat_template": getattr(self.tokenizer, "chat_template", None),
        } | ({"lora": self.lora.identity()} if self.lora is not None else {})

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        tokenizer=None,
        source: str = "in-memory",
        label: str = "",
        *,
        weights_from: str | Path | None = None,
        adapters: Iterable[Adapter] = BUILTIN_ADAPTERS,
    ) -> Subject:
        """Wrap a model the caller owns, as it is: not copied, its mode and parameters
        untouched (explainers freeze it only for the length of their run, see ``frozen``)."""
        adapter = choose_adapter(model.config, adapters, model)
        return _proved(cls(model, tokenizer, adapter, source, label or source,
                           weights_from=_checkpoint(weights_from)))  # fmt: skip


def load_subject(
    source: str | Path | nn.Module,
    *,
    tokenizer=None,
    weights_from: str | Path | None = None,
    adapters: Iterable[Adapter] = BUILTIN_ADAPTERS,
    dtype: str = "float32",
    device_map: str | dict | None = None,
    gguf_file: str | None = None,
    attn_implementation: str | None = None,
    trust_remote_code: bool = False,
    label: str = "",
    max_memory: str | dict | None = None,
    offload_folder: str | Path | None = None,
    lora: str | Path | None = None,
    weights_only: bool = False,
) -> Subject:
    """Load model + tokenizer + adapter from a folder, hub id, GGUF file or ``demo:*``.

    A model object (``nn.Module`` with a config) is wrapped as it is, with ``tokenizer``:
    see :meth:`Subject.from_model`. A model loaded here is put in eval mode and frozen.
    ``weights_from`` names a safetensors checkpoint folder to stream weights from;
    ``adapters`` the architecture tables to choose from (the registry passes its own).
    ``device_map`` / ``max_memory`` / ``offload_folder``: placement through accelerate
    (:mod:`interpret_shift.core.placement`); ``max_memory`` is also the memory budget.
    ``lora`` (or a source ``BASE+ADAPTER_DIR``): a PEFT LoRA adapter merged into the model.
    ``weights_only``: build no weights at all, stream them from the checkpoint (only for
    weight explainers; falls back to a full load where there is no safetensors folder).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if isinstance(source, nn.Module):
        return Subject.from_model(source, tokenizer, label=label, weights_from=weights_from,
                                  adapters=adapters, source=type(source).__name__)  # fmt: skip
    source, lora = (str(source), lora) if lora else split_source(str(source))
    location, gguf_file = _locate(source, gguf_file)
    if dtype not in DTYPES and dtype != "auto":
        raise ModelLoadError(
            f"Unknown dtype {dtype!r}.", f"Use one of: {', '.join(DTYPES)} or auto."
        )
    common = {"trust_remote_code": trust_remote_code}
    if gguf_file:
        _require_gguf()
        common["gguf_file"] = gguf_file
    weights_folder = _checkpoint(weights_from)
    limits = parse_max_memory(max_memory) if isinstance(max_memory, str) else max_memory
    placed = placement_options(parse_device_map(device_map), limits, offload_folder)
    if lora is not None:
        read_lora_config(lora, source)  # a bad adapter folder fails before any loading
    with _explained(source):
        config = AutoConfig.from_pretrained(location, **common)
        adapter = _adapter_for(config, source, adapters)  # fail before reading any weight
        _require_tokenizer(location, source, gguf_file)
        own = _own_checkpoint(location, gguf_file) if weights_only and lora is None else None
        skeleton = own and _skeleton_subject(config, adapter, source, location, common, own,
                                             weights_folder, dtype, label, attn_implementation)  # fmt: skip
        if skeleton is not None:
            return skeleton
        kwargs = dict(common, dtype=DTYPES.get(dtype, "auto"))
        kwargs.update(placed)
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        if getattr(adapter, "experts", None) is not None:
            # the per-expert loop; grouped_mm has no forward-mode AD (saliency's jvp)
            kwargs["experts_implementation"] = "eager"
        model, loading = AutoModelForCausalLM.from_pretrained(
            location, output_loading_info=True, **kwargs
        )
        _require_all_weights(loading, source)
        tokenizer = AutoTokenizer.from_pretrained(location, **common)
    model.eval().requires_grad_(False)  # explainers differentiate inputs, never parameters
    factors = None
    if lora is not None:
        model, factors = apply_lora(model, lora, source)
        source = f"{source}+{lora}"
    _check_vocabulary(model, tokenizer, source)
    options = {"dtype": dtype, "device_map": device_map, "gguf_file": gguf_file,
               "max_memory": limits, "offload_folder": offload_folder and str(offload_folder)}  # fmt: skip
    return _proved(Subject(model, tokenizer, adapter, source, label or _label(source), options,
                           weights_from=weights_folder, lora=factors,
                           memory_budget=budget_for(limits, input_device(model))))  # fmt: skip


def _proved(subject: Subject) -> Subject:
    """The subject with its adapter proved on the loaded model (a table is probed once per
    fingerprint; an inferred one is inferred again from the model and proved, with a notice).
    See docs/inferred-adapters.md."""

    def capture_for(layout: Layout):
        registry = HookRegistry(subject.model, layout)
        return lambda ids, **kwargs: registry.run_with_cache(ids, stop_early=False, **kwargs)

    adapter, notice = settle(subject.model, subject.adapter, capture_for,
                             lambda: subject.fingerprint, subject.source)  # fmt: skip
    if adapter is not subject.adapter:
        subject.adapter = adapter
        for cached in ("layout", "hooks", "weights"):
            subject.__dict__.pop(cached, None)
    if notice:
        from rich.console import Console

        Console(stderr=True).print(notice, markup=False, highlight=False, soft_wrap=True)
    return subject


def _own_checkpoint(location: str, gguf_file: str | None) -> Path | None:
    """The safetensors folder a model loads from, if it is one (a local folder, or a hub
    id already in the local cache); ``None`` for GGUF files and anything else."""
    if gguf_file:
        return None
    folder = Path(location)
    if not folder.is_dir():
        try:
            from huggingface_hub import snapshot_download

            folder = Path(snapshot_download(location, local_files_only=True))
        except Exception:  # not cached (or not a hub id): load the model instead
            return None
    return folder if any(folder.glob("*.safetensors")) else None


def _skeleton_subject(config, adapter, source, location, common, folder, weights_from, dtype,
                      label, attn_implementation=None):  # fmt: skip
    """A subject whose model is built on the meta device (module tree, no values) and
    whose every weight is streamed from ``folder``: for weight-only explainers. ``None``
    when the checkpoint lacks a weight or stores one in another shape: a full load then
    converts it, or says what is wrong."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    options = {k: v for k, v in common.items() if k != "gguf_file"}
    if attn_implementation is not None:
        options["attn_implementation"] = attn_implementation
    chosen = DTYPES.get(dtype) or getattr(config, "dtype", None) or torch.float32
    tensors = SafetensorsTensors(folder)  # reads every shard's header: damage shows here
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config, dtype=chosen, **options)
    if not matches(skeleton, tensors):
        return None
    skeleton.eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(location, **common)
    _check_vocabulary(skeleton, tokenizer, source)
    return Subject(skeleton, tokenizer, adapter, source, label or _label(source),
                   {"dtype": dtype, "weights_only": True}, weights_from=weights_from,
                   checkpoint=Path(folder))  # fmt: skip


def load_layout(
    source: str | Path,
    *,
    gguf_file: str | None = None,
    trust_remote_code: bool = False,
    adapters: Iterable[Adapter] = BUILTIN_ADAPTERS,
) -> Layout:
    """The canonical points of a model without reading its weights (built on the meta device)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    location, gguf_file = _locate(str(source), gguf_file)
    common = {"trust_remote_code": trust_remote_code}
    if gguf_file:
        _require_gguf()
        common["gguf_file"] = gguf_file
    with _explained(str(source)):
        config = AutoConfig.from_pretrained(location, **common)
        adapter = _adapter_for(config, str(source), adapters)
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=trust_remote_code)
    return Layout(adapter, skeleton.config, ModelTensors(skeleton).has_module)


def _checkpoint(folder: str | Path | None) -> Path | None:
    """A checkpoint folder to stream from, checked before any work starts."""
    if folder is None:
        return None
    path = Path(folder).expanduser()
    safetensors_shards(path)
    return path


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _require_tokenizer(location: str, source: str, gguf_file: str | None) -> None:
    """A local model folder must hold its tokenizer (a GGUF file carries its own)."""
    folder = Path(location)
    if gguf_file or not folder.is_dir():
        return
    if not any((folder / name).exists() for name in TOKENIZER_FILES):
        raise ModelLoadError(
            f"No tokenizer in {folder} (none of {', '.join(TOKENIZER_FILES)}).",
            "Save the tokenizer beside the model (tokenizer.save_pretrained(folder)).",
        )


def _require_all_weights(loading: dict, source: str) -> None:
    """Refuse a checkpoint that lacks weights the config asks for (transformers would fill
    them with random values)."""
    missing = sorted(loading.get("missing_keys") or [])
    if missing:
        raise ModelLoadError(
            f"The checkpoint of {source} is missing {len(missing)} weight(s) its config.json asks "
            f"for, e.g. {', '.join(missing[:3])}.",
            "Check that config.json belongs to these weights (e.g. num_hidden_layers), or "
            "save the model again.",
        )


def _check_vocabulary(model: nn.Module, tokenizer, source: str) -> None:
    """Every token id must have a row in the embedding matrix."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        raise ModelLoadError(
            f"The tokenizer of {source} has {len(tokenizer)} tokens but its embedding matrix "
            f"only {rows} rows, so some token ids have no embedding.",
            "Use the tokenizer the model was trained with (or resize the model's embeddings).",
        )


def _adapter_for(config, source: str, adapters: Iterable[Adapter]) -> Adapter:
    """The adapter, after checking that the config describes a causal LM at all."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal_names = set(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values())
    architecture = (getattr(config, "architectures", None) or [None])[0]
    encoder = getattr(config, "is_encoder_decoder", False) or (
        architecture is not None
        and architecture not in causal_names
        and not architecture.endswith(("ForCausalLM", "LMHeadModel"))
    )
    if getattr(config, "auto_map", None) is None and encoder:
        raise ModelLoadError(
            f"{source} is a {architecture or config.model_type!r} model, which is not a causal "
            "language model.",
            "interpret-shift explains decoder-only causal LMs (AutoModelForCausalLM), e.g. "
            "Llama, Mistral, Qwen, Gemma, GPT-2, GPT-NeoX, OPT, Phi and Falcon models.",
        )
    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING and not getattr(config, "auto_map", None):
        raise ModelLoadError(
            f"{source} is a {config.model_type!r} model, which is not a causal language model.",
            "interpret-shift explains decoder-only causal LMs (AutoModelForCausalLM), e.g. "
            "Llama, Mistral, Qwen, Gemma, GPT-2, GPT-NeoX, OPT, Phi and Falcon models.",
        )
    return choose_adapter(config, adapters)


def _locate(source: str, gguf_file: str | None) -> tuple[str, str | None]:
    """Where to load from: the demo pair, a local folder or file, or a hub id."""
    if source.startswith("demo:"):
        return str(_demo_dir(source.removeprefix("demo:"))), None
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return str(path.parent), path.name
    if path.is_dir():
        if gguf_file and not (path / gguf_file).is_file():
            raise ModelLoadError(
                f"--gguf-file {gguf_file} does not exist in {path}.",
                "Name a .gguf file inside the model folder, or pass the file's path as the model.",
            )
        if not (path / "config.json").exists() and not gguf_file:
            raise ModelLoadError(
                f"{path} is a folder but has no config.json, so it is not a Hugging Face model.",
                "Point to the folder that save_pretrained() wrote, or to a .gguf file.",
            )
        return str(path), gguf_file
    looks_local = source.startswith(("/", "./", "../", "~")) or source.endswith(".gguf")
    if looks_local or source.count("/") > 1:
        raise ModelLoadError(
            f"No model at {source}: the path does not exist.",
            "Check the path; a hub id looks like 'org/name', a demo model like 'demo:tuned'.",
        )
    return source, gguf_file  # a hub id


def _demo_dir(which: str) -> Path:
    """The embedded pair's folder, with a clear error when it is missing."""
    if which not in demo.MODELS:
        raise ModelLoadError(f"Unknown demo model 'demo:{which}'.", "Use demo:base or demo:tuned.")
    folder = demo.model_dir(which)
    if not (folder / "config.json").exists():
        raise ModelLoadError(
            f"The embedded demo pair is not installed ({folder} is missing).",
            "Reinstall interpret-shift, or rebuild the pair with "
            f"examples/train_demo_pair.py --out {folder.parent}.",
        )
    return folder


def _label(source: str) -> str:
    return Path(source.removeprefix("demo:")).name or source


def _require_gguf() -> None:
    try:
        import accelerate  # noqa: F401
        import gguf  # noqa: F401
    except ImportError as error:
        raise ModelLoadError(
            f"Reading GGUF files needs the packages 'gguf' and 'accelerate' ({error}).",
            "Install them: pip install 'interpret-shift[gguf]' (gguf and accelerate).",
        ) from error


class _explained:
    """Turns the errors transformers raises while loading into one clear paragraph."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, _traceback) -> bool:
        if error is None or isinstance(error, InterpretShiftError):
            return False
        text = _shortened(f"{type(error).__name__}: {error}".splitlines()[0])
        lowered = f"{type(error).__name__}: {error}".lower()
        if "trust_remote_code" in lowered or "custom code" in lowered:
            what = f"{self.source} needs custom code from its repository to load."
            fix = "Only if you trust it, pass --trust-remote-code (trust_remote_code=True)."
        elif "attn_implementation" in lowered:
            what = f"The attention implementation asked for cannot load {self.source} ({text})."
            fix = "Use --attn eager (needed for attention patterns) or --attn sdpa."
        elif "unrecognized configuration class" in lowered or "does not recognize" in lowered:
            what = f"{self.source} is not a causal language model ({text})."
            fix = "interpret-shift explains decoder-only causal LMs (AutoModelForCausalLM)."
        elif any(s in lowered for s in ("header", "deserializ", "safetensor", "incomplete")):
            what = f"The weights of {self.source} could not be read ({text})."
            fix = "The files look damaged or truncated: download or save the model again."
        elif any(s in lowered for s in ("connect", "offline", "resolve", "huggingface.co", "hub")):
            what = f"Could not fetch {self.source} from the Hugging Face hub ({text})."
            fix = (
                "There seems to be no network access. Download the model elsewhere and pass "
                "its local folder, or set HF_HOME to a cache that holds it."
            )
        else:
            what = f"Could not load {self.source} ({text})."
            fix = "Check that it is a Hugging Face causal LM folder, hub id or .gguf file."
        raise ModelLoadError(what, fix) from error


def _shortened(text: str, limit: int = 300) -> str:
    """At most ``limit`` characters, cut at a word boundary."""
    if len(text) <= limit:
        return text
    return text[:limit].rsplit(" ", 1)[0] + " …"
