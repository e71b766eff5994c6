"""Saliency: gradient x input of every response token w.r.t. the prompt tokens (DESIGN §3.1).

For prompt tokens x_1..x_n with input embeddings E (the embedding module's output, i.e.
exactly what enters the first layer) and response tokens y_1..y_m, the record holds

    s[i, j] = sum_d  d target(y_j | x, y_<j) / d E[i, d]  *  E[i, d]

with target the softmax probability (the paper's), the log-probability or the logit.

Every response token needs its own gradient. Instead of one Python-level backward per
token, :func:`gradient_x_input` does, per chunk of response positions, one forward of the
batch of prompts (cut after the chunk's last target) and one *batched* backward: the
one-hot cotangents of the chunk's targets are pushed through the graph together
(``autograd.grad(..., is_grads_batched=True)``, i.e. vmap over the backward), so each
gradient is exactly that of its own target, with large matrix products and no Python loop
over tokens. See docs/saliency.md for why this beats replicating the sequence per target.

That reverse mode costs one backward per response token; the forward mode
(:mod:`.forward`) costs one tangent pass per prompt position. ``mode="auto"`` takes, per
prompt, the one :mod:`.cost` expects to be faster, with chunks sized to the memory budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from interpret_shift.core import memory
from interpret_shift.core.explainer import Explainer
from interpret_shift.core.placement import input_device
from interpret_shift.core.prompts import PromptRecord, Span, render_chat, token_mask
from interpret_shift.core.records import Explanation
from interpret_shift.core.responses import greedy, max_positions, stop_tokens
from interpret_shift.errors import InterpretShiftError
from interpret_shift.methods.saliency.cost import Plan, Shape, choose, forward_plan, reverse_plan
from interpret_shift.methods.saliency.forward import forward_saliency


def _pick(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    return logits.gather(-1, tokens[..., None])[..., 0]


#: target name -> f(float32 logits (..., vocab), token ids (...)) -> value (...)
TARGETS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "prob": lambda logits, y: _pick(logits.softmax(-1), y),
    "logprob": lambda logits, y: _pick(logits.log_softmax(-1), y),
    "logit": _pick,
}
_MARKER = "\ue000"  # a private-use character: where the user's text goes in a chat template


# -- the gradient core -------------------------------------------------------------------
def gradient_x_input(
    model: nn.Module,
    sequences: Sequence[tuple[Sequence[int], Sequence[int]]],
    target: str = "prob",
    target_chunk: int = 16,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Raw saliency of a batch of (input ids, response ids) pairs.

    Returns per pair ``(s, values)``: ``s`` float32 (n inputs, m response tokens) and the
    target's value per response token (m,). Response positions are done ``target_chunk``
    at a time; memory grows with ``len(sequences) * target_chunk`` backward passes' worth
    of activations.
    """
    prompts = [torch.as_tensor(p, dtype=torch.long) for p, _ in sequences]
    responses = [torch.as_tensor(r, dtype=torch.long) for _, r in sequences]
    saliency = [np.zeros((len(p), len(r)), np.float32) for p, r in zip(prompts, responses)]
    values = [np.zeros(len(r), np.float32) for r in responses]
    for start in range(0, max(map(len, responses), default=0), target_chunk):
        rows = [b for b, response in enumerate(responses) if len(response) > start]
        chunk = [(prompts[b], responses[b][: start + target_chunk]) for b in rows]
        s, t = _chunk_saliency(model, chunk, start, target)
        for row, b in enumerate(rows):
            n, stop = len(prompts[b]), len(chunk[row][1])
            saliency[b][:, start:stop] = s[row, : stop - start, :n].T
            values[b][start:stop] = t[row, : stop - start]
    return list(zip(saliency, values))


def _chunk_saliency(
    model: nn.Module, chunk: list[tuple[torch.Tensor, torch.Tensor]], start: int, target: str
) -> tuple[np.ndarray, np.ndarray]:
    """Targets ``start:`` of (prompt, response cut after the chunk) pairs, in one forward and
    one vmapped backward: s (rows, targets, prompt positions) and the targets' values."""
    embed = model.get_input_embeddings()
    device = input_device(model)  # an offloaded embedding's weight is on 'meta'
    wide = torch.promote_types(embed.weight.dtype, torch.float32)  # bf16 models: float32 maths
    n = torch.tensor([len(p) for p, _ in chunk])
    m = torch.tensor([len(r) for _, r in chunk])
    j = torch.arange(start, int(m.max()))
    valid = j < m[:, None]  # (rows, k): some responses end inside the chunk
    where = torch.where(valid, n[:, None] + j - 1, 0)  # target j is predicted at n + j - 1
    tokens = torch.stack([r[j.clamp(max=len(r) - 1)] for _, r in chunk])
    # The last target is never an input. Right padding: causal attention never looks ahead,
    # so no row sees its padding and positions need no shifting.
    fed = [torch.cat([p, r[:-1]]) for p, r in chunk]
    ids = nn.utils.rnn.pad_sequence(fed, batch_first=True).to(device)
    with torch.enable_grad():
        E = embed(ids).detach().requires_grad_(True)
        logits = model(inputs_embeds=E, logits_to_keep=where.to(device), use_cache=False).logits
        t = TARGETS[target](logits.to(wide), tokens.to(device))  # (rows, k)
        # Cotangent c selects target c of every row: one batched backward gives all k.
        one_hot = torch.eye(len(j), device=device)[:, None, :] * valid.to(device)
        (grad,) = torch.autograd.grad(t, E, one_hot, is_grads_batched=True)
    width, E = int(n.max()), E.detach()
    s = torch.einsum("crtd,rtd->rct", grad[:, :, :width].to(wide), E[:, :width].to(wide))
    return s.float().cpu().numpy(), t.detach().float().cpu().numpy()


# -- prompts to tokens -------------------------------------------------------------------
@dataclasses.dataclass
class Encoded:
    """A prompt as the model reads it, and where the user's own text sits in it."""

    prompt: PromptRecord
    text: str  # what the tokenizer saw (chat template applied or not)
    templated: bool
    ids: list[int]
    offsets: np.ndarray  # (n, 2) character offsets into ``text``
    user: Span  # the user's prompt text, in ``text`` characters
    shift: int  # text offset = prompt offset + shift
    response: list[int] | None = None
    warnings: list[str] = dataclasses.field(default_factory=list)  # e.g. a cut response

    def mask(self, spans: Sequence[Span]) -> np.ndarray:
        start, stop = self.user
        moved = [(max(a + self.shift, start), min(b + self.shift, stop)) for a, b in spans]
        return token_mask(self.offsets, [(a, b) for a, b in moved if a < b])


def encode(
    tokenizer, prompt: PromptRecord, chat_template: bool, response_tokens: str = "separate"
) -> Encoded:
    """Format (chat template or raw text), tokenize with offsets, locate the user's text.

    ``response_tokens`` says how a given response becomes tokens: ``separate`` tokenizes it
    alone (no special tokens) and appends it to the prompt's tokens; ``joined`` (the
    paper's code) tokenizes ``prompt.strip() + " " + response.strip()`` and takes as the
    response the tokens after as many as the stripped prompt alone has. ``joined`` needs
    the raw prompt (no chat template) and changes nothing for generated responses.
    """
    if not prompt.prompt.strip():
        raise InterpretShiftError(
            f"Prompt {prompt.id!r} is empty.", "Give every prompt some text, or drop it."
        )
    templated = bool(chat_template and getattr(tokenizer, "chat_template", None))
    if response_tokens == "joined" and prompt.response is not None:
        if templated:
            raise InterpretShiftError(
                f"Prompt {prompt.id!r}: response_tokens='joined' tokenizes the raw prompt and "
                "its response as one text, which a chat template cannot take part in.",
                "Also set chat_template=false (e.g. --set saliency.chat_template=false), or "
                "use response_tokens='separate'.",
            )
        return _encode_joined(tokenizer, prompt)
    text = render_chat(tokenizer, prompt.prompt) if templated else prompt.prompt
    encoding = _tokenize(tokenizer, text, add_special_tokens=not templated)
    user, shift = _locate(tokenizer, text, prompt) if templated else ((0, len(text)), 0)
    response = None
    if prompt.response is not None:
        response = tokenizer(prompt.response, add_special_tokens=False).input_ids
    offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2)
    return Encoded(prompt, text, templated, encoding.input_ids, offsets, user, shift, response)


def _encode_joined(tokenizer, prompt: PromptRecord) -> Encoded:
    """The paper's tokenization of a prompt and its given response as one text.

    The model reads the first n tokens of the joined text, n = the stripped prompt's own
    token count, and the response is the rest. ``text`` is the stripped prompt; spans move
    by the white space stripped from its start.
    """
    body = prompt.prompt.strip()
    lead = len(prompt.prompt) - len(prompt.prompt.lstrip())
    joined = body + " " + (prompt.response or "").strip()
    alone = tokenizer(body).input_ids  # special tokens as the paper's code: the defaults
    encoding = _tokenize(tokenizer, joined, add_special_tokens=True)
    n = len(alone)
    ids = list(encoding.input_ids)
    offsets = np.asarray(encoding["offset_mapping"], dtype=np.int64).reshape(-1, 2)[:n]
    offsets = np.minimum(offsets, len(body))  # a token across the joint stays in the prompt
    response = ids[n:] if (prompt.response or "").strip() else []
    item = Encoded(prompt, body, False, ids[:n], offsets, (0, len(body)), -lead, response)
    if ids[:n] != alone:
        item.warnings.append(
            "joined tokenization: the prompt's tokens differ when its response follows, so "
            "the response tokens start at a shifted boundary"
        )
    return item


def _tokenize(tokenizer, text: str, add_special_tokens: bool):
    try:  # a text from a chat template already holds its special tokens
        return tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    except NotImplementedError as error:
        raise InterpretShiftError(
            "The saliency explainer maps prompt spans to tokens by character offsets, which "
            f"this tokenizer ({type(tokenizer).__name__}) cannot report.",
            "Load the model with its fast tokenizer (tokenizer.json).",
        ) from error


def _locate(tokenizer, text: str, prompt: PromptRecord) -> tuple[Span, int]:
    """Where the template put the user's text: after what it renders before a marker."""
    before = render_chat(tokenizer, _MARKER).split(_MARKER)[0]
    raw = prompt.prompt
    lead = len(raw) - len(raw.lstrip())
    for body, skipped in ((raw, 0), (raw.strip(), lead)):  # templates may trim the text
        if text.startswith(before) and text.startswith(body, len(before)):
            return (len(before), len(before) + len(body)), len(before) - skipped
    raise InterpretShiftError(
        f"The chat template changes the text of prompt {prompt.id!r}, so its instruction "
        "and context spans cannot be placed on tokens.",
        "Run the saliency explainer with chat_template=false (e.g. --set "
        "saliency.chat_template=false).",
    )


# -- the explainer -----------------------------------------------------------------------
class SaliencyExplainer(Explainer):
    """Which prompt tokens each response token depends on: gradient x input, per prompt."""

    name = "saliency"
    data_kind = "token_attribution"
    needs = frozenset({"prompts", "gradients"})
    description = "gradient x input of each response token's probability w.r.t. the prompt"

    @dataclasses.dataclass
    class Config:
        target: str = "prob"  # prob (the paper's), logprob or logit
        chat_template: bool = True  # format prompts with the tokenizer's template, if any
        max_new_tokens: int = 64  # greedy response length when a prompt has none
        batch_size: int = 1  # prompts per forward pass (memory grows with batch x chunk)
        # reverse (one backward per response token), forward (one tangent pass per prompt
        # position) or auto: per prompt the one expected to be faster (docs/saliency.md)
        mode: Literal["auto", "reverse", "forward"] = "auto"
        # response positions per backward pass (reverse mode); auto: sized to the budget
        target_chunk: int | Literal["auto"] = "auto"
        # prompt positions per tangent pass (forward mode); auto: sized to the budget
        position_chunk: int | Literal["auto"] = "auto"
        # a given response: tokenized alone ("separate") or with its prompt ("joined", the
        # paper's code; needs chat_template=false)
        response_tokens: Literal["separate", "joined"] = "separate"

        def __post_init__(self) -> None:
            if self.target not in TARGETS:
                raise InterpretShiftError(
                    f"Unknown saliency target {self.target!r}.",
                    f"Use one of: {', '.join(TARGETS)}.",
                )
            for field in ("max_new_tokens", "batch_size", "target_chunk", "position_chunk"):
                value = getattr(self, field)
                if value == "auto" and field.endswith("_chunk"):
                    continue
                if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                    auto = " or 'auto'" if field.endswith("_chunk") else ""
                    raise InterpretShiftError(
                        f"Saliency option {field} must be a positive integer{auto}, not {value!r}.",
                        f"Pass a whole number of 1 or more{auto}.",
                    )

    def items(self, subject, prompts: Sequence[PromptRecord]) -> list[str]:
        return [prompt.id for prompt in prompts]

    def explain(
        self, subject, keys: Sequence[str], prompts: Sequence[PromptRecord]
    ) -> Iterator[tuple[str, Explanation]]:
        by_id = {prompt.id: prompt for prompt in prompts}
        # Tokenize everything first, so that a bad prompt fails before any long work.
        config = self.config
        encoded = [encode(subject.tokenizer, by_id[key], config.chat_template,
                          config.response_tokens) for key in keys]  # fmt: skip
        limit = max_positions(subject.model.config)
        for item in encoded:
            _check_length(item, limit)
        shape = Shape.of(subject.model)
        device = input_device(subject.model)
        budget = memory.budget(device, getattr(subject, "memory_budget", None))
        size = self.config.batch_size
        for batch in (encoded[i : i + size] for i in range(0, len(encoded), size)):
            for item in batch:
                if item.response is None:
                    item.response = self._generate(subject, item, limit)
            plans = [self._plan(shape, item, budget) for item in batch]
            results = self._saliency(subject.model, shape, batch, plans, budget)
            for item, plan, (s, values, chunk) in zip(batch, plans, results):
                if not plan.fits:
                    item.warnings.append(
                        f"saliency needs about {plan.bytes / 2**20:.0f} MiB of working memory "
                        f"even in its smallest chunks, more than the budget of "
                        f"{budget / 2**20:.0f} MiB"
                    )
                record = self._record(subject, item, s, values)
                record.meta.update(mode=plan.mode, chunk=chunk)
                yield item.prompt.id, record

    def _plan(self, shape: Shape, item: Encoded, budget: int) -> Plan:
        """The mode for one prompt: the option, or under ``auto`` the faster that fits."""
        n, m, config = len(item.ids), len(item.response or ()), self.config
        target_chunk = None if config.target_chunk == "auto" else int(config.target_chunk)
        position_chunk = None if config.position_chunk == "auto" else int(config.position_chunk)
        reverse = reverse_plan(shape, n, m, budget, target_chunk)
        forward = forward_plan(shape, n, m, budget, position_chunk)
        if config.mode == "reverse" or m == 0:
            return dataclasses.replace(reverse, mode="reverse")
        if config.mode == "forward":
            return forward
        return choose([reverse, forward])

    def _saliency(
        self, model: nn.Module, shape: Shape, batch: list[Encoded], plans: list[Plan], budget: int
    ) -> list[tuple[np.ndarray, np.ndarray, int]]:
        """Reverse-mode prompts of the batch together, forward-mode ones one by one."""
        target, out = self.config.target, {}
        backward = [b for b, plan in enumerate(plans) if plan.mode == "reverse"]
        if backward:
            rows = [batch[b] for b in backward]
            n = max(len(item.ids) for item in rows)
            m = max(len(item.response or ()) for item in rows)
            fixed = None if self.config.target_chunk == "auto" else int(self.config.target_chunk)
            chunk = reverse_plan(shape, n, m, budget, fixed, rows=len(rows)).chunk
            pairs = [(item.ids, item.response) for item in rows]
            for b, (s, values) in zip(backward, gradient_x_input(model, pairs, target, chunk)):
                out[b] = (s, values, chunk)
        for b, plan in enumerate(plans):
            if plan.mode == "forward":
                item = batch[b]
                s, values = forward_saliency(
                    model, item.ids, item.response or [], TARGETS[target], plan.chunk
                )
                out[b] = (s, values, plan.chunk)
        return [out[b] for b in range(len(batch))]

    def _generate(self, subject, item: Encoded, limit: int | None) -> list[int]:
        """A greedy response, as long as the option and the model's positions allow."""
        steps = self.config.max_new_tokens
        if limit is not None:
            steps = min(steps, limit - len(item.ids) + 1)  # its last token is never fed
        response = greedy(
            subject.model, item.ids, steps, stop_tokens(subject.model, subject.tokenizer)
        )
        if steps < self.config.max_new_tokens and len(response) == steps:
            item.warnings.append(
                f"the generated response was cut at {steps} tokens by the model's {limit} "
                f"positions (max_new_tokens is {self.config.max_new_tokens})"
            )
        return response

    def _record(self, subject, item: Encoded, s: np.ndarray, values: np.ndarray) -> Explanation:
        tokenizer, prompt = subject.tokenizer, item.prompt
        given = prompt.response is not None
        bos = getattr(tokenizer, "bos_token_id", None)
        arrays = {
            "attribution": s,
            "input_ids": np.asarray(item.ids, dtype=np.int64),
            "response_ids": np.asarray(item.response, dtype=np.int64),
            "offsets": item.offsets,
            "prompt_mask": token_mask(item.offsets, [item.user]),
            "instruction_mask": item.mask(prompt.instruction_spans),
            "context_mask": item.mask(prompt.context_spans),
            "target_values": values,
        }
        meta: dict[str, Any] = {
            "prompt_id": prompt.id,
            "group": prompt.group,
            "rating": prompt.rating,
            "target": self.config.target,
            "text": item.text,
            "chat_template_used": item.templated,
            "prompt_start": item.user[0],
            "prompt_shift": item.shift,
            "bos": bool(item.ids) and bos is not None and item.ids[0] == bos,
            "tokens": _token_strings(tokenizer, item.text, item.ids, item.offsets),
            "response": prompt.response if given else tokenizer.decode(item.response),
            "response_source": "given" if given else "generated",
            "response_tokens": [tokenizer.decode([token]) for token in item.response],
            "warnings": list(item.warnings),
        }
        return Explanation(self.name, self.data_kind, arrays, meta)


def _check_length(item: Encoded, limit: int | None) -> None:
    fed = len(item.ids) + max(len(item.response or ()) - 1, 0)  # the last token is never fed
    if limit is not None and fed > limit:
        what = "prompt" if item.response is None else "prompt and its response"
        raise InterpretShiftError(
            f"Prompt {item.prompt.id!r}: the {what} take {fed} tokens"
            f"{' (with the chat template)' if item.templated else ''}, "
            f"more than the model's {limit} positions.",
            "Shorten the prompt or response, or use a model with a longer context.",
        )


def _token_strings(tokenizer, text: str, ids: list[int], offsets: np.ndarray) -> list[str]:
    """Each token as the text it covers; tokens covering none (BOS, ...) by their name."""
    names = tokenizer.convert_ids_to_tokens(ids)
    return [text[a:b] if b > a else name for name, (a, b) in zip(names, offsets.tolist())]
