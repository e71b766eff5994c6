"""`compare` on the demo pair with 2 CPU ranks (torchrun, gloo) vs 1 process.

Each process uses one CPU thread (OMP_NUM_THREADS=1, as torchrun sets it by default), so
the ratio measures the sharding alone; both include start-up (each rank imports torch and
loads both models) and rank 0's diff, model metrics and report after the barrier. Runs
alternate (1, 2, 1, 2, ...) so that a change of machine load hits both; the speed-up is the
ratio of the medians. The records of a 1-process and a 2-rank run are compared bitwise.

On a machine busy with other work the wall-time ratio means little (two processes simply
get a larger share of the cores), so the CPU seconds of every run (all its processes) are
printed too: their ratio is the work the second rank adds (start-up, model loading).

    python benchmarks/distributed.py [--prompts demo] [--repeats 3] [--explainers ...]

Last line: ``distributed_speedup_2_ranks: X``. Needs 2 free cores to mean anything.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file


def command(ranks: int, prompts: str, explainers: str, out: Path) -> list[str]:
    arguments = ["compare", "--base", "demo:base", "--tuned", "demo:tuned", "--prompts",
                 prompts, "--explainers", explainers, "--out", str(out)]  # fmt: skip
    if ranks == 1:
        return [sys.executable, "-m", "interpret_shift", *arguments]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            "--nproc-per-node", str(ranks), "-m", "interpret_shift", *arguments]  # fmt: skip


def timed(ranks: int, prompts: str, explainers: str, out: Path) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, every process of the run)."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE", HF_HUB_OFFLINE="1")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command(ranks, prompts, explainers, out), env=env,
                          capture_output=True, text=True)  # fmt: skip
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{ranks} rank(s) failed:\n{done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def records(out: Path) -> dict[str, tuple[dict, dict]]:
    found = {}
    for path in sorted((out / "records").rglob("*.json")):
        header = json.loads(path.read_text(encoding="utf-8"))
        found[str(path.relative_to(out))] = (header, load_file(path.with_suffix(".safetensors")))
    return found


def identical(a: Path, b: Path) -> bool:
    left, right = records(a), records(b)
    return sorted(left) == sorted(right) and all(
        left[name][0] == right[name][0]
        and left[name][1].keys() == right[name][1].keys()
        and all(np.array_equal(left[name][1][k], right[name][1][k]) for k in left[name][1])
        for name in left
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", default="demo")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--explainers", default="saliency,heads,ffn")
    args = parser.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    cpu: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as folder:
        for repeat in range(args.repeats):
            for ranks in (1, 2):
                out = Path(folder) / f"{ranks}-{repeat}"
                wall, used = timed(ranks, args.prompts, args.explainers, out)
                times[ranks].append(wall)
                cpu[ranks].append(used)
                print(f"run {repeat + 1}/{args.repeats}, {ranks} rank(s): {wall:.1f} s, "
                      f"{used:.1f} CPU s, load average {os.getloadavg()[0]:.1f}",
                      flush=True)  # fmt: skip
        same = identical(Path(folder) / "1-0", Path(folder) / "2-0")
        n_records = len(records(Path(folder) / "1-0"))
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(f"compare on the demo pair ({args.explainers}; prompts: {args.prompts}; "
          f"{n_records} records), median of {args.repeats}, one CPU thread per process")  # fmt: skip
    print(f"1 process: {one:.1f} s; 2 ranks: {two:.1f} s; cores: {os.cpu_count()}")
    cpu_one, cpu_two = statistics.median(cpu[1]), statistics.median(cpu[2])
    print(f"CPU seconds: 1 process {cpu_one:.1f}; 2 ranks {cpu_two:.1f} "
          f"(x{cpu_two / cpu_one:.2f} the work)")  # fmt: skip
    # two idle cores cannot finish CPU(2) seconds of work in less than CPU(2) / 2
    print(f"speed-up bound on 2 idle cores (2 x CPU(1) / CPU(2)): {2 * cpu_one / cpu_two:.2f}")
    print(f"records identical (1 process vs 2 ranks, bitwise): {same}")
    print(f"distributed_speedup_2_ranks: {one / two:.2f}")


if __name__ == "__main__":
    main()
