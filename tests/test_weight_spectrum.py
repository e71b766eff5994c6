"""Weight-delta spectrum: equals a full float64 SVD done by hand, finds a planted rank-2 change
on its matrix only, reads a model with itself as ΔW = 0 (rank 0, no NaN), takes a LoRA
adapter's factors when the tuned subject offers them, and is reported by `compare`."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import scipy.linalg
import torch
from tiny import tiny_model, tiny_tokenizer

from interpret_shift import demo
from interpret_shift.core.method import SectionContext
from interpret_shift.core.pair import Pair
from interpret_shift.core.prompts import read_prompts
from interpret_shift.core.subject import Subject, load_subject
from interpret_shift.errors import InputError
from interpret_shift.methods.weight_spectrum.claims import spectrum_claims
from interpret_shift.methods.weight_spectrum.explainer import WeightSpectrum
from interpret_shift.methods.weight_spectrum.metrics import spectrum, words
from interpret_shift.methods.weight_spectrum.section import SECTIONS
from interpret_shift.pipeline import compare
from interpret_shift.plugins.registry import load_registry

MODULES = {
    "attn.q": "self_attn.q_proj",
    "attn.k": "self_attn.k_proj",
    "attn.v": "self_attn.v_proj",
    "attn.out": "self_attn.o_proj",
    "mlp.gate": "mlp.gate_proj",
    "mlp.up": "mlp.up_proj",
    "mlp.down": "mlp.down_proj",
}


def _weight(model, layer, matrix):
    return model.model.layers[layer].get_submodule(MODULES[matrix]).weight


def _subject(model, label):
    return Subject.from_model(model, tiny_tokenizer(), source=label)


def _run(pair, **options):
    explainer = WeightSpectrum(**options)
    return dict(explainer.explain(pair, explainer.items(pair), []))


def _rank2(shape, seed):
    generator = torch.Generator().manual_seed(seed)
    b = torch.randn(shape[0], 2, generator=generator)
    a = torch.randn(2, shape[1], generator=generator)
    return b, a


@pytest.fixture(scope="module")
def base():
    return tiny_model("llama", seed=0)


def test_every_number_equals_a_full_svd_by_hand(base):
    tuned = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for parameter in tuned.model.layers.parameters():
            if parameter.ndim == 2:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)
    records = _run(Pair(_subject(base, "b"), _subject(tuned, "t")), svd="exact", directions=3)
    tokenizer = tiny_tokenizer()  # rows past its tokens are no words: left out
    unembed = torch.nn.functional.normalize(tuned.lm_head.weight[: len(tokenizer)].double(), dim=1)
    for layer in range(2):
        record = records[f"layer.{layer}"]
        assert record.meta["matrices"] == list(MODULES)
        for i, matrix in enumerate(MODULES):
            w = _weight(base, layer, matrix).double()
            delta = _weight(tuned, layer, matrix).double() - w
            u, s, vt = torch.linalg.svd(delta, full_matrices=False)
            energy = (s**2).sum()
            cumulative = torch.cumsum(s**2, 0) / energy
            ranks = [int((cumulative < f).sum()) + 1 for f in (0.5, 0.9, 0.99)]
            assert record.arrays["energy_rank"][i].tolist() == ranks
            assert record.arrays["stable_rank"][i] == pytest.approx(
                float(energy / s[0] ** 2), rel=1e-4
            )
            assert record.arrays["relative_norm"][i] == pytest.approx(
                float(delta.norm() / w.norm()), rel=1e-5
            )
            np.testing.assert_allclose(record.arrays["singular_values"][i, : len(s)],
                                       s.numpy(), rtol=1e-4, atol=1e-6)  # fmt: skip
            uw, _, vwt = torch.linalg.svd(w, full_matrices=False)
            out = np.degrees(scipy.linalg.subspace_angles(u[:, :3].numpy(), uw[:, :3].numpy()))
            inp = np.degrees(scipy.linalg.subspace_angles(vt[:3].T.numpy(), vwt[:3].T.numpy()))
            np.testing.assert_allclose(np.sort(record.arrays["angles_out"][i]), np.sort(out),
                                       atol=0.05)  # fmt: skip
            np.testing.assert_allclose(np.sort(record.arrays["angles_in"][i]), np.sort(inp),
                                       atol=0.05)  # fmt: skip
            if matrix in ("attn.out", "mlp.down"):
                for j, written in enumerate(record.meta["words"][matrix]):
                    direction = u[:, j] * torch.sign(u[u[:, j].abs().argmax(), j])
                    scores = unembed @ direction
                    top = scores.topk(8).indices.tolist()
                    assert written["promoted"] == tokenizer.batch_decode([[t] for t in top])
                    assert written["sigma"] == pytest.approx(float(s[j]), rel=1e-4)


def test_a_planted_rank_two_change_is_found_on_its_matrix_only(base):
    tuned = copy.deepcopy(base)
    with torch.no_grad():
        weight = _weight(tuned, 1, "mlp.up")
        b, a = _rank2(weight.shape, seed=5)
        weight.add_(b @ a * 0.1)
    pair = Pair(_subject(base, "b"), _subject(tuned, "t"))
    for options in ({"svd": "exact"}, {"svd": "randomized", "keep_values": 6}):
        records = _run(pair, **options)
        for layer in range(2):
            ranks = records[f"layer.{layer}"].arrays["energy_rank"]
            planted = layer == 1
            for i, matrix in enumerate(MODULES):
                expected = 2 if planted and matrix == "mlp.up" else 0
                assert ranks[i, 2] == expected, (options, layer, matrix)
                assert not np.isnan(ranks[i]).any()
        up = list(MODULES).index("mlp.up")
        assert 1 <= records["layer.1"].arrays["stable_rank"][up] <= 2
        assert records["layer.1"].arrays["numerical_rank"][up] == 2
        assert records["layer.1"].meta["methods"][up] == options["svd"]
    diff = spectrum(records, None)
    assert diff["largest"] == {"layer": 1, "matrix": "mlp.up",
                               "relative_norm": pytest.approx(diff["largest"]["relative_norm"])}  # fmt: skip


def test_a_model_with_itself_is_zero_with_rank_zero(base):
    subject = _subject(base, "b")
    records = _run(Pair(subject, subject))
    for record in records.values():
        for name in ("energy_rank", "stable_rank", "relative_norm", "frobenius", "sigma_max"):
            assert not np.isnan(record.arrays[name]).any(), name
            assert (record.arrays[name] == 0).all(), name
        assert (record.arrays["numerical_rank"] == 0).all()
        assert all(directions == [] for directions in record.meta["words"].values())
    diff = spectrum(records, None)
    assert diff["identical"] and diff["median_rank_90"] == 0
    (claim,) = spectrum_claims({"spectrum": diff})
    assert claim.extra["identical"] and "ΔW = 0" in claim.text
    context = SectionContext("weight-spectrum", "weight_spectrum", {}, ("base", "base"))
    page = SECTIONS[0].build({"spectrum": diff, "words": words(records, None)}, context)
    assert "<p>ΔW = 0 everywhere" in page and "&lt;p&gt;" not in page


def test_a_lora_adapters_factors_give_the_exact_spectrum(base):
    """The tuned subject's weights are left unmerged, so only the factors carry the change."""
    factors = {("attn.v", 0): _rank2(_weight(base, 0, "attn.v").shape, seed=7)}
    factors[("mlp.up", 1)] = (torch.randn(48, 4), torch.randn(4, 32))
    tuned = _subject(copy.deepcopy(base), "t")
    tuned.delta_factors = lambda role, layer: factors.get((role, layer))
    records = _run(Pair(_subject(base, "b"), tuned), svd="exact")
    for (role, layer), (b, a) in factors.items():
        record = records[f"layer.{layer}"]
        i = record.meta["roles"].index(role)
        assert record.meta["methods"][i] == "adapter factors"
        assert record.meta["source"] == "adapter factors"
        s = torch.linalg.svdvals((b @ a).double())
        rank = b.shape[1]
        np.testing.assert_allclose(record.arrays["singular_values"][i, :rank], s[:rank].numpy(),
                                   rtol=1e-5)  # fmt: skip
        assert (record.arrays["singular_values"][i, rank:] == 0).all()
        assert record.arrays["numerical_rank"][i] == rank
        w = _weight(base, layer, role)
        assert record.arrays["relative_norm"][i] == pytest.approx(
            float((b @ a).norm() / w.norm()), rel=1e-5
        )
    others = [m for m, r in zip(records["layer.1"].meta["methods"], records["layer.1"].meta["roles"])
              if r != "mlp.up"]  # fmt: skip
    assert set(others) == {"exact"}
    assert records["layer.1"].arrays["energy_rank"][0].tolist() == [0, 0, 0]  # attn.q untouched


def test_factors_of_the_wrong_shape_are_refused(base):
    tuned = _subject(copy.deepcopy(base), "t")
    tuned.delta_factors = lambda role, layer: (torch.zeros(5, 2), torch.zeros(2, 5))
    explainer = WeightSpectrum()
    pair = Pair(_subject(base, "b"), tuned)
    with pytest.raises(InputError, match="do not multiply"):
        list(explainer.explain(pair, explainer.items(pair), []))
    with pytest.raises(InputError, match="layer 7"):
        WeightSpectrum(layers=[7]).items(pair)


@pytest.mark.xdist_group("demo")
def test_compare_on_the_demo_pair_writes_the_diff_and_the_section(tmp_path):
    registry = load_registry(autoload=False, strict=True)
    base, tuned = load_subject("demo:base"), load_subject("demo:tuned")
    prompts = read_prompts(demo.prompts_path())[:1]
    compare(base, tuned, prompts, tmp_path, registry=registry, explainers=["weight-spectrum"])
    assert len(list((tmp_path / "records" / "weight-spectrum" / "pair").glob("*.json"))) == 4
    diff = json.loads((tmp_path / "diff" / "weight-spectrum.json").read_text())
    data = diff["spectrum"]
    assert data["layers"] == [0, 1, 2, 3] and len(data["matrices"]) == 7
    assert not data["identical"] and data["median_rank_90"] > 0
    assert diff["words"]["rows"] and diff["words"]["rows"][0]["directions"]
    page = (tmp_path / "report.html").read_text()
    assert 'id="weight-spectrum"' in page and "data:image/png;base64," in page
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert any(c["section"] == "weight-spectrum" for c in summary["claims"])
