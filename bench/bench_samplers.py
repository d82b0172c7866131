"""Benchmark: microseconds per SamplerChain.process() (and process + choose) on SmolLM2's 49,152-token vocabulary.

Each chain runs on two kinds of scores: "peaked" (Zipf-like, as a language model's usually are: the nucleus holds
tens of tokens) and "flat" (normal noise: the nucleus holds thousands). The reference is the bare loop a script
would write, `torch.multinomial(torch.softmax(logits / 0.7, -1), 1)`, measured in the same run. The target: a
chain with temperature and top-p costs under 1 ms a token. Each figure is the best of several windows (the
least disturbed by other work on the machine).
Run: `uv run python bench/bench_samplers.py`. It prints; it never fails.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from smoltui.engine.samplers import PRESETS, SamplerChain, SamplerSettings

VOCAB = 49_152
HISTORY = 512
CALLS = 200
WINDOWS = 5
TARGET_US = 1000.0

CHAINS = {
    **PRESETS,
    "temperature+top_p": SamplerSettings(temperature=0.7, top_p=0.9),
    "everything": SamplerSettings(
        temperature=0.8,
        top_k=200,
        top_p=0.95,
        min_p=0.01,
        typical_p=0.97,
        top_n_sigma=3.0,
        repetition_penalty=1.2,
        repetition_range=64,
        presence_penalty=0.3,
        frequency_penalty=0.2,
        no_repeat_ngram=3,
        dry_multiplier=0.8,
        xtc_probability=0.5,
        mirostat_tau=8.0,
        ban_eos=True,
    ),  # fmt: skip
}


def scores(kind: str, generator: torch.Generator) -> torch.Tensor:
    if kind == "flat":
        return torch.randn(VOCAB, generator=generator)  # (V,)
    ranks = torch.arange(1, VOCAB + 1, dtype=torch.float32)
    return (-1.2 * ranks.log())[torch.randperm(VOCAB, generator=generator)] * 1.5  # (V,) shuffled Zipf


def microseconds_per_call(run: Callable[[], object]) -> float:
    for _ in range(20):
        run()
    windows = []
    for _ in range(WINDOWS):
        started = time.perf_counter()
        for _ in range(CALLS):
            run()
        windows.append((time.perf_counter() - started) / CALLS * 1e6)
    return min(windows)


def reference_microseconds(logits: torch.Tensor) -> float:
    return microseconds_per_call(lambda: torch.multinomial(torch.softmax(logits / 0.7, -1), 1))


def chain_microseconds(
    settings: SamplerSettings, history: torch.Tensor, logits: torch.Tensor, generator: torch.Generator
) -> tuple[float, float]:
    """(process alone, process + choose) for one chain."""
    chain = SamplerChain(settings, vocab_size=VOCAB, eos_token_ids=(0,), decode_token=str)
    process = microseconds_per_call(lambda: chain.process(history, logits, generator=generator))
    both = microseconds_per_call(lambda: chain.choose(chain.process(history, logits, generator=generator), generator))
    return process, both


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    history = torch.randint(0, VOCAB, (HISTORY,), generator=generator)  # (T,)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, vocab {VOCAB}, history {HISTORY} tokens")
    for kind in ("peaked", "flat"):
        logits = scores(kind, generator)
        reference = reference_microseconds(logits)
        print(f"\n{kind} scores; reference softmax + multinomial: {reference:8.1f} µs")
        for name, settings in CHAINS.items():
            process, both = chain_microseconds(settings, history, logits, generator)
            verdict = ""
            if name == "temperature+top_p":
                verdict = f"  target < {TARGET_US:.0f} µs: {'meets' if both < TARGET_US else 'MISSES'}"
            print(
                f"  {name:<18} process {process:8.1f} µs   process+choose {both:8.1f} µs "
                f"= {both / reference:5.2f}x reference{verdict}"
            )


if __name__ == "__main__":
    main()
