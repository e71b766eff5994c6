"""Start-up time of the command line: median wall time of `interpret-shift --help` and of
`interpret-shift plugins` (which loads every plugin, so torch too), each in a new process."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 7


def median_seconds(args: list[str]) -> float:
    command = [sys.executable, "-m", "interpret_shift.cli", *args]
    subprocess.run(command, capture_output=True, check=True)  # warm the file cache once
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(command, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    baseline = median_seconds_python()
    for args in (["--help"], ["plugins"]):
        seconds = median_seconds(args)
        print(f"interpret-shift {' '.join(args):8s} median {seconds:.2f} s "
              f"({seconds / baseline:.1f}x a bare `python -c pass`, {baseline:.2f} s)")  # fmt: skip


def median_seconds_python() -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":
    main()
