"""Benchmark: tokenising tinyshakespeare with `char` into a fresh cache (cold) and reading it back (warm).

Each time is the best of a few runs and is printed with its ratio to a reference measured in the same run:
cold against the floor of any char tokeniser (`text.encode()` + `np.frombuffer` of the same text), warm against
`np.fromfile` of the cache file. Run: `uv run python bench/bench_tokenize.py`. It prints; it never fails.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from smoltui.engine.data import read_corpus, tokenize_corpus
from smoltui.engine.tokenizers import load_tokenizer

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
REPEATS = 5
COLD_TARGET_S = 2.0
WARM_TARGET_S = 0.1


def best_of(run: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return min(times)


def report(label: str, seconds: float, reference: str, reference_seconds: float, target: float) -> None:
    verdict = "meets" if seconds < target else "MISSES"
    print(
        f"{label:<26} {seconds * 1000:8.2f} ms = {seconds / reference_seconds:7.2f}x {reference} "
        f"({reference_seconds * 1000:.2f} ms); target < {target} s: {verdict}"
    )


def main() -> None:
    if not CORPUS.is_file():
        print(f"skipped: {CORPUS} is absent")
        return
    tokenizer = load_tokenizer("char")  # loads transformers: not part of tokenising
    read_seconds = best_of(lambda: read_corpus(str(CORPUS)))
    corpus = read_corpus(str(CORPUS))

    with tempfile.TemporaryDirectory() as scratch:
        fresh_caches = iter(range(REPEATS))
        cold_seconds = best_of(
            lambda: tokenize_corpus(corpus, tokenizer, cache_dir=Path(scratch) / f"cold{next(fresh_caches)}")
        )
        floor_seconds = best_of(lambda: np.frombuffer(corpus.text.encode(), dtype=np.uint8).astype(np.uint16))

        cache = Path(scratch) / "warm"
        tokenized = tokenize_corpus(corpus, tokenizer, cache_dir=cache)
        warm_seconds = best_of(lambda: tokenize_corpus(corpus, tokenizer, cache_dir=cache))
        warm_read_seconds = best_of(lambda: int(tokenize_corpus(corpus, tokenizer, cache_dir=cache).ids.sum()))
        fromfile_seconds = best_of(lambda: int(np.fromfile(tokenized.cache_path, dtype=tokenized.ids.dtype).sum()))
        warm_hit = tokenize_corpus(corpus, tokenizer, cache_dir=cache).cache_hit

    print(f"corpus: {CORPUS.name}, {len(corpus.text):,} chars -> {len(tokenized.ids):,} tokens ({tokenized.ids.dtype})")
    print(f"read_corpus                {read_seconds * 1000:8.2f} ms")
    report("cold tokenize + cache", cold_seconds, "encode + frombuffer (floor)", floor_seconds, COLD_TARGET_S)
    report("warm open (memmap)", warm_seconds, "np.fromfile + sum", fromfile_seconds, WARM_TARGET_S)
    report("warm open + sum of ids", warm_read_seconds, "np.fromfile + sum", fromfile_seconds, WARM_TARGET_S)
    print(f"warm call was a cache hit: {warm_hit}")
    print(f"(best of {REPEATS} runs each; python {sys.version.split()[0]}, numpy {np.__version__})")


if __name__ == "__main__":
    main()
