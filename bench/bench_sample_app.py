"""Decoding inside the dashboard against decoding headless: does the Sample screen slow the decoder down?

The same greedy 128-token completion of SmolLM2-135M-Instruct (bundled; `load_model("smollm2-135m-instruct")`, the
end-of-text token banned so every run makes all 128 tokens), with the top 20 alternatives of every token as the
screen asks for them:
- headless: `decode` directly, timed from the first token event to the last;
- in the app: SmolApp under Textual's pilot (`run_test`, headless terminal, every frame still composed), the Sample
  screen generating through the model session, timed from the first batch of tokens the screen put on screen to
  the last (the screen's own tokens/s, the figure under its answer).
The two alternate, `--repeats` times each, on one loaded model; the medians' ratio is printed against the 0.9
target. On a machine shared with other work the figures move a lot; the ratio of alternated runs moves less.

No torch work runs on the main thread here, as in the app (which loads and decodes on the session's worker): with
torch's OpenMP, once the main thread has run a parallel region, another thread's small matrix products ran about
2x slower on a 2-core machine, which would hand the app's worker thread a handicap the app itself never has. The
headless decode runs on a thread of its own for the same reason.

Run: uv run python bench/bench_sample_app.py [--new-tokens 128] [--repeats 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from smoltui.engine.decoder import TokenGenerated, decode
from smoltui.engine.models import LoadedModel, load_model
from smoltui.engine.sampler_settings import PRESETS

PROMPT = "Once upon a time, in a small village by the sea,"
TARGET = 0.9
SETTLE_S = 1.5
SETTINGS = PRESETS["greedy"].replace(ban_eos=True)


def on_a_thread(work: Callable[..., Any], *args: Any) -> Any:
    """`work(*args)` run on a new thread, never the main one (see the module docstring)."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(work(*args)))
    thread.start()
    thread.join()
    return result[0]


def headless_rate(loaded: LoadedModel, new_tokens: int) -> float:
    """Tokens per second from the first token event to the last."""
    ids = loaded.tokenizer(PROMPT)["input_ids"]
    times: list[float] = []
    for event in decode(loaded.model, loaded.tokenizer, ids, max_new_tokens=new_tokens, sampling=SETTINGS):
        if isinstance(event, TokenGenerated):
            times.append(time.perf_counter())
    if len(times) != new_tokens:
        raise SystemExit(f"headless: {len(times)} tokens, not {new_tokens}")
    return (len(times) - 1) / (times[-1] - times[0])


async def app_rate(loaded: LoadedModel, new_tokens: int, workspace: str) -> tuple[float, float]:
    """Tokens per second as the Sample screen applied them, from its first batch to its last; and the decoder's
    own figure in the app (its time between tokens, not counting what the screen did)."""
    from textual.widgets import Checkbox, Input

    from smoltui.app import SmolApp
    from smoltui.widgets.sampler_form import SamplerForm

    app = SmolApp(workspace, device="cpu")
    async with app.run_test(size=(120, 40)) as pilot:
        app.session.use(loaded)
        await pilot.press("5")
        await app.workers.wait_for_complete()
        await asyncio.sleep(SETTLE_S)  # past the app's start-up work (its collection of what it built first)
        screen = app.screen
        await pilot.press("c")  # completion
        form = screen.query_one(SamplerForm)
        form.apply_preset("greedy")
        form.query_one("#field-ban_eos", Checkbox).value = True
        form.set_field("max_new_tokens", str(new_tokens))
        prompt = screen.query_one("#prompt", Input)
        prompt.value = PROMPT
        await pilot.pause(0.2)
        prompt.focus()
        await pilot.press("enter")
        job = screen.column("single").job
        await asyncio.sleep(0.2)
        while screen.generating:  # a plain sleep: the pilot's pause would wait for a repaint each time
            await asyncio.sleep(0.1)
        column = screen.column("single")
        if len(column.answer) != new_tokens or column.tokens_per_s is None:
            raise SystemExit(f"in the app: {len(column.answer)} tokens ({column.outcome}), not {new_tokens}")
        return column.tokens_per_s, job.result.tokens_per_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    loaded = on_a_thread(lambda: load_model("smollm2-135m-instruct", device="cpu"))
    print(f"SmolLM2-135M-Instruct, {loaded.placement.dtype} on cpu, {torch.get_num_threads()} threads, greedy, "
          f"{args.new_tokens} new tokens, top 20 alternatives")  # fmt: skip
    on_a_thread(headless_rate, loaded, 8)  # warm-up: first-call costs out of the figures
    headless, in_app = [], []
    with tempfile.TemporaryDirectory() as workspace:
        for repeat in range(args.repeats):
            headless.append(on_a_thread(headless_rate, loaded, args.new_tokens))
            shown, decoder = asyncio.run(app_rate(loaded, args.new_tokens, workspace))
            in_app.append(shown)
            print(
                f"  run {repeat + 1}: headless {headless[-1]:.1f} tokens/s · in the app {shown:.1f} tokens/s "
                f"(its decoder alone {decoder:.1f})"
            )
    ratio = statistics.median(in_app) / statistics.median(headless)
    verdict = "meets" if ratio >= TARGET else "misses"
    print(
        f"median: headless {statistics.median(headless):.1f} tokens/s · in the app {statistics.median(in_app):.1f} "
        f"tokens/s · ratio {ratio:.2f} ({verdict} the {TARGET} target)"
    )


if __name__ == "__main__":
    main()
