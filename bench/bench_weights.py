"""How fast the weights viewer reads SmolLM2-135M, against references measured in the same run.

- The table of every tensor's statistics (tensor_table) against one `torch.std` per tensor (the least any table
  of a std per tensor can cost), and against the same statistics read without chunks (each reduction a pass over
  the whole tensor); then the viewer's whole table: the statistics put in the WeightsTable and its lines drawn.
- A heatmap of a 576×1536 matrix (a down_proj's shape): block means in both modes computed and the widget's lines
  drawn, against drawing a Static of as many cells.
- The top singular values: the Gram-matrix eigenvalues (the default), torch.linalg.svdvals and torch's randomized
  svd_lowrank, on a 576×1536 matrix and on the 49152×576 embedding, each with its largest error against svdvals.

Run: uv run python bench/bench_weights.py   (targets: the table under 2 s, the heatmap under 100 ms)
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Static

from smoltui.engine.models import load_model
from smoltui.engine.weights import HEAT_MODES, downsample, histogram, tensor_table, top_singular_values, weight_tensors
from smoltui.widgets.weight_heatmap import WeightHeatmap
from smoltui.widgets.weights_table import WeightsTable

MODEL = "smollm2-135m-instruct"
WIDTH, HEIGHT = 70, 24  # about the heatmap's panel on a 120x40 terminal
TOP_K = 12


def median_s(call: Callable[[], object], runs: int = 3) -> float:
    call()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def line(label: str, took_s: float, reference_s: float | None = None, target_s: float | None = None) -> None:
    ratio = "" if reference_s is None else f"  {took_s / reference_s:7.2f}x reference"
    verdict = "" if target_s is None else ("  ok" if took_s < target_s else f"  OVER the {target_s * 1000:g} ms target")
    print(f"{label:<52} {took_s * 1000:9.1f} ms{ratio}{verdict}")


def unchunked_stats(model) -> None:
    """The reductions tensor_stats makes, each over the whole tensor at once."""
    for _name, tensor, _kind, _also in weight_tensors(model):
        values = tensor.detach().reshape(-1).float()
        deviations = values - float(values.mean())
        deviations.sum()
        torch.dot(deviations, deviations)
        torch.aminmax(values)
        torch.count_nonzero(values)


class TableApp(App[None]):
    CSS = "WeightsTable { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield WeightsTable()


async def table_figures(model, reference: float) -> None:
    """The viewer's whole table: every tensor's statistics, put in the table and its visible lines drawn."""
    app = TableApp()
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        table = app.query_one(WeightsTable)

        def whole_table() -> None:
            table.show(tensor_table(model))
            for y in range(table.size.height):
                table.render_line(y)

        took = median_s(whole_table)
        line(f"the whole table: statistics, {table.row_count} rows, drawn", took, reference, 2.0)


class HeatmapApp(App[None]):
    CSS = f"WeightHeatmap, Static {{ width: {WIDTH}; height: {HEIGHT}; }}"

    def compose(self) -> ComposeResult:
        yield WeightHeatmap()
        yield Static()


async def heatmap_figures(matrix: torch.Tensor) -> None:
    app = HeatmapApp()
    async with app.run_test(size=(WIDTH + 4, 2 * HEIGHT + 4)) as pilot:
        await pilot.pause()
        heatmap, static = app.query_one(WeightHeatmap), app.query_one(Static)
        rows, cols = heatmap.cells_wanted

        def heat() -> None:
            cells = {mode: downsample(matrix, rows, cols, mode=mode) for mode in HEAT_MODES}
            heatmap.show(cells["abs"], "abs")
            for y in range(HEIGHT):
                heatmap.render_line(y)

        def draw_static() -> None:
            static.update(Text("\n".join("▀" * WIDTH for _ in range(HEIGHT))))
            static.render_lines(static.region.reset_offset)

        reference = median_s(draw_static, runs=15)
        line("Static of as many cells, drawn (reference)", reference)
        line(f"576x1536 heatmap to {rows}x{cols}, both modes, drawn", median_s(heat, runs=15), reference, 0.100)


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; figures from a shared machine are unquiet")
    start = time.perf_counter()
    loaded = load_model(MODEL, device="cpu")
    print(f"loaded {MODEL} in {time.perf_counter() - start:.1f} s ({loaded.placement.dtype})")
    model = loaded.model
    tensors = [tensor for _name, tensor, _kind, _also in weight_tensors(model)]
    print(f"{len(tensors)} tensors, {sum(t.numel() for t in tensors):,} values")

    reference = median_s(lambda: [torch.std(tensor) for tensor in tensors])
    line("one torch.std per tensor (reference)", reference)
    line("tensor_table (chunked, one pass)", median_s(lambda: tensor_table(model)), reference, 2.0)
    line("the same statistics without chunks", median_s(lambda: unchunked_stats(model)), reference)
    asyncio.run(table_figures(model, reference))

    down_proj = model.model.layers[0].mlp.down_proj.weight.detach()  # (576, 1536)
    asyncio.run(heatmap_figures(down_proj))

    embedding = model.get_input_embeddings().weight.detach()  # (49152, 576)
    line("histogram of the embedding (128 bins)", median_s(lambda: histogram(embedding, 128)))
    for label, matrix in (("576x1536", down_proj), ("embedding 49152x576", embedding)):
        full = top_singular_values(matrix, TOP_K, method="full")
        reference = median_s(lambda matrix=matrix: top_singular_values(matrix, TOP_K, method="full"), runs=1)
        line(f"svdvals {label} (reference)", reference)
        gram = top_singular_values(matrix, TOP_K, method="gram")
        took = median_s(lambda matrix=matrix: top_singular_values(matrix, TOP_K, method="gram"), runs=1)
        line(f"gram eigenvalues {label}, error {np.max(np.abs(gram / full - 1)):.1e}", took, reference)

        def lowrank(matrix=matrix) -> np.ndarray:
            return torch.svd_lowrank(matrix.float(), q=TOP_K + 8, niter=2)[1][:TOP_K].numpy()

        took = median_s(lowrank, runs=1)
        line(f"svd_lowrank {label}, error {np.max(np.abs(lowrank() / full - 1)):.1e}", took, reference)


if __name__ == "__main__":
    main()
