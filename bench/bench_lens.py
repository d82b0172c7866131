"""What looking inside costs on SmolLM2-135M-Instruct on the CPU, each figure against a reference in the same run.

- The lens while generating: the time per token of `lens_while_generating` (a decode step with the residual
  stream captured, plus the lens of one position over all 31 rows) against a plain decode step (`decode`
  without capture), greedy, alternated and repeated. Target: at most 1.5x. Printed beside it: the lens of one
  position alone, and the LM head applied to one row (the floor of any exact lens row).
- Attention weights of all 30 layers x 9 heads for a 128-token prompt (`attention_maps`, eager attention
  switched on for the pass) against a plain forward of the same prompt (SDPA, as the model is loaded). Target:
  under 1 s.
- The residual stream of a prompt through plain forward hooks (`capture_stream`) against the same values
  saved by an nnsight trace, and against a plain forward: why the engine uses hooks.
Medians over the repeats. On a machine shared with other work the absolute figures move a lot; the ratios of
alternated runs move less.

Run: uv run python bench/bench_lens.py [--dtype fp32] [--new-tokens 48] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from smoltui.engine.activations import capture_stream
from smoltui.engine.attention import attention_maps
from smoltui.engine.decoder import TokenGenerated, decode
from smoltui.engine.lens import LensGrown, lens_of_stream, lens_while_generating
from smoltui.engine.lens_head import LensHead
from smoltui.engine.models import load_model
from smoltui.engine.token_text import TokenTexts

PROMPT = "The Eiffel Tower is in the city of"
LONG_TEXT = (
    "The quick brown fox jumps over the lazy dog while the farmer watches from the porch of his old house, "
    "thinking about the harvest, the weather, the price of grain at the market in town, and whether his "
    "daughter will come home for the summer after her first year at the university in the capital city. "
) * 4


def per_token_seconds(events, counts: Callable[[object], bool]) -> list[float]:
    """The time between consecutive counted events, the first one (which includes the prefill) left out."""
    times, last = [], None
    for event in events:
        if counts(event):
            now = time.perf_counter()
            if last is not None:
                times.append(now - last)
            last = now
    return times[1:]


def median_time(work: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def bench_generation(model, tokenizer, new_tokens: int, repeats: int) -> None:
    ids = tokenizer(PROMPT)["input_ids"]
    plain, lens = [], []
    for _ in range(repeats):
        events = decode(model, tokenizer, ids, max_new_tokens=new_tokens, stop_at_eos=False)
        plain += per_token_seconds(events, lambda event: isinstance(event, TokenGenerated))
        events = lens_while_generating(model, tokenizer, ids, max_new_tokens=new_tokens, stop_at_eos=False)
        lens += per_token_seconds(events, lambda event: isinstance(event, LensGrown) and event.token is not None)
    step, with_lens = statistics.median(plain), statistics.median(lens)
    head = LensHead(model)
    layers = len(model.model.layers)
    residual = torch.randn(layers + 1, 1, model.config.hidden_size, dtype=model.dtype)
    texts = TokenTexts(tokenizer)
    one_column = median_time(
        lambda: lens_of_stream(head, residual, [0], [1], texts, target=None, top_k=5), repeats * 10
    )
    with torch.inference_mode():
        one_row = median_time(lambda: head.logits(residual[-1]), repeats * 10)
    print(
        f"lens while generating: {with_lens * 1e3:.1f} ms/token against a plain decode step of {step * 1e3:.1f} ms: "
        f"{with_lens / step:.2f}x (target <= 1.5x)"
    )
    print(
        f"  the lens of one position ({layers + 1} rows): {one_column * 1e3:.1f} ms; the head on one row "
        f"(its floor per row): {one_row * 1e3:.1f} ms"
    )


def bench_attention(model, tokenizer, repeats: int) -> None:
    ids = tokenizer(LONG_TEXT)["input_ids"][:128]
    assert len(ids) == 128, "the text is long enough for 128 tokens"
    inputs = torch.tensor([ids])

    def plain_forward() -> None:
        with torch.inference_mode():
            model.model(input_ids=inputs, use_cache=False)

    maps_s, forward_s = [], []
    for _ in range(repeats):
        maps_s.append(median_time(lambda: attention_maps(model, tokenizer, ids), 1))
        forward_s.append(median_time(plain_forward, 1))
    maps, forward = statistics.median(maps_s), statistics.median(forward_s)
    shape = attention_maps(model, tokenizer, ids).weights.shape
    print(
        f"attention {shape[0]} layers x {shape[1]} heads x 128 tokens: {maps:.3f} s (target < 1 s), a plain SDPA "
        f"forward {forward:.3f} s: {maps / forward:.2f}x"
    )


def bench_capture(model, tokenizer, repeats: int) -> None:
    ids = tokenizer(LONG_TEXT)["input_ids"][:32]
    inputs = torch.tensor([ids])

    def plain_forward() -> None:
        with torch.inference_mode():
            model(input_ids=inputs, logits_to_keep=1)

    hooks = median_time(lambda: capture_stream(model, ids), repeats * 4)
    plain = median_time(plain_forward, repeats * 4)
    print(f"residual stream of 32 tokens: hooks {hooks * 1e3:.1f} ms, plain forward {plain * 1e3:.1f} ms")
    try:
        import nnsight
    except ImportError:
        print("  nnsight is not installed: no comparison")
        return
    traced = nnsight.TransformersModel(model, tokenizer=tokenizer)

    def nnsight_capture() -> tuple:
        with torch.inference_mode(), traced.trace(inputs):
            first_input = nnsight.save(traced.model.layers[0].input)  # accesses follow the forward's order
            outputs = nnsight.save([layer.output for layer in traced.model.layers])
        return first_input, outputs

    nnsight_s = median_time(nnsight_capture, repeats * 4)
    print(f"  nnsight trace {nnsight_s * 1e3:.1f} ms: {nnsight_s / hooks:.2f}x the hooks")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    options = parser.parse_args()
    torch.set_num_threads(options.threads)
    loaded = load_model("smollm2-135m-instruct", device="cpu", dtype=options.dtype)
    model, tokenizer = loaded.model, loaded.tokenizer
    print(f"SmolLM2-135M-Instruct, {options.dtype}, CPU, {options.threads} threads, {options.repeats} repeats")
    bench_generation(model, tokenizer, options.new_tokens, options.repeats)
    bench_attention(model, tokenizer, options.repeats)
    bench_capture(model, tokenizer, options.repeats)


if __name__ == "__main__":
    main()
