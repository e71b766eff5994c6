"""Each model's weights come from its own checkpoint: streamed base and tuned weights in one
`compare` (deliberately different checkpoints), and a checkpoint that is not the model's."""

from __future__ import annotations

import numpy as np
import pytest
from tiny import tiny_model, tiny_tokenizer

from interpret_shift import ModelLoadError, Subject, compare, run_explainer
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import RecordStore
from interpret_shift.methods.ffn.explainer import FFNConcepts

PROMPTS = [PromptRecord(id="p0", prompt="translate the text to a word")]
OPTIONS = {"ffn": {"components": 3, "top_k": 4}}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folders = {}
    for side, seed in (("base", 0), ("tuned", 1)):
        folder = tmp_path_factory.mktemp(side)
        tiny_model("llama", seed=seed).save_pretrained(folder)
        folders[side] = folder
    return folders


def subject(side: str, seed: int, weights_from) -> Subject:
    return Subject.from_model(tiny_model("llama", seed=seed), tiny_tokenizer(), source=side,
                              label=side, weights_from=weights_from)  # fmt: skip


def test_each_side_streams_its_own_checkpoint(checkpoints, tmp_path):
    base, tuned = subject("base", 0, checkpoints["base"]), subject("tuned", 1, checkpoints["tuned"])
    compare(base, tuned, PROMPTS, tmp_path, explainers=["ffn"], options=OPTIONS)
    for side, seed in (("base", 0), ("tuned", 1)):
        store = RecordStore(tmp_path / "records" / "ffn" / side)
        # the same explainer on the in-memory model of that side, nothing streamed
        expected = run_explainer(FFNConcepts(**OPTIONS["ffn"]), subject(side, seed, None))
        for key, record in store:
            assert record.meta["subject"]["weights"]["source"] == str(checkpoints[side])
            for name, array in expected[key].arrays.items():
                np.testing.assert_allclose(record.arrays[name], array, rtol=1e-5, atol=1e-6)
    a = RecordStore(tmp_path / "records" / "ffn" / "base").load("layer.0").arrays["directions"]
    b = RecordStore(tmp_path / "records" / "ffn" / "tuned").load("layer.0").arrays["directions"]
    assert not np.allclose(a, b)  # the two checkpoints really differ


def test_a_checkpoint_of_another_model_is_refused_before_any_work(checkpoints, tmp_path):
    base = subject("base", 0, None)
    wrong = subject("tuned", 1, checkpoints["base"])  # the tuned model, the base's weights
    with pytest.raises(ModelLoadError, match="not those of"):
        compare(base, wrong, PROMPTS, tmp_path, explainers=["ffn"], options=OPTIONS)
    assert not any(tmp_path.iterdir())  # nothing written
