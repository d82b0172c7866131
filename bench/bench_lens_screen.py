"""The Lens screen's drawing speed at 120x40: a full repaint of the grid, and a cursor key (the grid's lines and the
side panel drawn again), each beside a reference measured in the same run (just after): a plain Static of the
grid's size with as much styled text, updated and drawn.

The grid is shaped like SmolLM2-135M's (30 layers + the embeddings, 64 positions, top 10), with random numbers:
what is timed is drawing, not the model, so no model is loaded. The app runs under Textual's pilot (a headless
terminal); each figure draws every line of its widget, as a frame that repaints it would. Targets: a full repaint
under 50 ms, a cursor key's p95 under 100 ms.

Run: uv run python bench/bench_lens_screen.py [--repeats 50] [--moves 200]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

import numpy as np
from rich.text import Text
from textual.geometry import Region
from textual.widgets import Static

from smoltui.app import SmolApp
from smoltui.engine.lens import LensGrid
from smoltui.lens_look import LENS_MODES
from smoltui.screens.lens import LensScreen

ROWS, POSITIONS, TOP = 31, 64, 10
VOCAB = 49_152


def synthetic_grid(seed: int = 0) -> LensGrid:
    """A grid of SmolLM2's shape with random tokens (short texts, as a BPE's are) and probabilities."""
    rng = np.random.default_rng(seed)
    top_ids = rng.integers(0, 2_000, size=(ROWS, POSITIONS, TOP))
    probs = np.sort(rng.dirichlet(np.ones(TOP), size=(ROWS, POSITIONS)), axis=-1)[..., ::-1].astype(np.float32)
    token_ids = rng.integers(0, 2_000, size=POSITIONS)
    next_ids = np.append(token_ids[1:], -1)
    ids = {*top_ids.ravel().tolist(), *token_ids.tolist()}
    return LensGrid(
        token_ids=token_ids,
        next_ids=next_ids,
        top_ids=top_ids,
        top_probs=probs,
        entropy=rng.uniform(0, 8, size=(ROWS, POSITIONS)).astype(np.float32),
        kl_to_final=rng.uniform(0, 6, size=(ROWS, POSITIONS)).astype(np.float32),
        next_prob=rng.uniform(0, 1, size=(ROWS, POSITIONS)).astype(np.float32),
        target_id=None,
        target_rank=None,
        target_prob=None,
        texts={token: f" w{token}" for token in ids},
    )


def draw(widget) -> None:
    widget.render_lines(Region(0, 0, *widget.outer_size))


def p95(values: list[float]) -> float:
    return sorted(values)[max(0, round(0.95 * len(values)) - 1)]


async def measure(repeats: int, moves: int) -> None:
    with tempfile.TemporaryDirectory() as workspace:
        app = SmolApp(workspace, device="cpu")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("6")
            await pilot.pause()
            screen = app.screen
            assert isinstance(screen, LensScreen)
            view = screen.grid_view
            grid = synthetic_grid()
            size = view.outer_size
            repaint = []
            for index in range(repeats):
                start = time.perf_counter()
                view.show(grid, LENS_MODES[index % len(LENS_MODES)], (ROWS - 1, POSITIONS - 1))
                draw(view)
                repaint.append(time.perf_counter() - start)

            panel = screen.query_one("#lens-cell", Static)
            keys = [(0, -1)] * (moves // 2) + [(-1, 0)] * (moves // 4) + [(1, 1)] * (moves // 4)
            cursor = []
            for rows, positions in keys:
                start = time.perf_counter()
                screen.action_move(rows, positions)
                draw(view)
                draw(panel)
                cursor.append(time.perf_counter() - start)

            # The reference, measured after: mounted, it takes the grid's place in the layout.
            reference = Static(id="reference")
            reference.styles.width, reference.styles.height = size.width, size.height
            await screen.mount(reference, before=view)
            await pilot.pause()
            filler = Text()
            for index in range(size.height):
                filler.append(("cell text " * 20)[: size.width] + "\n", f"on #{index * 5 % 256:02x}4080")
            plain = []
            for _ in range(repeats + len(keys)):
                start = time.perf_counter()
                reference.update(filler)
                draw(reference)
                plain.append(time.perf_counter() - start)
            plain, plain_keys = plain[:repeats], plain[repeats:]

    full, ref = statistics.median(repaint), statistics.median(plain)
    print(f"plain Static, same size        {ref * 1000:7.2f} ms  (reference, median of {repeats})")
    print(f"lens grid, full repaint        {full * 1000:7.2f} ms  {full / ref:4.1f}x reference  (target < 50 ms)")
    key, ref_key = p95(cursor), p95(plain_keys)
    print(f"plain Static, p95              {ref_key * 1000:7.2f} ms  (reference, {len(keys)} updates)")
    print(f"cursor key (grid + panel), p95 {key * 1000:7.2f} ms  {key / ref_key:4.1f}x reference  (target < 100 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--moves", type=int, default=200)
    options = parser.parse_args()
    asyncio.run(measure(options.repeats, options.moves))


if __name__ == "__main__":
    main()
