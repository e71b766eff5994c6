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
from interpret_shift.core.adapters import BUILTIN_ADAPTERS, Adapter, Layout, find_adapter
from interpret_shift.core.hooks import HookRegistry
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
    """

    model: nn.Module
    tokenizer: object
    adapter: Adapter
    source: str
    label: str = ""
    options: dict = field(default_factory=dict)
    weights_from: Path | None = None
    memory_budget: int | None = None
    memo_store: dict = field(default_factory=dict, repr=False)

    @cached_property
    def layout(self) -> Layout:
        return Layout(self.adapter, self.model.config, ModelTensors(self.model).has_module)

    @cached_property
    def hooks(self) -> HookRegistry:
        return HookRegistry(self.model, self.layout)

    @cached_property
    def weights(self) -> Weights:
        """Canonical matrices: streamed from ``weights_from`` if set, else the model's."""
        if self.weights_from is not None:
            return Weights(self.adapter, self.model.config, SafetensorsTensors(self.weights_from))
        return Weights(self.adapter, self.model.config, ModelTensors(self.model))

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint(self.model.named_parameters())

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
        streamed, loaded = self.weights, Weights.from_model(self.model, self.adapter)
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
        return next(self.model.parameters()).device

    def provenance(self) -> dict:
        """What identifies this model in a record's metadata."""
        return {
            "model": self.source,
            "label": self.label,
            "fingerprint": self.fingerprint,
            "weights": self.weights_identity,
            "adapter": self.adapter.name,
            "architecture": (self.model.config.architectures or [type(self.model).__name__])[0],
            "dtype": str(self.dtype).removeprefix("torch."),
            "chat_template": getattr(self.tokenizer, "chat_template", None),
        }

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
        return cls(model, tokenizer, find_adapter(model.config, adapters), source,
                   label or source, weights_from=_checkpoint(weights_from))  # fmt: skip


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
) -> Subject:
    """Load model + tokenizer + adapter from a folder, hub id, GGUF file or ``demo:*``.

    A model object (``nn.Module`` with a config) is wrapped as it is, with ``tokenizer``:
    see :meth:`Subject.from_model`. A model loaded here is put in eval mode and frozen.
    ``weights_from`` names a safetensors checkpoint folder to stream weights from;
    ``adapters`` the architecture tables to choose from (the registry passes its own).
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    if isinstance(source, nn.Module):
        return Subject.from_model(source, tokenizer, label=label, weights_from=weights_from,
                                  adapters=adapters, source=type(source).__name__)  # fmt: skip
    source = str(source)
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
    with _explained(source):
        config = AutoConfig.from_pretrained(location, **common)
        adapter = _adapter_for(config, source, adapters)  # fail before reading any weight
        _require_tokenizer(location, source, gguf_file)
        kwargs = dict(common, dtype=DTYPES.get(dtype, "auto"))
        if device_map is not None:
            kwargs["device_map"] = device_map
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        model, loading = AutoModelForCausalLM.from_pretrained(
            location, output_loading_info=True, **kwargs
        )
        _require_all_weights(loading, source)
        tokenizer = AutoTokenizer.from_pretrained(location, **common)
    model.eval().requires_grad_(False)  # explainers differentiate inputs, never parameters
    _check_vocabulary(model, tokenizer, source)
    options = {"dtype": dtype, "device_map": device_map, "gguf_file": gguf_file}
    return Subject(model, tokenizer, adapter, source, label or _label(source), options,
                   weights_from=weights_folder)  # fmt: skip


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
    return find_adapter(config, adapters)


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
