"""Training throughput of a smoltui run against a bare PyTorch loop, measured in the same run.

Same model (the `nano-char` preset unless told otherwise), batch, context, optimizer and precision. The run
logs every step, polls its commands and beats its heart; hooks are off, samples off, and no checkpoint falls
inside the measured steps, so the ratio shows what logging and control cost. Target: ratio >= 0.97.

Run: uv run python bench/bench_train_throughput.py [--steps 30] [--repeats 2] [--model nano-char] [--precision fp32]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from smoltui.engine.batches import RandomWindows
from smoltui.engine.config import TrainConfig
from smoltui.engine.data import read_corpus, tokenize_corpus
from smoltui.engine.models import load_model
from smoltui.engine.optim import build_optimizers, learning_rate, set_learning_rate
from smoltui.engine.runs import launch_run

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
WARMUP_STEPS = 5  # first steps pay for allocation and thread start-up; both sides skip them


def bare_loop_tokens_per_s(config: TrainConfig, workspace: Path, steps: int) -> float:
    """The loop a person would write by hand: batch, forward, loss, backward, clip, step. Nothing else."""
    torch.manual_seed(config.seed)
    loaded = load_model(config.model, device="cpu", dtype="fp32", seed=config.seed, workspace=workspace)
    model = loaded.model.train()
    corpus = read_corpus(config.corpus)
    tokenized = tokenize_corpus(corpus, loaded.tokenizer, cache_dir=workspace / "cache")
    batches = RandomWindows(tokenized.train, config.batch_size, config.context, seed=config.seed)
    optimizers = build_optimizers(model, config, model.get_output_embeddings(), "cpu")
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "bf16")
    durations = []
    for step in range(steps):
        start = time.perf_counter()
        set_learning_rate(optimizers, learning_rate(step, config))
        x, y = batches.next_batch()
        with autocast:
            logits = model(input_ids=x).logits  # (B, T, vocab)
            loss = F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        for optimizer in optimizers:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        durations.append(time.perf_counter() - start)
    return config.batch_size * config.context / statistics.median(durations[WARMUP_STEPS:])


def run_tokens_per_s(config: TrainConfig, workspace: Path) -> float:
    handle = launch_run(config, workspace)
    status = handle.wait()
    if status != "finished":
        sys.exit(f"the run ended {status}; see {handle.log_path()}")
    rates = [rate for step, rate in handle.metrics_since("tokens_per_s") if step > WARMUP_STEPS]
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=2, help="alternate bare and run this often; best of each")
    parser.add_argument("--model", default="nano-char")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    args = parser.parse_args()
    corpus = str(SHAKESPEARE) if SHAKESPEARE.exists() else "builtin:pydocs"
    config = TrainConfig(
        model=args.model,
        corpus=corpus,
        context=256,
        batch_size=16,
        max_steps=args.steps,
        warmup_steps=5,
        eval_every=10 * args.steps,
        sample_every=0,
        checkpoint_every=10 * args.steps,
        precision=args.precision,
        device="cpu",
    )
    with tempfile.TemporaryDirectory() as folder:
        workspace = Path(folder)
        bare, run = 0.0, 0.0
        for _ in range(args.repeats):  # alternating spreads the machine's noise over both sides
            bare = max(bare, bare_loop_tokens_per_s(config, workspace, args.steps))
            run = max(run, run_tokens_per_s(config, workspace))
    ratio = run / bare
    print(
        f"model {args.model}, batch {config.batch_size} x context {config.context}, {args.precision}, "
        f"{args.steps} steps, best of {args.repeats}, {torch.get_num_threads()} threads"
    )
    print(f"bare PyTorch loop   {bare:10,.0f} tokens/s  (reference)")
    print(f"smoltui run         {run:10,.0f} tokens/s  ratio {ratio:.3f}  {'ok' if ratio >= 0.97 else 'BELOW 0.97'}")


if __name__ == "__main__":
    main()
