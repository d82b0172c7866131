"""Time of each surgery operation on SmolLM2-135M, and decoding speed after quantization against fp32, in one run.

Each operation runs on its own copy of the bundled SmolLM2-135M-Instruct (fp32, CPU) and is timed alone, without
saving or measuring perplexity (the issue's target: under 5 s). Then smoltui's decoder writes N greedy tokens
after a chat prompt with the fp32 model and with its 8-bit and 4-bit versions, alternating, median of the
repeats. The quantized weights are stored dequantized in fp32 (see engine/quantization.py), so the same kernels
run: any difference in speed is noise, which is the point of measuring it. Figures taken on a shared machine
move a lot; compare the ratios of one run.

Run: uv run python bench/bench_surgery_ops.py [--new-tokens 64] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch

from smoltui.engine.chat import chat_prompt
from smoltui.engine.decoder import DecodeFinished, decode
from smoltui.engine.models import LoadedModel, load_model
from smoltui.engine.pruning import prune
from smoltui.engine.quantization import quantize
from smoltui.engine.tweaks import tweaked, tweaked_copy

QUESTION = "Write a short story about a fox who learns to read, in five paragraphs."
TWEAK = {r"mlp\.down_proj": 0.001}


def apply_and_restore_tweak(loaded: LoadedModel) -> None:
    with tweaked(loaded.model, TWEAK):
        pass


OPERATIONS: dict[str, Callable[[LoadedModel], object]] = {
    "prune unstructured 30%": lambda loaded: prune(loaded, amount=0.3),
    "prune heads 10%": lambda loaded: prune(loaded, amount=0.1, kind="heads"),
    "prune layers 10%": lambda loaded: prune(loaded, amount=0.1, kind="layers"),
    "quantize 8 bits": lambda loaded: quantize(loaded, bits=8),
    "quantize 4 bits": lambda loaded: quantize(loaded, bits=4),
    "tweak: apply and restore": apply_and_restore_tweak,
    "tweak: tweaked copy": lambda loaded: tweaked_copy(loaded, TWEAK),
}


def fresh(base: LoadedModel) -> LoadedModel:
    return replace(base, model=copy.deepcopy(base.model))


def decode_rate(loaded: LoadedModel, ids: list[int], new_tokens: int) -> float:
    events = decode(loaded.model, loaded.tokenizer, ids, max_new_tokens=new_tokens, stop_at_eos=False, top_n=0)
    finished = [event for event in events if isinstance(event, DecodeFinished)][-1]
    return finished.tokens_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    base = load_model("smollm2-135m-instruct", device="cpu", dtype="fp32")
    results: dict[str, float] = {}
    print("\noperation alone (target < 5 s)")
    for name, operation in OPERATIONS.items():
        loaded = fresh(base)
        started = time.perf_counter()
        operation(loaded)
        results[name] = time.perf_counter() - started
        print(f"  {name:28} {results[name]:6.2f} s")

    ids = chat_prompt(base.tokenizer, [{"role": "user", "content": QUESTION}]).ids
    models = {"fp32": base}
    for bits in (8, 4):
        models[f"int{bits} (dequantized)"] = quantize(fresh(base), bits=bits).loaded
    rates: dict[str, list[float]] = {name: [] for name in models}
    for _ in range(args.repeats):
        for name, loaded in models.items():
            rates[name].append(decode_rate(loaded, ids, args.new_tokens))
    print(f"\ndecoding {args.new_tokens} greedy tokens, median of {args.repeats} (alternated)")
    for name, values in rates.items():
        results[f"decode tokens/s {name}"] = statistics.median(values)
        print(f"  {name:28} {statistics.median(values):6.1f} tokens/s")
    print("\n" + json.dumps({name: round(value, 3) for name, value in results.items()}))


if __name__ == "__main__":
    main()
