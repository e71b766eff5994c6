"""The saliency explainer against slow, obvious references written here.

The reference loops over response tokens: a fresh forward of the whole text, a backward of
that one token's target, gradient x input. Tiny random models get their embeddings scaled
up so that targets and gradients are far from zero and relative errors mean something.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from tiny import VOCAB, tiny_model
from tokenizers import Regex, Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from interpret_shift.core.explainer import run_explainer
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import RecordStore
from interpret_shift.core.subject import Subject
from interpret_shift.errors import InterpretShiftError
from interpret_shift.methods.saliency import explainer as saliency_module
from interpret_shift.methods.saliency.explainer import SaliencyExplainer, gradient_x_input

FAMILIES = ["llama", "gpt2", "gpt_neox", "gemma2", "qwen3", "phi3", "opt", "falcon"]
TARGETS = ["prob", "logprob", "logit"]
SPECIAL = ["<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
CHARS = " abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\n-"
TEMPLATE = (
    "{% for m in messages %}<|user|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
EOS = 2


def char_tokenizer(bos: bool = False, template: str | None = TEMPLATE):
    """One token per character (so offsets are obvious), specials as whole tokens."""
    vocab = {token: i for i, token in enumerate(SPECIAL + list(CHARS))}
    assert len(vocab) <= VOCAB
    backend = Tokenizer(models.WordLevel(vocab, unk_token="?"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", 1)]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        additional_special_tokens=SPECIAL[3:],
    )  # fmt: skip
    tokenizer.chat_template = template
    return tokenizer


def model(family: str = "llama", dtype=torch.float32, attn: str = "eager"):
    built = tiny_model(family, attn=attn)
    with torch.no_grad():
        built.get_input_embeddings().weight.mul_(20)
    return built.to(dtype).requires_grad_(False)


def subject(family: str = "llama", dtype=torch.float32, **tokenizer_options) -> Subject:
    tokenizer = char_tokenizer(**tokenizer_options)
    return Subject.from_model(model(family, dtype), tokenizer, source=family)


def random_pairs(lengths, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randint(3, VOCAB, (n,), generator=generator).tolist(),
            torch.randint(3, VOCAB, (m,), generator=generator).tolist(),
        )
        for n, m in lengths
    ]


def reference(built, prompt: list[int], response: list[int], target: str) -> np.ndarray:
    """One forward and one backward per response token, on the whole text."""
    ids = torch.tensor([prompt + response])
    n = len(prompt)
    columns = []
    for j, token in enumerate(response):
        E = built.get_input_embeddings()(ids).detach().requires_grad_(True)
        logits = built(inputs_embeds=E).logits[0, n + j - 1].double()
        if target == "prob":
            value = torch.softmax(logits, -1)[token]
        elif target == "logprob":
            value = torch.log_softmax(logits, -1)[token]
        else:
            value = logits[token]
        value.backward()
        columns.append((E.grad[0, :n].double() * E[0, :n].double()).sum(-1).detach())
    return torch.stack(columns, 1).numpy() if columns else np.zeros((n, 0))


def assert_close(actual: np.ndarray, expected: np.ndarray, rtol: float = 1e-4) -> None:
    """Max abs error under 1e-5, and under ``rtol`` of the largest entry: a bound that means
    something also for the small gradients of improbable tokens."""
    assert actual.shape == expected.shape
    scale = np.abs(expected).max()
    assert scale > 1e-12, "the test would prove nothing on a matrix of zeros"
    error = np.abs(actual - expected).max()
    assert error < 1e-5 and error <= rtol * scale, (error, scale)


# -- exactness ---------------------------------------------------------------------------
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float32, 1e-4), (torch.float64, 1e-5)])
def test_batched_gradients_equal_one_backward_per_token(family, target, dtype, rtol):
    """float32: both ways are about as far from the float64 truth (up to ~5e-5 of the largest
    entry). float64 is ten times tighter; not more, because eager attention takes its
    softmax in float32 whatever the model's dtype."""
    built = model(family, dtype)
    pairs = random_pairs([(5, 4), (9, 1), (3, 6)])  # several lengths, batched together
    results = gradient_x_input(built, pairs, target, target_chunk=3)
    for (prompt, response), (s, values) in zip(pairs, results):
        assert_close(s, reference(built, prompt, response, target), rtol)
        assert values.shape == (len(response),) and np.isfinite(values).all()
    assert all(p.grad is None for p in built.parameters())


def test_target_values_are_the_targets():
    built = model()
    ((prompt, response),) = random_pairs([(4, 3)])
    ids = torch.tensor([prompt + response])
    probs = built(ids).logits[0].double().softmax(-1)
    expected = [probs[len(prompt) + j - 1, token].item() for j, token in enumerate(response)]
    ((_, values),) = gradient_x_input(built, [(prompt, response)], "prob")
    np.testing.assert_allclose(values, expected, rtol=1e-5)


def test_one_entry_matches_central_finite_difference():
    # GPT-2 with sdpa stays in float64 throughout (Llama's RMSNorm computes in float32).
    built = model("gpt2", torch.float64, attn="sdpa")
    ((prompt, response),) = random_pairs([(6, 3)], seed=3)
    ((s, _),) = gradient_x_input(built, [(prompt, response)], "prob")
    i, j = np.unravel_index(np.abs(s).argmax(), s.shape)
    E = built.get_input_embeddings()(torch.tensor([prompt + response[:j]]))

    def prob(h: float) -> float:
        moved = E.clone()
        moved[0, i] *= 1 + h  # along E_i itself: the derivative is grad . E_i
        logits = built(inputs_embeds=moved).logits[0, len(prompt) + j - 1]
        return logits.softmax(-1)[response[j]].item()

    h = 1e-5
    estimate = (prob(h) - prob(-h)) / (2 * h)
    assert abs(estimate) > 1e-9
    assert s[i, j] == pytest.approx(estimate, rel=1e-6)


def test_same_result_whatever_the_batching_and_chunking():
    built = model("qwen3", torch.float64)
    pairs = random_pairs([(7, 5), (2, 3), (11, 8), (4, 1)], seed=5)
    alone = [gradient_x_input(built, [pair], "logprob", target_chunk=1)[0][0] for pair in pairs]
    for chunk in (2, 3, 8, 100):
        together = gradient_x_input(built, pairs, "logprob", target_chunk=chunk)
        for one, (batched, _) in zip(alone, together):
            assert_close(batched, one, rtol=1e-5)


def test_bfloat16_model_gives_finite_values_close_to_float32():
    pairs = random_pairs([(8, 6), (5, 4)], seed=7)
    exact = gradient_x_input(model("llama"), pairs, "logprob")
    rough = gradient_x_input(model("llama", torch.bfloat16), pairs, "logprob")
    for (s32, _), (s16, _) in zip(exact, rough):
        assert s16.dtype == np.float32 and np.isfinite(s16).all()
        assert np.corrcoef(s32.ravel(), s16.ravel())[0, 1] > 0.95


# -- the explainer: responses, records, spans ----------------------------------------------
def greedy_reference(built, ids: list[int], steps: int) -> list[int]:
    out = list(ids)
    for _ in range(steps):
        token = int(built(torch.tensor([out])).logits[0, -1].argmax())
        if token == EOS:
            break
        out.append(token)
    return out[len(ids) :]


@pytest.mark.parametrize("family", ["llama", "gpt2", "gpt_neox", "gemma2", "opt", "falcon"])
def test_generated_responses_are_greedy_and_explained_exactly(family):
    subj = subject(family, torch.float64)  # near-uniform float32 targets are all rounding
    prompts = [PromptRecord("a", "Name a colour"), PromptRecord("b", "Add: 2 and 3, please")]
    records = dict(SaliencyExplainer(max_new_tokens=5, batch_size=2).explain(
        subj, ["a", "b"], prompts))  # fmt: skip
    for record in records.values():
        ids = record.arrays["input_ids"].tolist()
        response = record.arrays["response_ids"].tolist()
        assert response == greedy_reference(subj.model, ids, 5) and response
        assert record.meta["response_source"] == "generated"
        assert record.meta["response"] == subj.tokenizer.decode(response)
        expected = reference(subj.model, ids, response, "prob")
        assert_close(record.arrays["attribution"], expected, rtol=1e-5)


def test_given_response_record_and_masks():
    subj = subject("gemma2")
    text = "Translate to French: the cat"
    prompt = PromptRecord("p", text, response="le chat", group="g", rating=3,
                          instruction_spans=[(0, 19)], context_spans=[(21, 28)])  # fmt: skip
    ((key, record),) = SaliencyExplainer(target="logit").explain(subj, ["p"], [prompt])
    arrays, meta = record.arrays, record.meta
    tokens = np.array(meta["tokens"], dtype=object)
    assert key == "p" and record.explainer == "saliency" and record.data_kind == "token_attribution"
    assert meta["chat_template_used"] and meta["text"] == f"<|user|>{text}<|end|><|assistant|>"
    assert "".join(tokens[arrays["prompt_mask"]]) == text
    assert "".join(tokens[arrays["instruction_mask"]]) == "Translate to French"
    assert "".join(tokens[arrays["context_mask"]]) == "the cat"
    assert tokens[0] == "<|user|>" and not arrays["prompt_mask"][[0, -2, -1]].any()
    assert meta["response_tokens"] == list("le chat") and meta["response"] == "le chat"
    assert (meta["group"], meta["rating"], meta["target"]) == ("g", 3, "logit")
    assert arrays["attribution"].dtype == np.float32
    assert arrays["attribution"].shape == (len(arrays["input_ids"]), len(arrays["response_ids"]))
    ids, response = arrays["input_ids"].tolist(), arrays["response_ids"].tolist()
    assert_close(arrays["attribution"], reference(subj.model, ids, response, "logit"))


@pytest.mark.parametrize("bos", [False, True])
def test_without_template_bos_is_not_a_prompt_token(bos):
    subj = subject(bos=bos, template=None)
    prompt = PromptRecord("p", "Summarize: it rains", response="wet",
                          instruction_spans=[(0, 9)])  # fmt: skip
    ((_, record),) = SaliencyExplainer().explain(subj, ["p"], [prompt])
    tokens = np.array(record.meta["tokens"], dtype=object)
    assert record.meta["bos"] is bos and not record.meta["chat_template_used"]
    assert record.arrays["input_ids"][0] == 1 if bos else record.arrays["input_ids"][0] != 1
    assert len(tokens) == len(prompt.prompt) + bos
    assert "".join(tokens[record.arrays["prompt_mask"]]) == prompt.prompt
    assert "".join(tokens[record.arrays["instruction_mask"]]) == "Summarize"


def test_template_that_trims_the_prompt_keeps_spans_on_their_words():
    trimming = TEMPLATE.replace("m['content']", "m['content'] | trim")
    subj = subject(template=trimming, bos=True)
    text = "  Explain: rain \n"
    prompt = PromptRecord("p", text, response="ok", instruction_spans=[(2, 9)],
                          context_spans=[(11, 15)])  # fmt: skip
    ((_, record),) = SaliencyExplainer().explain(subj, ["p"], [prompt])
    tokens = np.array(record.meta["tokens"], dtype=object)
    assert record.meta["text"] == "<|user|>Explain: rain<|end|><|assistant|>"
    assert "".join(tokens[record.arrays["prompt_mask"]]) == "Explain: rain"
    assert "".join(tokens[record.arrays["instruction_mask"]]) == "Explain"
    assert "".join(tokens[record.arrays["context_mask"]]) == "rain"


def test_empty_response_gives_an_empty_matrix():
    subj = subject()
    ((_, record),) = SaliencyExplainer().explain(
        subj, ["p"], [PromptRecord("p", "Hi", response="")]
    )
    assert record.arrays["attribution"].shape == (len(record.arrays["input_ids"]), 0)


# -- errors --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        (PromptRecord("e", "   "), "empty"),
        (PromptRecord("long", "x" * 80), "64 positions"),
        (PromptRecord("long2", "x" * 40, response="y" * 30), "prompt and its response"),
    ],
)
def test_bad_prompts_fail_clearly_before_any_work(prompt, words):
    ok = PromptRecord("ok", "fine")
    with pytest.raises(InterpretShiftError, match=words) as error:
        next(SaliencyExplainer().explain(subject(), ["ok", prompt.id], [ok, prompt]))
    assert prompt.id in str(error.value) and error.value.fix


def test_generation_stops_where_the_positions_end():
    subj = subject(template=None)  # 64 positions; a 62-character prompt leaves room for 3
    (_, record), = SaliencyExplainer(max_new_tokens=10).explain(
        subj, ["p"], [PromptRecord("p", "x" * 62)])  # fmt: skip
    fed = len(record.arrays["input_ids"]) + len(record.arrays["response_ids"]) - 1
    assert len(record.arrays["response_ids"]) == 3 and fed == 64  # (with 40 it makes 10)


def test_template_that_rewrites_the_prompt_is_refused():
    subj = subject(template=TEMPLATE.replace("m['content']", "m['content'] | upper"))
    with pytest.raises(InterpretShiftError, match="chat_template=false"):
        next(SaliencyExplainer().explain(subj, ["p"], [PromptRecord("p", "hello")]))
    (_, record), = SaliencyExplainer(chat_template=False).explain(
        subj, ["p"], [PromptRecord("p", "hello", response="x")])  # fmt: skip
    assert record.meta["text"] == "hello"


@pytest.mark.parametrize(
    "options",
    [{"target": "loss"}, {"target_chunk": 0}, {"batch_size": -1}, {"max_new_tokens": 1.5}],
)
def test_bad_options_are_refused(options):
    with pytest.raises(InterpretShiftError):
        SaliencyExplainer(**options)


# -- resuming --------------------------------------------------------------------------------
class Interrupted(Exception):
    """Stands for a crash or Ctrl-C in the middle of a run."""


def test_an_interrupted_run_resumes_at_the_next_prompt(tmp_path, monkeypatch):
    subj = subject()
    prompts = [PromptRecord(f"p{i}", f"Say {word}", response="ok")
               for i, word in enumerate(["one", "two", "three"])]  # fmt: skip
    explainer = SaliencyExplainer(batch_size=1)
    store = RecordStore(tmp_path)
    calls, crash_at = [], 2
    real = saliency_module.gradient_x_input

    def failing_on_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == crash_at:
            raise Interrupted
        return real(*args, **kwargs)

    monkeypatch.setattr(saliency_module, "gradient_x_input", failing_on_second)
    with pytest.raises(Interrupted):
        run_explainer(explainer, subj, prompts, store)
    assert store.keys() == ["p0"]
    files = [store.path("p0").with_suffix(suffix) for suffix in (".json", ".safetensors")]
    for file in files:  # an old time stamp: a rewrite would replace it with the current time
        os.utime(file, ns=(10**9, 10**9))

    calls.clear()
    crash_at = 0
    results = run_explainer(explainer, subj, prompts, store)
    assert len(calls) == 2  # only the two missing prompts were computed
    assert store.keys() == ["p0", "p1", "p2"] and list(results) == ["p0", "p1", "p2"]
    assert [file.stat().st_mtime_ns for file in files] == [10**9, 10**9]
    again = real(subj.model, [(results["p0"].arrays["input_ids"].tolist(),
                               results["p0"].arrays["response_ids"].tolist())])[0][0]  # fmt: skip
    np.testing.assert_array_equal(results["p0"].arrays["attribution"], again)


# -- a real model ----------------------------------------------------------------------------
def test_smollm2_instruct_completes_and_maps_spans(smollm2):
    text = "Translate to French: the cat"
    prompts = [
        PromptRecord("given", text, response="le chat",
                     instruction_spans=[(0, 19)], context_spans=[(21, 28)]),
        PromptRecord("made", "Name one colour.", instruction_spans=[(0, 4)]),
    ]  # fmt: skip
    explainer = SaliencyExplainer(max_new_tokens=4, batch_size=2, target_chunk=2)
    records = dict(explainer.explain(smollm2, ["given", "made"], prompts))
    decode = smollm2.tokenizer.decode
    for key, prompt in zip(records, prompts):
        arrays, meta = records[key].arrays, records[key].meta
        assert meta["chat_template_used"] and "<|im_start|>user\n" in meta["text"]
        assert np.isfinite(arrays["attribution"]).all() and np.abs(arrays["attribution"]).max() > 0
        assert decode(arrays["input_ids"][arrays["prompt_mask"]]) == prompt.prompt
        assert prompt.prompt[slice(*prompt.instruction_spans[0])] in decode(
            arrays["input_ids"][arrays["instruction_mask"]])  # fmt: skip
    given = records["given"].arrays
    assert decode(given["input_ids"][given["context_mask"]]).strip() == "the cat"
    assert 1 <= len(records["made"].arrays["response_ids"]) <= 4
    # The first response token's column, against one plain backward on the real model.
    ids, response = given["input_ids"].tolist(), given["response_ids"].tolist()
    expected = reference(smollm2.model, ids, response[:1], "prob")[:, 0]
    np.testing.assert_allclose(given["attribution"][:, 0], expected, rtol=1e-4,
                               atol=1e-4 * np.abs(expected).max())  # fmt: skip
