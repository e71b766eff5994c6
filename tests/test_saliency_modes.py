"""Saliency's forward and automatic modes, target chunks at the prefix floor, memory budgets.

Every mode is checked against a slow reference written here: one forward and one backward
per response token, on the whole text, in float64 from the float32 logits.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_saliency import char_tokenizer
from tiny import tiny_model

from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.subject import Subject
from interpret_shift.errors import InterpretShiftError
from interpret_shift.methods.saliency import cost
from interpret_shift.methods.saliency.cost import Shape, choose, forward_plan, reverse_plan
from interpret_shift.methods.saliency.explainer import TARGETS, SaliencyExplainer, gradient_x_input
from interpret_shift.methods.saliency.forward import forward_differentiable, forward_saliency

#: Six families (llama stands for mistral's code too); the ones that support it are loaded
#: with SDPA attention, so the forward mode has to switch the attention and restore it.
FAMILIES = ["llama", "qwen2", "gemma2", "phi3", "gpt2", "gpt_neox"]
SDPA = {"llama", "qwen2", "phi3", "gpt2", "gpt_neox"}


def family_subject(family: str, memory_budget: int | None = None) -> Subject:
    built = tiny_model(family, attn="sdpa" if family in SDPA else "eager")
    subj = Subject.from_model(built, char_tokenizer(), source=family)
    subj.memory_budget = memory_budget
    return subj


def reference(built, prompt: list[int], response: list[int], target: str) -> np.ndarray:
    """One forward and one backward per response token; float64 from the logits on."""
    ids, n, columns = torch.tensor([prompt + response]), len(prompt), []
    for j, token in enumerate(response):
        E = built.get_input_embeddings()(ids).detach().requires_grad_(True)
        logits = built(inputs_embeds=E).logits[0, n + j - 1].double()
        if target == "prob":
            value = logits.softmax(-1)[token]
        elif target == "logprob":
            value = logits.log_softmax(-1)[token]
        else:
            value = logits[token]
        (grad,) = torch.autograd.grad(value, E)
        columns.append((grad[0, :n].double() * E[0, :n].double()).sum(-1).detach())
    return torch.stack(columns, 1).numpy()


def assert_agrees(actual: np.ndarray, expected: np.ndarray) -> None:
    """Within 1e-5 of the largest |entry|."""
    assert actual.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 1e-9, "the test would prove nothing on a matrix of zeros"
    assert np.abs(actual - expected).max() <= 1e-5 * scale, np.abs(actual - expected).max() / scale


PROMPTS = [
    PromptRecord("given", "Translate: the cat sat", response="le chat"),
    PromptRecord("made", "Name a colour"),  # greedy response
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", list(TARGETS))
def test_every_mode_equals_one_backward_per_token(family, target):
    subj = family_subject(family)
    implementation = subj.model.config._attn_implementation
    records = {}
    for mode in ("reverse", "forward", "auto"):
        explainer = SaliencyExplainer(target=target, mode=mode, max_new_tokens=4, position_chunk=8)
        records[mode] = dict(explainer.explain(subj, ["given", "made"], PROMPTS))
        assert subj.model.config._attn_implementation == implementation  # restored
    for key in ("given", "made"):
        arrays = records["reverse"][key].arrays
        ids, response = arrays["input_ids"].tolist(), arrays["response_ids"].tolist()
        assert len(response) >= 2
        expected = reference(subj.model, ids, response, target)
        for mode, by_key in records.items():
            record = by_key[key]
            assert record.arrays["response_ids"].tolist() == response
            assert_agrees(record.arrays["attribution"], expected)
            assert record.meta["mode"] == (mode if mode != "auto" else record.meta["mode"])
            assert record.meta["mode"] in ("reverse", "forward")
        np.testing.assert_allclose(
            records["forward"][key].arrays["target_values"], arrays["target_values"], rtol=1e-5
        )


def test_forward_mode_with_chunks_of_any_size_and_an_empty_response():
    built = tiny_model("qwen2", attn="sdpa")
    prompt, response = list(range(3, 12)), list(range(40, 47))
    expected = reference(built, prompt, response, "logprob")
    for chunk in (1, 4, 9, 50):
        s, _ = forward_saliency(built, prompt, response, TARGETS["logprob"], chunk)
        assert_agrees(s, expected)
    s, values = forward_saliency(built, prompt, [], TARGETS["prob"], 4)
    assert s.shape == (9, 0) and values.shape == (0,)


class Boom(Exception):
    pass


def test_attention_is_restored_after_an_exception():
    built = tiny_model("llama", attn="sdpa")
    with pytest.raises(Boom), forward_differentiable(built):
        assert built.config._attn_implementation == "eager"
        raise Boom
    assert built.config._attn_implementation == "sdpa"
    # and the model still runs its own attention: same logits as a fresh sdpa model
    ids = torch.tensor([[5, 6, 7, 8]])
    fresh = tiny_model("llama", attn="sdpa")
    torch.testing.assert_close(built(ids).logits, fresh(ids).logits)


def test_reverse_mode_runs_each_chunk_over_the_shortest_prefix():
    """A chunk of targets j0..j1 needs the prompt and response tokens before j1 only."""
    built = tiny_model("llama")
    n, chunk = 5, 3
    lengths: list[int] = []

    def record(module, args, kwargs):
        lengths.append(kwargs["inputs_embeds"].shape[1])

    handle = built.register_forward_pre_hook(record, with_kwargs=True)
    try:
        ((s, _),) = gradient_x_input(built, [(list(range(3, 8)), list(range(20, 27)))], "prob",
                                     target_chunk=chunk)  # fmt: skip
    finally:
        handle.remove()
    assert lengths == [n + 3 - 1, n + 6 - 1, n + 7 - 1]  # chunks end after targets 3, 6, 7
    assert_agrees(s, reference(built, list(range(3, 8)), list(range(20, 27)), "prob"))


# -- choosing the mode ---------------------------------------------------------------------
#: SmolLM2-135M's shape (30 layers, hidden 576, 9 heads, 3 KV heads, MLP 1536).
SMOLLM2 = Shape(layers=30, hidden=576, mlp=1536, heads=9, attention=576, vocab=49152,
                body=30 * (2 * 576 * 576 + 2 * 576 * 192 + 3 * 576 * 1536 + 2 * 576) + 576,
                element=4, eager=False)  # fmt: skip


@pytest.mark.parametrize(
    ("n", "m", "mode"),
    # measured (issue 15's table): reverse / forward = 0.31, 1.44 and 5.4
    [(64, 32, "reverse"), (32, 128, "forward"), (16, 256, "forward"), (150, 20, "reverse")],
)
def test_auto_takes_the_mode_measured_faster(n, m, mode):
    budget = 2**32
    plan = choose([reverse_plan(SMOLLM2, n, m, budget), forward_plan(SMOLLM2, n, m, budget)])
    assert plan.mode == mode and plan.fits


def test_auto_chooses_per_prompt_in_one_batch_and_records_it(monkeypatch):
    """On a tiny model the fixed cost per pass decides; without it, the passes' sizes do."""
    monkeypatch.setattr(cost, "REVERSE_PASS", 0.0)
    monkeypatch.setattr(cost, "FORWARD_PASS", 0.0)
    subj = family_subject("llama")
    prompts = [PromptRecord("short", "Hi", response="x" * 40),
               PromptRecord("long", "Hello there, " * 3, response="ok")]  # fmt: skip
    explainer = SaliencyExplainer(batch_size=2)
    records = dict(explainer.explain(subj, ["short", "long"], prompts))
    assert records["short"].meta["mode"] == "forward"  # 5 positions, 40 targets
    assert records["long"].meta["mode"] == "reverse"  # 42 positions, 2 targets
    for record in records.values():
        ids, response = record.arrays["input_ids"].tolist(), record.arrays["response_ids"].tolist()
        assert_agrees(record.arrays["attribution"], reference(subj.model, ids, response, "prob"))


# -- memory ------------------------------------------------------------------------------------
def test_chunks_shrink_with_the_budget_and_fit_it():
    n, m, last = 256, 256, None
    for budget in (2**34, 2**31, 2**30, 2**29):
        reverse = reverse_plan(SMOLLM2, n, m, budget)
        forward = forward_plan(SMOLLM2, n, m, budget)
        for plan in (reverse, forward):
            assert not plan.fits or plan.bytes <= budget
        if last is not None:
            assert forward.chunk <= last[1] and (not reverse.fits or reverse.chunk <= last[0])
        last = (reverse.chunk, forward.chunk)
    # a 2 GiB reverse chunk cannot fit 512 MiB: the smaller forward mode is taken
    assert choose([reverse_plan(SMOLLM2, n, m, 2**29), forward_plan(SMOLLM2, n, m, 2**29)]).mode \
        == "forward"  # fmt: skip


def test_the_subjects_budget_sizes_the_chunks_and_warns_when_nothing_fits():
    prompt = [PromptRecord("p", "Explain the rain", response="wet ground")]
    roomy = family_subject("llama", memory_budget=2**30)
    (_, wide), = SaliencyExplainer(mode="reverse").explain(roomy, ["p"], prompt)  # fmt: skip
    tight = family_subject("llama", memory_budget=1)
    (_, narrow), = SaliencyExplainer(mode="reverse").explain(tight, ["p"], prompt)  # fmt: skip
    assert wide.meta["chunk"] > 1 and not wide.meta["warnings"]
    assert narrow.meta["chunk"] == 1 and "budget" in narrow.meta["warnings"][0]
    np.testing.assert_allclose(narrow.arrays["attribution"], wide.arrays["attribution"],
                               atol=1e-6 * np.abs(wide.arrays["attribution"]).max())  # fmt: skip


@pytest.mark.parametrize(
    "options",
    [{"mode": "sideways"}, {"target_chunk": 0}, {"position_chunk": "big"},
     {"position_chunk": -2}, {"target_chunk": True}],
)  # fmt: skip
def test_bad_mode_and_chunk_options_are_refused(options):
    with pytest.raises(InterpretShiftError):
        SaliencyExplainer(**options)


def test_chunk_options_take_auto_or_a_number():
    config = SaliencyExplainer(target_chunk=4, position_chunk="auto", mode="forward").config
    assert (config.target_chunk, config.position_chunk, config.mode) == (4, "auto", "forward")
