"""``compare``: explain a base and a tuned model the same way, diff them, write a report.

Output folder::

    DIR/records/<explainer>/<base|tuned>/   one record per item (resumable)
    DIR/diff/<explainer>.json              the diff metrics of that explainer
    DIR/diff/model.json                    weight deltas and next-token KL
    DIR/summary.json                       models, warnings and headline claims
    DIR/report.html                        the self-contained report
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from interpret_shift import demo
from interpret_shift.analysis import layers_label
from interpret_shift.diff import diff_records
from interpret_shift.diff.model_metrics import next_token_kl, weight_deltas
from interpret_shift.errors import InterpretShiftError
from interpret_shift.explainers import run_explainer
from interpret_shift.plugin_manager import plugin_manager
from interpret_shift.prompts import PromptRecord, read_prompts
from interpret_shift.records import RecordStore, atomic_write_text

DEFAULT_EXPLAINERS = ("saliency", "heads", "ffn")
SIDES = ("base", "tuned")
SIGNIFICANCE = 0.01


def load_prompt_set(source: str | Path) -> list[PromptRecord]:
    """A JSONL prompt file, or ``demo`` for the embedded pair's held-out prompts."""
    if str(source) == "demo":
        source = demo.prompts_path()
        if not source.exists():
            raise InterpretShiftError(
                f"The embedded demo prompts are not installed ({source} is missing).",
                "Pass a JSONL prompt file with --prompts (format: docs/formats.md).",
            )
    return read_prompts(source)


def make_explainer(name: str, options: dict[str, Any]):
    explainers = plugin_manager().explainers()
    if name not in explainers:
        raise InterpretShiftError(
            f"Unknown explainer {name!r}.",
            f"Available: {', '.join(sorted(explainers))} (see `interpret-shift plugins`).",
        )
    return explainers[name](**options)


def align_templates(base, tuned) -> list[str]:
    """Feed both models the same text: the tuned model's chat template, if only it has one."""
    warnings = []
    if base.tokenizer.get_vocab() != tuned.tokenizer.get_vocab():
        warnings.append("The two tokenizers differ: per-token comparisons are approximate "
                        "and next-token KL is skipped.")  # fmt: skip
    template_a = getattr(base.tokenizer, "chat_template", None)
    template_b = getattr(tuned.tokenizer, "chat_template", None)
    if template_b and not template_a:
        base.tokenizer.chat_template = template_b
        warnings.append("The base model has no chat template; both models were given the "
                        "tuned model's template, so they read identical text.")  # fmt: skip
    elif template_a != template_b:
        warnings.append("The chat templates differ: each model reads its own template.")
    return warnings


def formatted(subject, prompt: PromptRecord) -> str:
    """The text a model reads for a prompt (its chat template, when it has one)."""
    if getattr(subject.tokenizer, "chat_template", None):
        return subject.tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt.prompt}], tokenize=False,
            add_generation_prompt=True,
        )  # fmt: skip
    return prompt.prompt


def compare(
    base,
    tuned,
    prompts: Sequence[PromptRecord],
    out: str | Path,
    *,
    explainers: Sequence[str] = DEFAULT_EXPLAINERS,
    options: dict[str, dict[str, Any]] | None = None,
    annotator: str = "lexical",
    force: bool = False,
    console: Console | None = None,
) -> dict[str, Any]:
    """Run everything on two loaded subjects; returns the summary (also in DIR/summary.json)."""
    out, options = Path(out), options or {}
    console = console or Console(stderr=True)
    warnings = align_templates(base, tuned)
    diffs: dict[str, dict] = {}
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console)  # fmt: skip
    with progress:
        for name in explainers:
            explainer = make_explainer(name, options.get(name, {}))
            records = {}
            for side, subject in zip(SIDES, (base, tuned)):
                store = RecordStore(out / "records" / name / side)
                records[side] = run_explainer(explainer, subject, prompts, store, force=force,
                                              progress=progress)  # fmt: skip
            task = progress.add_task(f"diff · {name}", total=1)
            diffs[name] = diff_records(records["base"], records["tuned"])
            if explainer.data_kind == "subspace":
                diffs[name]["concepts"] = concept_table(records, annotator)
            _write_json(out / "diff" / f"{name}.json", diffs[name])
            progress.advance(task)
        diffs["model"] = model_metrics(base, tuned, prompts, out, force, progress)
    summary = {
        "base": base.provenance(),
        "tuned": tuned.provenance(),
        "n_prompts": len(prompts),
        "explainers": list(explainers),
        "warnings": warnings,
        "claims": claims(diffs),
    }
    _write_json(out / "summary.json", summary)
    from interpret_shift.report import print_summary, render_report

    render_report(out)
    print_summary(out, console=console)
    return summary


def model_metrics(base, tuned, prompts, out: Path, force: bool, progress) -> dict[str, Any]:
    """Weight deltas and KL; reused from DIR when the same two models made them."""
    path = out / "diff" / "model.json"
    identity = [base.fingerprint, tuned.fingerprint, [p.id for p in prompts]]
    if path.exists() and not force:
        cached = json.loads(path.read_text())
        if cached.get("identity") == identity:
            return cached
    task = progress.add_task("weight deltas and next-token KL", total=2)
    result = {"identity": identity, "weights": weight_deltas(base, tuned)}
    progress.advance(task)
    result["kl"] = next_token_kl(base, tuned, [formatted(tuned, p) for p in prompts],
                                 [p.id for p in prompts])  # fmt: skip
    progress.advance(task)
    _write_json(path, result)
    return result


def concept_table(records: dict[str, dict], annotator_name: str) -> dict[str, Any]:
    """Label every FFN component with an annotator; proportions per layer group and test."""
    from interpret_shift.analysis.ffn import compare_proportions, label_records, proportions

    annotators = plugin_manager().annotators()
    if annotator_name not in annotators:
        raise InterpretShiftError(
            f"Unknown annotator {annotator_name!r}.", f"Available: {', '.join(annotators)}."
        )
    annotator = annotators[annotator_name]
    labels = [
        label for side in SIDES for label in label_records(records[side].values(), annotator, side)
    ]
    table: dict[str, Any] = {"annotator": annotator_name}
    tests = []
    for axis in ("task", "level"):
        found = proportions(labels, axis)
        table.setdefault("groups", list(found.groups[1:]))
        table[f"{axis}s"] = list(found.categories)
        for side in SIDES:
            mean = found.shares[side][1:].mean(axis=1)  # per group, mean over seeds
            table.setdefault(side, {})[axis] = [[_finite(v) for v in row] for row in mean]
        for test in compare_proportions(found, "base", "tuned"):
            if test.group != found.groups[0]:
                tests.append({"axis": axis, "category": test.category, "group": test.group,
                              "mean_base": _finite(test.mean_base),
                              "mean_tuned": _finite(test.mean_tuned),
                              "n": test.n_base, "p": _finite(test.p)})  # fmt: skip
    table["tests"] = tests
    return table


def claims(diffs: dict[str, dict]) -> list[dict[str, Any]]:
    """The headline findings, each with its n and p where it is a test."""
    found = []
    score = diffs.get("saliency", {}).get("instruction-score", {}).get("overall")
    if score:
        p = score["p"]
        shifted = p is not None and p < SIGNIFICANCE
        verdict = (
            f"The tuned model relies more on the instruction words than the base model (p < {SIGNIFICANCE})."
            if shifted
            else "No significant increase of the instruction scores after tuning."
        )
        found.append({
            "section": "saliency", "topic": "instruction-score",
            "text": f"{verdict} Mean instruction score {_fmt(score['mean_tuned'])} (tuned) vs "
                    f"{_fmt(score['mean_base'])} (base), one-sided Welch t-test.",
            "n": score["n_base"] + score["n_tuned"], "p": p, "shift_found": shifted,
        })  # fmt: skip
    overlap = diffs.get("heads", {}).get("head-overlap")
    if overlap:
        values = [v for row in overlap["jaccard"] for v in row if v is not None]
        found.append({"section": "heads", "topic": "head-overlap", "n": len(values), "p": None,
                      "text": f"Attention heads keep on average {_fmt(sum(values) / len(values))} "
                              "of their top word pairs (Jaccard overlap, 1 = unchanged)."})  # fmt: skip
    for test in diffs.get("heads", {}).get("verb-shares", {}).get("groups", []):
        if test["p_greater"] is None:
            continue  # too few verbs changed in this layer group to test
        found.append({"section": "heads", "topic": "verb-shares",
                      "n": test["instruction"]["n"] + test["general"]["n"],
                      "p": test["p_greater"],
                      "text": f"{layers_label(*test['layers']).capitalize()}: share of heads "
                              f"gaining instruction verbs {_fmt(test['instruction']['mean'])} vs "
                              f"general verbs {_fmt(test['general']['mean'])} (Welch, one-sided)."})  # fmt: skip
    rotation = diffs.get("ffn", {}).get("rotation", {}).get("summary")
    if rotation and rotation.get("layers"):
        found.append({"section": "ffn", "topic": "rotation", "n": rotation["layers"], "p": None,
                      "text": f"FFN principal components rotated by {_fmt(rotation['mean_angle_deg'])}° "
                              f"on average (subspace overlap {_fmt(rotation['mean_overlap'])})."})  # fmt: skip
    model = diffs.get("model", {})
    if "per_prompt" in model.get("kl", {}):
        found.append({"section": "model", "topic": "kl", "n": len(model["kl"]["per_prompt"]),
                      "p": None,
                      "text": f"Mean next-token KL(tuned ‖ base) over the prompts: "
                              f"{_fmt(model['kl']['mean'])} nats."})  # fmt: skip
    if "weights" in model:
        per_layer = model["weights"]["per_layer"]
        found.append({"section": "model", "topic": "weights", "n": len(per_layer), "p": None,
                      "text": f"Mean relative weight change per layer: "
                              f"{_fmt(sum(per_layer) / len(per_layer))}."})  # fmt: skip
    return found


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _json_safe(data: Any) -> Any:
    """JSON has no NaN or infinity: undefined numbers become null."""
    if isinstance(data, dict):
        return {key: _json_safe(value) for key, value in data.items()}
    if isinstance(data, list | tuple):
        return [_json_safe(value) for value in data]
    if isinstance(data, float) and not math.isfinite(data):
        return None
    return data


def _write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_json_safe(data), indent=1, allow_nan=False))
