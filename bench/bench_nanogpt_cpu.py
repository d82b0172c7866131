"""nanoGPT's CPU example, trained as a smoltui run: val loss, wall time and tokens/s.

The config is the one nanoGPT's README gives for a CPU: 4 layers, 4 heads, 128 wide, context 64, batch 12,
lr 1e-3 decaying to 1e-4 over 2000 steps, dropout 0, on tinyshakespeare with a char tokenizer. nanoGPT reports
a val loss of about 1.88 for it; the target here is under 1.9. `--precision bf16` measures bf16 autocast.

Run: uv run python bench/bench_nanogpt_cpu.py [--steps 2000] [--precision fp32|bf16]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from smoltui.engine.config import TrainConfig
from smoltui.engine.runs import launch_run

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def nanogpt_cpu_config(steps: int, precision: str) -> TrainConfig:
    return TrainConfig(
        model="nano-char",
        corpus=str(SHAKESPEARE),
        model_overrides={"n_layer": 4, "n_head": 4, "n_embd": 128, "n_inner": 512, "context": 64},
        context=64,
        batch_size=12,
        max_steps=steps,
        lr=1e-3,
        min_lr=1e-4,
        warmup_steps=100,
        beta2=0.99,
        dropout=0.0,
        eval_every=max(1, steps // 4),
        eval_batches=20,
        sample_every=0,
        checkpoint_every=steps,
        precision=precision,
        device="cpu",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()
    if not SHAKESPEARE.exists():
        print(f"skipped: {SHAKESPEARE} is absent")
        return
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        handle = launch_run(nanogpt_cpu_config(args.steps, args.precision), Path(folder))
        status = handle.wait()
        wall = time.perf_counter() - started
        if status != "finished":
            sys.exit(f"the run ended {status}: {handle.log_path().read_text()[-2000:]}")
        val = handle.metrics_since("val/loss")
        rate = statistics.median(value for _, value in handle.metrics_since("tokens_per_s"))
        train = handle.metrics_since("train/loss")[-1][1]
    print(f"nanoGPT CPU config, {args.steps} steps, {args.precision}")
    print("val loss by step: " + ", ".join(f"{step}: {loss:.3f}" for step, loss in val))
    verdict = "ok" if val[-1][1] < 1.9 else "ABOVE the 1.9 target"
    print(f"final val loss {val[-1][1]:.4f} ({verdict}), final train loss {train:.4f}")
    print(f"wall time {wall:.1f} s (process start included), median {rate:,.0f} tokens/s")


if __name__ == "__main__":
    main()
