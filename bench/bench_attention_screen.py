"""How fast the Attention screen repaints, against references measured in the same run.

1. A full heatmap repaint of an 80-token prompt at 120x40: `AttentionHeatmap.show` (a new matrix: levels, cells)
   plus every line drawn (`render_lines` of the widget's region, what the compositor asks for), against a Static
   of the same size holding a rich Text of as many styled cells (the reference). Target: under 50 ms.
2. Keys that move through the maps (layer, head, average, scroll; head-grid and text-view cursors): the time
   `pilot.press` takes to deliver the key and let the screen repaint, against a key no binding takes (the
   pilot's own floor, which includes its wait for the screen to settle). Target: p95 under 100 ms.

The model is the tiny preset with four heads (the screen's work does not grow with the model's width) unless
--model names another source (e.g. smollm2-135m-instruct, 30 layers of 9 heads).

Run: uv run python bench/bench_attention_screen.py [--model tiny] [--repeats 30]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import numpy as np
from rich.text import Text
from textual.app import App, ComposeResult
from textual.geometry import Region
from textual.widgets import Input, Static

from smoltui.app import SmolApp
from smoltui.engine.models import load_model
from smoltui.heatmap import PALETTE
from smoltui.widgets.attention_heatmap import AttentionHeatmap

PROMPT = "The quick brown fox jumps over the lazy dog. A stitch in time saves nine. Hello!"  # 80 characters
SIZE = (120, 40)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


class ReferenceApp(App[None]):
    """A Static as large as the heatmap, holding a Text of as many styled half-block cells."""

    def __init__(self, lines: int, cells: int) -> None:
        super().__init__()
        self.lines, self.cells = lines, cells

    def compose(self) -> ComposeResult:
        yield Static(id="reference")

    def text(self, shift: int) -> Text:
        text = Text()
        for line in range(self.lines):
            for cell in range(self.cells):
                upper = PALETTE[(line + cell + shift) % len(PALETTE)]
                text.append("▀", f"{upper} on {PALETTE[(line * 3 + cell + shift) % len(PALETTE)]}")
            text.append("\n")
        return text


async def reference_repaint(lines: int, cells: int, repeats: int) -> list[float]:
    app = ReferenceApp(lines, cells)
    took = []
    async with app.run_test(size=SIZE) as pilot:
        static = app.query_one(Static)
        for shift in range(repeats):
            start = time.perf_counter()
            static.update(app.text(shift))
            static.render_lines(Region(0, 0, *static.size))
            took.append(time.perf_counter() - start)
            await pilot.pause()
    return took


async def screen_timings(source: str, repeats: int) -> tuple[list[float], dict[str, list[float]], tuple[int, int]]:
    overrides = {"n_head": 4, "n_positions": 128} if source == "tiny" else None
    loaded = load_model(source, device="cpu", overrides=overrides)
    keys: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as workspace:
        app = SmolApp(workspace, device="cpu")
        async with app.run_test(size=SIZE) as pilot:
            app.session.use(loaded)
            await pilot.press("7", "i")
            screen = app.screen
            screen.query_one("#attn-prompt", Input).value = PROMPT
            await pilot.press("enter")
            while screen.maps is None:
                await pilot.pause(0.05)
            await pilot.pause(0.2)
            heatmap = screen.query_one(AttentionHeatmap)
            repaint = []
            for index in range(repeats):
                matrix = screen.maps.weights[index % len(screen.maps.layers), index % screen.maps.heads]  # (T, T)
                start = time.perf_counter()
                heatmap.show(matrix, screen.maps.tokens)
                heatmap.render_lines(Region(0, 0, *heatmap.size))
                repaint.append(time.perf_counter() - start)
            drawn = (heatmap.map_lines, len(screen.maps.tokens) - heatmap.first_key)

            async def time_keys(label: str, presses: list[str]) -> None:
                took = keys.setdefault(label, [])
                for _ in range(repeats):
                    for key in presses:
                        start = time.perf_counter()
                        await pilot.press(key)
                        took.append(time.perf_counter() - start)

            await pilot.pause(1.5)  # the app freezes what it built after a second (SmolApp._freeze_built)
            await time_keys("reference: a key no binding takes", ["x"])
            await time_keys("layer ] and [", ["right_square_bracket", "left_square_bracket"])
            await time_keys("head } and {", ["right_curly_bracket", "left_curly_bracket"])
            await time_keys("head average a", ["a"])
            await time_keys("scroll the queries up and down", ["up", "down"])
            await pilot.press("g")
            await time_keys("head grid cursor right and left", ["right", "left"])
            await time_keys("head grid layer ]", ["right_square_bracket", "left_square_bracket"])
            await pilot.press("t")
            await time_keys("text view token left and right", ["left", "right"])
    return repaint, keys, drawn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--repeats", type=int, default=30)
    options = parser.parse_args()
    repaint, keys, (lines, cells) = asyncio.run(screen_timings(options.model, options.repeats))
    reference = asyncio.run(reference_repaint(lines, cells, options.repeats))
    ref = statistics.median(reference) * 1000
    took = statistics.median(repaint) * 1000
    print(f"heatmap of {len(PROMPT)} tokens at {SIZE[0]}x{SIZE[1]} ({lines} lines of {cells} cells), median of "
          f"{options.repeats}:")  # fmt: skip
    print(f"  {'reference: a Static of as many styled cells':<48} {ref:8.2f} ms")
    verdict = "ok" if took < 50 else "OVER the 50 ms target"
    print(f"  {'AttentionHeatmap.show + render_lines':<48} {took:8.2f} ms  {took / ref:5.2f}x reference  {verdict}")
    floor = percentile(keys.pop("reference: a key no binding takes"), 0.95) * 1000
    print("key presses until the screen has repainted (pilot.press), p95:")
    print(f"  {'reference: a key no binding takes':<48} {floor:8.2f} ms")
    for label, values in keys.items():
        p95 = percentile(values, 0.95) * 1000
        verdict = "ok" if p95 < 100 else "OVER the 100 ms target"
        print(f"  {label:<48} {p95:8.2f} ms  {p95 / floor:5.2f}x reference  ({len(values)} presses)  {verdict}")
    print(f"  (median over all keys: {np.median([v for vs in keys.values() for v in vs]) * 1000:.2f} ms)")


if __name__ == "__main__":
    main()
