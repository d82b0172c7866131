"""How fast the run dashboard opens a long run, polls a live one and answers keys, against references measured in
the same run.

(a) Opening a finished run with 1,000,000 steps (loss, lr, grad norm, tokens/s and tokens seen at every step):
    the time from `show_run` to the first paint with its curves (a downsampled preview), and to the paint of the
    full loss history, against LineChart's own render of the same 1M points (the reference); the same open with
    the history read in one go (`metrics_since` from the start) for comparison; then a redraw of the loss chart.
(b) One poll of a live run (the read in the worker and the apply on the UI thread) with nothing new and with 100
    new steps, against one bare `metrics_since` call.
(c) Key-press repaint latency: `l` (log-y) pressed 40 times while a tiny model trains in its own process and the
    dashboard polls it at 4 Hz, from the key to the first screen update that shows it; against the same on the
    idle dashboard of a finished run.

Run: uv run python bench/bench_dashboard.py   (targets: redraw < 50 ms, key repaint p95 < 100 ms; asserts nothing)
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import socket
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bench_chart import median_ms  # bench/ is on the path when a benchmark runs as a script
from textual import events
from textual.app import App, ComposeResult
from textual.reactive import reactive

from smoltui.engine import run_feed
from smoltui.engine.config import TrainConfig
from smoltui.engine.run_feed import RunFeed
from smoltui.engine.runs import attach, launch_run
from smoltui.engine.runstore import RunStore
from smoltui.screens.train import TrainScreen
from smoltui.widgets.line_chart import LineChart
from smoltui.widgets.run_dashboard import RunDashboard

SIZE = (120, 40)
POINTS = 1_000_000
METRICS = ("train/loss", "lr", "grad_norm", "tokens_per_s", "tokens_seen")


class DashboardApp(App[None]):
    """What TrainScreen reads from SmolApp, with the screen updates timed."""

    CSS_PATH = str(Path(__file__).parents[1] / "smoltui" / "smoltui.tcss")

    session_model = reactive(None)
    pulse = reactive(None)
    pulse_known = True
    model_loading = None
    start_run = None
    start_overlay = ()
    recent_sources: list[str] = []

    def __init__(self, workspace: Path, refresh_fps: float = 4.0) -> None:
        super().__init__()
        self.workspace, self.read_only, self.refresh_fps = workspace, False, refresh_fps
        self.displays: list[float] = []

    def on_mount(self) -> None:
        self.push_screen(TrainScreen())

    def _display(self, screen, renderable) -> None:
        if renderable is not None:
            self.displays.append(time.perf_counter())
        super()._display(screen, renderable)


class ChartApp(App[None]):
    def __init__(self, size: tuple[int, int]) -> None:
        super().__init__()
        self.chart_size = size

    def compose(self) -> ComposeResult:
        chart = LineChart(smoothing=0.6)
        chart.styles.width, chart.styles.height = self.chart_size
        yield chart


def loss(step):
    """A falling loss with wiggles; takes a step number or an array of them."""
    return 1.5 + 3.0 * np.exp(-step / 200_000) + 0.1 * np.sin(step)


def step_metrics(step: int) -> dict[str, float]:
    """What a trainer logs at each step, with the falling loss."""
    return {
        "train/loss": float(loss(step)),
        "lr": 3e-4,
        "grad_norm": 1.0,
        "tokens_per_s": 1e4,
        "tokens_seen": step * 128,
    }


def write_long_run(workspace: Path, run_id: str) -> Path:
    run_dir = workspace / "runs" / run_id
    with RunStore.create(run_dir, run_id, {"model_source": "tiny", "corpus": "x.txt", "max_steps": POINTS}) as store:
        store.flush_interval_s = math.inf
        for step in range(1, POINTS + 1):
            store.log_metrics(step, step_metrics(step))
            if step % 1000 == 0:
                store.log_metrics(step, {"val/loss": float(loss(step)) + 0.1})
            if step % 20_000 == 0:
                store.flush()
        store.update_status("finished")
    return run_dir


async def wait_for(predicate: Callable[[], object], timeout: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("the dashboard did not get there in time")
        await asyncio.sleep(0.001)


def first_display_after(app: DashboardApp, moment: float) -> float:
    return next(t for t in app.displays if t > moment)


async def open_run(workspace: Path, run_id: str) -> tuple[float, float, float, tuple[int, int]]:
    """(first paint with data, paint of the full loss, redraw of the loss chart) in ms, and the chart's size."""
    app = DashboardApp(workspace)
    applied: list[tuple[float, int]] = []
    original = RunDashboard._apply

    def timed_apply(self, index, delta):
        original(self, index, delta)
        applied.append((time.perf_counter(), len(self.loss_chart.series("train loss"))))

    RunDashboard._apply = timed_apply
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            screen = app.screen
            start = time.perf_counter()
            screen.show_run(run_id)
            await wait_for(lambda: applied and app.displays[-1] > applied[0][0])
            first = first_display_after(app, applied[0][0]) - start
            await wait_for(lambda: applied[-1][1] == POINTS and app.displays[-1] > applied[-1][0])
            full = first_display_after(app, next(t for t, n in applied if n == POINTS)) - start
            chart = screen.dashboard.loss_chart
            redraw = median_ms(chart.render_strips)
            size = (chart.size.width, chart.size.height)
    finally:
        RunDashboard._apply = original
    return first * 1000, full * 1000, redraw, size


async def reference_render(size: tuple[int, int]) -> float:
    """LineChart alone drawing the same 1M points at the size of the dashboard's loss chart."""
    app = ChartApp(size)
    async with app.run_test(size=(size[0] + 2, size[1] + 2)) as pilot:
        await pilot.pause()
        chart = app.query_one(LineChart)
        steps = np.arange(1, POINTS + 1, dtype=np.float64)
        chart.set_series("train/loss", steps, loss(steps))
        return median_ms(chart.render_strips)


def line(label: str, took: float, reference: float, target: float | None = None) -> None:
    verdict = "" if target is None else ("  ok" if took < target else f"  OVER the {target:g} ms target")
    print(f"  {label:<52} {took:9.2f} ms  {took / reference:8.1f}x reference{verdict}")


async def bench_open(root: Path) -> None:
    workspace = root / "long"
    start = time.perf_counter()
    write_long_run(workspace, "long-run")
    took = time.perf_counter() - start
    print(f"(a) a finished run of {POINTS:,} steps x {len(METRICS)} metrics (written in {took:.0f} s)")
    first, full, redraw, size = await open_run(workspace, "long-run")
    reference = await reference_render(size)
    saved = run_feed.FULL_READ_BELOW
    run_feed.FULL_READ_BELOW = math.inf  # every series read whole, in one go
    try:
        one_go, _, _, _ = await open_run(workspace, "long-run")
    finally:
        run_feed.FULL_READ_BELOW = saved
    print(f"  {f'reference: LineChart.render_strips of the 1M points, {size[0]}x{size[1]}':<52} {reference:9.2f} ms")
    line("show_run -> first paint (downsampled preview)", first, reference)
    line("show_run -> paint of the full 1M-point loss", full, reference)
    line("show_run -> first paint, every series read whole", one_go, reference)
    line("redraw of the loss chart (1M points, EMA 0.6)", redraw, reference, 50)


async def bench_poll(root: Path) -> None:
    workspace = root / "live"
    run_dir = workspace / "runs" / "live-run"
    writer = RunStore.create(run_dir, "live-run", {"model_source": "tiny", "corpus": "x.txt", "max_steps": 10**9})
    writer.update_status("running")
    writer.set_meta(pid=os.getpid(), host=socket.gethostname())
    writer.start_heartbeat(1.0)
    step = 0

    def log_steps(count: int) -> None:
        nonlocal step
        for _ in range(count):
            step += 1
            writer.log_metrics(step, step_metrics(step))
        writer.flush()

    log_steps(10_000)
    app = DashboardApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        dashboard = app.screen.dashboard
        app.screen.show_run("live-run")
        await wait_for(lambda: dashboard.state.step == step)
        dashboard._set_polling(False)  # the bench polls by hand from here
        await pilot.pause()
        feed: RunFeed = dashboard.feeds[0]
        reader = attach("live-run", workspace).store
        bare_idle = median_ms(lambda: reader.metrics_since("train/loss", step), runs=200)
        idle = median_ms(lambda: (feed.poll(), feed.take()), runs=200)
        polls, applies, bares = [], [], []
        for _ in range(50):
            log_steps(100)
            start = time.perf_counter()
            reader.metrics_since("train/loss", step - 100)
            bares.append(time.perf_counter() - start)
            start = time.perf_counter()
            feed.poll()
            delta = feed.take()
            polls.append(time.perf_counter() - start)
            start = time.perf_counter()
            dashboard._apply(0, delta)
            applies.append(time.perf_counter() - start)
        reader.close()
    writer.update_status("stopped")
    writer.close()
    bare = statistics.median(bares) * 1000
    print("(b) one poll of a live run at 120x40")
    print(f"  {'reference: bare metrics_since, nothing new':<52} {bare_idle:9.3f} ms")
    line("poll with nothing new (meta + 6 metrics + logs)", idle, bare_idle)
    print(f"  {'reference: bare metrics_since of 100 new steps':<52} {bare:9.3f} ms")
    line("poll with 100 new steps (read only)", statistics.median(polls) * 1000, bare)
    line("apply 100 new steps on the UI thread", statistics.median(applies) * 1000, bare)


async def key_latencies(app: DashboardApp, pilot, presses: int = 40) -> list[float]:
    chart = app.screen.dashboard.loss_chart
    rendered: list[tuple[float, bool]] = []
    original = chart.render_strips

    def timed_render():
        strips = original()
        rendered.append((time.perf_counter(), chart.log_y))
        return strips

    chart.render_strips = timed_render
    latencies = []
    rng = random.Random(0)
    for _ in range(presses):
        await asyncio.sleep(rng.uniform(0.05, 0.3))  # land anywhere between polls
        wanted = not chart.log_y
        pressed = time.perf_counter()
        app.post_message(events.Key("l", "l"))
        await wait_for(lambda w=wanted, p=pressed: any(t > p and log == w for t, log in rendered), timeout=10)
        drawn = next(t for t, log in rendered if t > pressed and log == wanted)
        await wait_for(lambda d=drawn: app.displays[-1] > d, timeout=10)
        latencies.append((first_display_after(app, drawn) - pressed) * 1000)
    await pilot.pause()
    return latencies


def percentiles(values: list[float]) -> tuple[float, float, float]:
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))], ordered[-1]


async def bench_keys(root: Path) -> None:
    workspace = root / "keys"
    with RunStore.create(workspace / "runs" / "idle-run", "idle-run", {"max_steps": 5000}) as store:
        for step in range(1, 5001):
            store.log_metrics(step, {"train/loss": float(loss(step * 200))})
        store.update_status("finished")
    app = DashboardApp(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        app.screen.show_run("idle-run")
        await wait_for(lambda: app.screen.dashboard.feeds and not app.screen.dashboard.polling)
        idle = await key_latencies(app, pilot)

    corpus = root / "corpus.txt"
    words = "the quick brown fox jumps over a lazy dog while seven small models learn to spell".split()
    rng = random.Random(0)
    corpus.write_text("\n".join(" ".join(rng.choice(words) for _ in range(12)) for _ in range(1000)))
    config = TrainConfig(
        model="tiny",
        corpus=str(corpus),
        context=32,
        batch_size=4,
        max_steps=100_000,
        eval_every=50,
        eval_batches=4,
        sample_every=100,
        sample_length=32,
    )
    handle = launch_run(config, workspace)
    try:
        app = DashboardApp(workspace, refresh_fps=4.0)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            app.screen.show_run(handle.run_id)
            dashboard = app.screen.dashboard
            await wait_for(lambda: dashboard.state.step >= 20, timeout=180)
            first_step = dashboard.state.step
            training = await key_latencies(app, pilot)
            steps_seen = dashboard.state.step - first_step
    finally:
        handle.stop()
        handle.wait(timeout=60)
        handle.close()
    print(f"(c) key-press repaint latency, `l` pressed {len(training)} times at 120x40")
    p50, p95, worst = percentiles(idle)
    print(f"  {'reference: idle dashboard of a finished run':<46} p50 {p50:5.1f}  p95 {p95:5.1f}  max {worst:5.1f} ms")
    t50, t95, tworst = percentiles(training)
    verdict = "ok" if t95 < 100 else "OVER the 100 ms target"
    print(
        f"  {'while a tiny model trains, polled at 4 Hz':<46} p50 {t50:5.1f}  p95 {t95:5.1f}  max {tworst:5.1f} ms"
        f"  (p95 {t95 / p95:.1f}x reference) {verdict}"
    )
    print(f"  (the run made {steps_seen} steps meanwhile, each read and drawn by the dashboard)")


async def main() -> None:
    print(f"dashboard at {SIZE[0]}x{SIZE[1]}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        await bench_open(root)
        await bench_poll(root)
        await bench_keys(root)


if __name__ == "__main__":
    asyncio.run(main())
