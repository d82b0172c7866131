"""How long each workbench operation takes on SmolLM2-135M, with and without its before/after evaluation.

In a fresh temporary workspace whose dataset is ../shared/data/tinyshakespeare.txt: import the bundled
SmolLM2-135M-Instruct (from its cached conversion), edit (the MLPs of layers 10-19 scaled by 0.5), prune (30%
unstructured, 10% of the heads), quantize (8 and 4 bits), reinit, and export; each run once with the evaluation
(perplexity on `--eval-tokens` validation tokens, a 32-token greedy sample and its speed) and once with
`evaluate=False` (parameters and bytes only). Every timing covers the whole
`run_operation`: loading the current model, the operation, the measurements and the atomic save with its fsync.
An operation's "before" comes from its parent's recorded "after" (measured the same way), so one evaluation runs
per operation; the first, untimed import tokenises the dataset into the workspace cache.

Targets (issue 11): under 30 s with the evaluation of 16k tokens, under 5 s without.

Run: uv run python bench/bench_operations.py [--eval-tokens 16384] [--threads N]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATASET = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"
MODEL = "smollm2-135m-instruct"
OPERATIONS = (
    ("import", {"source": MODEL}),
    ("edit", {"pattern": r"layers\.1[0-9]\.mlp", "scale": 0.5}),
    ("prune", {"amount": 0.3}),  # unstructured, every linear weight
    ("prune", {"amount": 0.1, "kind": "heads"}),
    ("quantize", {"bits": 8}),
    ("quantize", {"bits": 4}),
    ("reinit", {}),
    ("export", None),  # its directory is made per run
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval-tokens", type=int, default=16384)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()

    import torch
    from transformers.utils import logging as hf_logging

    from smoltui.engine.operations import run_operation
    from smoltui.engine.workbench import Workbench

    hf_logging.disable_progress_bar()
    if args.threads:
        torch.set_num_threads(args.threads)
    if not DATASET.exists():
        raise SystemExit(f"{DATASET} is absent")
    print(f"torch threads: {torch.get_num_threads()}, eval tokens: {args.eval_tokens:,}, dataset: {DATASET.name}")
    with tempfile.TemporaryDirectory(prefix="smoltui-bench-ops-") as scratch:
        workbench = Workbench.open(Path(scratch) / "ws")
        workbench.set("dataset", str(DATASET))
        workbench.set("eval_tokens", args.eval_tokens)
        run_operation(workbench, "import", {"source": MODEL})  # warm-up: conversion cache, token cache
        print(f"{'operation':<30} {'with evaluation':>12} {'without':>10}   perplexity after")
        for name, params in OPERATIONS:
            seconds = {}
            perplexity = None
            for evaluate in (True, False):
                given = params if params is not None else {"directory": str(Path(scratch) / f"export-{evaluate}")}
                started = time.perf_counter()
                step = run_operation(workbench, name, given, evaluate=evaluate)
                seconds[evaluate] = time.perf_counter() - started
                if evaluate and step.effect:
                    perplexity = step.effect["after"]["perplexity"]
                workbench.checkout(1)  # every operation starts from the first import, evaluated
            shown = "-" if perplexity is None else f"{perplexity:,.2f}"
            label = " ".join([name, *(str(value) for key, value in (params or {}).items() if key != "pattern")])
            print(f"{label:<30} {seconds[True]:>10.2f} s {seconds[False]:>8.2f} s   {shown}")
        workbench.close()


if __name__ == "__main__":
    main()
