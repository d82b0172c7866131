"""bf16 autocast against fp32 on the CPU: tokens/s and val loss of the same run, alternated in one benchmark.

The decision it informs: `--precision auto` picks bf16 on the CPU only if it is faster at equal loss.
Run: uv run python bench/bench_cpu_precision.py [--steps 300] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from bench_nanogpt_cpu import SHAKESPEARE, nanogpt_cpu_config

from smoltui.engine.runs import launch_run


def measure(precision: str, steps: int, workspace: Path) -> tuple[float, float]:
    handle = launch_run(nanogpt_cpu_config(steps, precision), workspace)
    if handle.wait() != "finished":
        sys.exit(f"the {precision} run did not finish: {handle.log_path()}")
    rates = [rate for step, rate in handle.metrics_since("tokens_per_s") if step > 10]
    return statistics.median(rates), handle.metrics_since("val/loss")[-1][1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if not SHAKESPEARE.exists():
        print(f"skipped: {SHAKESPEARE} is absent")
        return
    best = {"fp32": 0.0, "bf16": 0.0}
    val = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for precision in ("fp32", "bf16"):
                rate, val[precision] = measure(precision, args.steps, Path(folder))
                best[precision] = max(best[precision], rate)
    print(f"nanoGPT CPU config, {args.steps} steps, best of {args.repeats} alternated runs")
    print(f"fp32  {best['fp32']:9,.0f} tokens/s  val loss {val['fp32']:.4f}  (reference)")
    print(f"bf16  {best['bf16']:9,.0f} tokens/s  val loss {val['bf16']:.4f}  ratio {best['bf16'] / best['fp32']:.3f}")


if __name__ == "__main__":
    main()
