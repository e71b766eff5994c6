"""Several processes on one run: disjoint shares, identical records, resumption after a rank dies.

The torchrun tests start real process groups (gloo, CPU, one thread per rank) on the demo
pair with four prompts and the three built-in explainers (saliency shares prompts, heads and
FFN share layers), and compare every record with a single-process run of the same command.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from tiny import tiny_model, tiny_tokenizer

from interpret_shift import demo
from interpret_shift.cli import main
from interpret_shift.core import distributed
from interpret_shift.core.explainer import Explainer, run_explainer
from interpret_shift.core.prompts import PromptRecord
from interpret_shift.core.records import Explanation, RecordStore, record_files
from interpret_shift.core.subject import Subject
from interpret_shift.errors import InputError

pytestmark = pytest.mark.xdist_group("distributed")

TESTS = Path(__file__).parent
EXPLAINERS = ("saliency", "heads", "ffn")
#: "saliency · base: rank 1 of 2 computed 2 of its 2 items, reused 0"
COUNT = re.compile(r"^(\S+) · (\S+): rank (\d+) of (\d+) computed (\d+) of its (\d+) items, "
                   r"reused (\d+)$", re.M)  # fmt: skip


# -- the share rule and the environment -------------------------------------------------
def test_shares_are_disjoint_complete_and_fixed_by_the_order_of_the_keys():
    for n in range(0, 11):
        keys = [f"k{i}" for i in range(n)]
        for world in range(1, 5):
            shares = [distributed.shard_keys(keys, rank, world) for rank in range(world)]
            owner = {}
            for rank, share in enumerate(shares):
                for key in share:
                    assert key not in owner  # disjoint
                    owner[key] = rank
            assert set(owner) == set(keys)  # complete
            # position i goes to rank i mod world, written out independently
            assert all(owner[f"k{i}"] == i % world for i in range(n))
            sizes = [len(share) for share in shares]
            assert max(sizes, default=0) - min(sizes, default=0) <= 1  # balanced
    with pytest.raises(InputError):
        distributed.shard_keys(["a"], 2, 2)


def test_the_environment_torchrun_sets_is_read_and_checked(monkeypatch):
    assert distributed.from_environment({}) is None
    assert distributed.from_environment({"WORLD_SIZE": "1", "RANK": "0"}) is None
    ranks = distributed.from_environment({"WORLD_SIZE": "4", "RANK": "3", "LOCAL_RANK": "1"})
    assert (ranks.rank, ranks.world, ranks.local_rank) == (3, 4, 1)
    assert ranks.shard == (3, 4) and not ranks.is_main
    if not torch.cuda.is_available():
        assert str(ranks.device) == "cpu" and ranks.backend == "gloo"
    for bad in ({"WORLD_SIZE": "2", "RANK": "x"}, {"WORLD_SIZE": "2", "RANK": "2"},
                {"WORLD_SIZE": "2"}):  # fmt: skip
        with pytest.raises(InputError):
            distributed.from_environment(bad)
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "90")
    assert distributed.timeout() == 90.0
    monkeypatch.setenv(distributed.TIMEOUT_VARIABLE, "soon")
    with pytest.raises(InputError):
        distributed.timeout()
    monkeypatch.delenv(distributed.TIMEOUT_VARIABLE)
    assert distributed.timeout() == distributed.DEFAULT_TIMEOUT
    assert distributed.current() is None  # no process group in this process


def test_a_broken_torchrun_environment_is_a_clear_error_before_any_model_loads(
    monkeypatch, tmp_path, capsys
):
    arguments = ["compare", "--base", "demo:base", "--tuned", "demo:tuned", "--out",
                 str(tmp_path / "out"), "--explainers", "heads"]  # fmt: skip
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "two")
    assert main(arguments) == 2
    assert "RANK='two' is not a whole number" in capsys.readouterr().err
    monkeypatch.setenv("RANK", "1")  # but no MASTER_ADDR: torchrun did not start it
    monkeypatch.delenv("MASTER_ADDR", raising=False)
    assert main(arguments) == 2
    assert "could not join the process group" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and distributed.current() is None


# -- run_explainer with a share, in one process -------------------------------------------
class Lengths(Explainer):
    """Per prompt: the code points of its text (anything cheap and exactly checkable)."""

    name = "lengths"
    data_kind = "unit_scalars"
    needs = frozenset({"prompts"})
    calls: list[str] = []

    @dataclasses.dataclass
    class Config:
        pass

    def items(self, subject, prompts):
        return [p.id for p in prompts]

    def explain(self, subject, keys, prompts):
        by_id = {p.id: p for p in prompts}
        for key in keys:
            Lengths.calls.append(key)
            codes = np.array([ord(c) for c in by_id[key].prompt], dtype=np.float32)
            yield key, Explanation(self.name, self.data_kind, {"values": codes}, {})


def test_each_share_computes_its_keys_only_and_a_full_pass_then_reuses_them(tmp_path):
    subject = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="tiny-llama")
    prompts = [PromptRecord(f"p{i}", f"prompt number {i}") for i in range(7)]
    store = RecordStore(tmp_path / "records")
    # a damaged record in rank 1's share: rank 0 must not even read it
    store.folder.mkdir(parents=True)
    record_files(store.path("p1"))[0].write_text("{not json", encoding="utf-8")
    notices: list[str] = []
    Lengths.calls = []
    mine = run_explainer(Lengths(), subject, prompts, store, notify=notices.append, shard=(0, 3))
    assert Lengths.calls == ["p0", "p3", "p6"] and list(mine) == ["p0", "p3", "p6"]
    assert notices == ["lengths · tiny-llama: rank 0 of 3 computed 3 of its 3 items, reused 0"]
    for rank in (1, 2):
        Lengths.calls = []
        run_explainer(Lengths(), subject, prompts, store, notify=lambda line: None,
                      shard=(rank, 3))  # fmt: skip
        assert Lengths.calls == [f"p{i}" for i in range(rank, 7, 3)]
    Lengths.calls, notices = [], []
    everything = run_explainer(Lengths(), subject, prompts, store, notify=notices.append)
    assert Lengths.calls == [] and notices == []  # the full pass computes nothing
    for prompt in prompts:
        expected = [ord(c) for c in prompt.prompt]
        assert everything[prompt.id].arrays["values"].tolist() == expected


def test_a_share_recomputes_its_own_damaged_record_with_a_notice(tmp_path):
    subject = Subject.from_model(tiny_model("llama"), tiny_tokenizer(), source="tiny-llama")
    prompts = [PromptRecord(f"p{i}", f"prompt {i}") for i in range(4)]
    store = RecordStore(tmp_path / "records")
    run_explainer(Lengths(), subject, prompts, store, notify=lambda line: None)
    record_files(store.path("p1"))[0].write_text("{not json", encoding="utf-8")
    notices: list[str] = []
    Lengths.calls = []
    run_explainer(Lengths(), subject, prompts, store, notify=notices.append, shard=(1, 2))
    assert Lengths.calls == ["p1"]
    assert notices[0].startswith("lengths · tiny-llama · p1: record unreadable")
    assert notices[1] == "lengths · tiny-llama: rank 1 of 2 computed 1 of its 2 items, reused 1"


# -- torchrun on the demo pair ----------------------------------------------------------
@pytest.fixture(scope="module")
def prompt_file(tmp_path_factory) -> Path:
    """Four demo prompts from across the set (several groups)."""
    lines = demo.prompts_path().read_text(encoding="utf-8").splitlines()
    path = tmp_path_factory.mktemp("prompts") / "four.jsonl"
    path.write_text("\n".join(lines[::21][:4]) + "\n", encoding="utf-8")
    return path


def _arguments(prompts: Path, out: Path) -> list[str]:
    return ["compare", "--base", "demo:base", "--tuned", "demo:tuned", "--prompts", str(prompts),
            "--out", str(out), "--explainers", ",".join(EXPLAINERS)]  # fmt: skip


def run(
    command: list[str], timeout: float = 300, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """A command in the environment of a torchrun rank: one CPU thread (the numbers of BLAS
    reductions depend on the thread count, so every process here uses one), no GPU."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}  # fmt: skip
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1",
               CUDA_VISIBLE_DEVICES="", **{distributed.TIMEOUT_VARIABLE: "120"})  # fmt: skip
    env.update(extra_env or {})
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


def one_process(arguments: list[str]) -> subprocess.CompletedProcess:
    return run([sys.executable, "-m", "interpret_shift", *arguments])


def torchrun(target: list[str], arguments: list[str]) -> subprocess.CompletedProcess:
    """``python -m torch.distributed.run --nproc-per-node 2 TARGET ARGUMENTS`` (gloo, CPU)."""
    return run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2", *target, *arguments])  # fmt: skip


@pytest.fixture(scope="module")
def single(prompt_file, tmp_path_factory) -> Path:
    """The same comparison in one process, no torchrun."""
    out = tmp_path_factory.mktemp("single")
    done = one_process(_arguments(prompt_file, out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert not COUNT.search(done.stderr)  # no shares without torchrun
    return out


def snapshot(out: Path) -> dict[str, tuple[dict, dict[str, np.ndarray]]]:
    """Every record under out/records: its JSON (all of it: there are no timing fields) and
    its arrays."""
    records = {}
    for path in sorted((out / "records").rglob("*.json")):
        header = json.loads(path.read_text(encoding="utf-8"))
        records[str(path.relative_to(out))] = (header, load_file(path.with_suffix(".safetensors")))
    return records


def assert_same_records(a: Path, b: Path) -> None:
    left, right = snapshot(a), snapshot(b)
    assert sorted(left) == sorted(right)
    for name in left:
        assert left[name][0] == right[name][0], name
        assert left[name][1].keys() == right[name][1].keys(), name
        for array in left[name][1]:
            assert np.array_equal(left[name][1][array], right[name][1][array]), (name, array)


def n_items(prompt_file: Path) -> dict[str, int]:
    """Items per explainer, counted here: prompts, and layers from the demo config."""
    n_prompts = len(prompt_file.read_text(encoding="utf-8").splitlines())
    config = json.loads((demo.model_dir("base") / "config.json").read_text(encoding="utf-8"))
    return {"saliency": n_prompts, "heads": config["num_hidden_layers"],
            "ffn": config["num_hidden_layers"]}  # fmt: skip


def test_two_ranks_write_the_records_of_one_process_once_and_one_report(
    prompt_file, single, tmp_path
):
    out = tmp_path / "two"
    done = torchrun(["-m", "interpret_shift"], _arguments(prompt_file, out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert_same_records(single, out)
    # every item computed by exactly one rank: each rank its i mod 2 share, all of it
    counts = {}
    for name, side, rank, world, computed, share, reused in COUNT.findall(done.stderr):
        assert (int(world), int(reused), computed) == (2, 0, share)
        assert (name, side, rank) not in counts
        counts[name, side, rank] = int(computed)
    for name, n in n_items(prompt_file).items():
        for side in ("base", "tuned"):
            assert [counts[name, side, str(rank)] for rank in (0, 1)] == [(n + 1) // 2, n // 2]
    assert "recomputing" not in done.stderr  # rank 0's full pass reused every record
    # one report and one summary, from rank 0
    assert (out / "report.html").exists() and (out / "summary.json").exists()
    assert done.stdout.count("Summary") == 1 and done.stderr.count("report: ") == 1
    single_summary = json.loads((single / "summary.json").read_text(encoding="utf-8"))
    two_summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert two_summary["claims"] == single_summary["claims"]


def test_a_rank_that_dies_leaves_finished_records_and_one_process_resumes(
    prompt_file, single, tmp_path
):
    out = tmp_path / "dying"
    died = torchrun([str(TESTS / "dying_rank.py")], _arguments(prompt_file, out))
    assert died.returncode != 0 and "rank 1 wrote" in died.stderr, died.stderr[-3000:]
    assert not (out / "summary.json").exists() and not (out / "report.html").exists()
    finished = {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")}
    assert finished  # at least rank 1's first record
    n_records = 2 * sum(n_items(prompt_file).values())
    assert len(finished) < n_records

    resumed = one_process(_arguments(prompt_file, out))  # no torchrun
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "recomputing" not in resumed.stderr
    after = {p: p.stat().st_mtime_ns for p in (out / "records").rglob("*.json")}
    assert len(after) == n_records
    assert all(after[path] == stamp for path, stamp in finished.items())  # none recomputed
    assert_same_records(single, out)
    assert (out / "report.html").exists()


STALLED = """
import sys, time
from interpret_shift.core import distributed
from interpret_shift.errors import InterpretShiftError

with distributed.session() as ranks:
    if ranks.rank == 1:
        time.sleep(60)  # stalls (alive, never at the barrier)
        sys.exit(0)
    try:
        distributed.barrier(ranks, "the end of the shares")
    except InterpretShiftError as error:
        print("gave up:", error.what, file=sys.stderr, flush=True)
        sys.exit(2)
"""


def test_a_rank_that_stalls_makes_the_barrier_give_up_instead_of_hanging(tmp_path):
    script = tmp_path / "stalled.py"
    script.write_text(STALLED, encoding="utf-8")
    env_timeout = {distributed.TIMEOUT_VARIABLE: "3"}
    started = time.monotonic()
    done = run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc-per-node", "2", str(script)], extra_env=env_timeout)  # fmt: skip
    assert done.returncode != 0
    assert "gave up: Rank 0 of 2 gave up waiting at the end of the shares" in done.stderr
    assert "Ranks 1 failed to pass monitoredBarrier" in done.stderr  # names the missing rank
    assert time.monotonic() - started < 55  # well before rank 1 would wake up
