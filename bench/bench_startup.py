"""How long `smoltui --version` and `smoltui --help` take, against a bare `python -c pass` in the same run.

Run: uv run python bench/bench_startup.py   (target: each under 0.3 s)
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 7


def median_seconds(argv: list[str]) -> float:
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    bare = median_seconds([sys.executable, "-c", "pass"])
    print(f"python -c pass        {bare * 1000:7.1f} ms  (reference)")
    for flag in ("--version", "--help"):
        took = median_seconds([sys.executable, "-m", "smoltui", flag])
        verdict = "ok" if took < 0.3 else "OVER the 0.3 s target"
        print(f"smoltui {flag:<13} {took * 1000:7.1f} ms  {took / bare:5.1f}x python start-up  {verdict}")


if __name__ == "__main__":
    main()
