"""How long LineChart takes to redraw, append and re-smooth long series, against references measured in the same run.

A full redraw of a 120x30 chart (downsampling, rasterising, building the Textual strips) of 1,000,000 points is
compared with the same redraw of 1,000 points and with one `np.minimum.reduceat` pass over the 1,000,000 values.
A cursor move is what one mouse move over the chart costs: the readout of every series at the new x and every
line laid over the cached frame.

Run: uv run python bench/bench_chart.py   (targets: redraw of 1M points under 50 ms, re-smoothing 1M under 200 ms,
a cursor move under 3 ms)
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable

import numpy as np
from textual.app import App, ComposeResult

from smoltui.widgets.chart_data import ema_debiased
from smoltui.widgets.line_chart import LineChart

WIDTH, HEIGHT = 120, 30
RUNS = 15


def median_ms(call: Callable[[], object], runs: int = RUNS) -> float:
    call()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def loss_curve(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    steps = np.arange(n, dtype=np.float64)
    base = 1.5 + 3.0 * np.exp(-steps / (n / 5))
    return steps, base + rng.normal(0.0, 0.15, n) * base / 2


class ChartApp(App[None]):
    CSS = f"LineChart {{ width: {WIDTH}; height: {HEIGHT}; }}"

    def compose(self) -> ComposeResult:
        yield LineChart(smoothing=0.9)


def line(label: str, took: float, reference: float, target: float | None = None) -> None:
    verdict = "" if target is None else ("  ok" if took < target else f"  OVER the {target:g} ms target")
    print(f"{label:<44} {took:8.2f} ms  {took / reference:7.1f}x reference{verdict}")


async def main() -> None:
    app = ChartApp()
    async with app.run_test(size=(WIDTH + 4, HEIGHT + 4)) as pilot:
        chart = app.query_one(LineChart)
        await pilot.pause()
        assert tuple(chart.size) == (WIDTH, HEIGHT), chart.size

        steps, values = loss_curve(1_000_000)
        reduceat = median_ms(lambda: np.minimum.reduceat(values, np.arange(0, len(values), 4200)))
        chart.set_series("small", *loss_curve(1_000))
        small = median_ms(chart.render_strips)
        chart.clear()
        chart.set_series("train/loss", steps, values)
        chart.smoothing = 0.0
        raw = median_ms(chart.render_strips)
        chart.smoothing = 0.9
        smoothed = median_ms(chart.render_strips)  # the EMA is computed once in the warm-up, then cached
        chart.log_y, chart.window = True, 200_000
        log_window = median_ms(chart.render_strips)
        chart.log_y, chart.window = False, None
        chart.add_series("val/loss", style="points")
        chart.append("val/loss", steps[::200], values[::200])
        chart.set_series("run-b", *loss_curve(1_000_000, seed=1))
        two_runs = median_ms(chart.render_strips)
        chart.set_max_steps("train/loss", 1_000_000)
        chart.set_max_steps("run-b", 2_000_000)
        chart.by_fraction = True
        by_fraction = median_ms(chart.render_strips)
        chart.by_fraction = False

        plot = chart.current_frame().plot
        columns = iter(range(10**9))

        def cursor_move() -> None:  # a new x each time, as a mouse gives
            chart.cursor_x = plot.x_of(next(columns) % plot.width)
            for y in range(HEIGHT):
                chart.render_line(y)

        cursor = median_ms(cursor_move, runs=100)
        resmooth = median_ms(lambda: ema_debiased(values, 0.99), runs=5)

        new_steps, new_values = np.arange(1_000_000, 1_000_100.0), np.full(100, 1.5)
        chart.remove_series("run-b")
        appended = [1_000_000.0]

        def append_tick() -> None:
            new = new_steps + (appended[0] - 1_000_000)
            appended[0] += 100
            chart.append("train/loss", new, new_values)

        append = median_ms(append_tick, runs=50)

    print(f"LineChart {WIDTH}x{HEIGHT}, median of {RUNS} runs")
    print(f"{'np.minimum.reduceat over 1M values':<44} {reduceat:8.2f} ms  (reference)")
    print(f"{'redraw 1k points, EMA 0.9':<44} {small:8.2f} ms  (reference)")
    line("redraw 1M points, raw", raw, reduceat, 50)
    line("redraw 1M points, EMA 0.9 (raw + smoothed)", smoothed, reduceat, 50)
    line("redraw last 200k of 1M points, log-y, EMA", log_window, reduceat, 50)
    line("redraw 2 runs of 1M points + val points", two_runs, reduceat)
    line("the same, aligned by fraction of their length", by_fraction, reduceat)
    line("cursor move over them (readout + every line)", cursor, reduceat, 3)
    print(f"{'':<44} {'':8}     {smoothed / small:7.1f}x the 1k-point redraw (1M, EMA 0.9)")
    line("re-smooth 1M points (smoothing changed)", resmooth, reduceat, 200)
    line("append 100 points to 1M (EMA kept running)", append, reduceat)


if __name__ == "__main__":
    asyncio.run(main())
