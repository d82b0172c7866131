"""Benchmark of the run database: logging cost, flush cost, and the dashboard's two queries on a 1M series.

Run: uv run python bench/bench_runstore.py     (prints; asserts nothing)
Each figure is printed beside its reference measured in the same run, and their ratio.
"""

from __future__ import annotations

import math
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from smoltui.engine.runstore import RunStore

SERIES_POINTS = 1_000_000
NAMES = ("train/loss", "lr", "grad_norm", "tokens_per_s", "tokens_seen")


def best_of(fn, repeat: int = 7) -> tuple[float, float]:
    """(best, median) seconds of `repeat` calls."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def bench_logging(root: Path) -> None:
    seconds, steps_per_second = 100, 1000  # the buffer holds what one second of a fast tiny model logs
    calls = seconds * steps_per_second
    loss = 2.5

    def reference() -> None:
        for step in range(calls):
            values = {"train/loss": loss, "lr": 3e-4, "grad_norm": 1.0, "tokens_per_s": 1e4, "tokens_seen": step}
            del values

    store = RunStore.create(root / "logging", "logging", flush_interval_s=math.inf)  # flushes timed apart
    log_s, flushes = 0.0, []
    for second in range(seconds):
        log = store.log_metrics
        start = time.perf_counter()
        for step in range(second * steps_per_second, (second + 1) * steps_per_second):
            log(step, {"train/loss": loss, "lr": 3e-4, "grad_norm": 1.0, "tokens_per_s": 1e4, "tokens_seen": step})
        log_s += time.perf_counter() - start
        start = time.perf_counter()
        store.flush()
        flushes.append(time.perf_counter() - start)
    ref_s, _ = best_of(reference, 3)
    ref_ns, log_ns = ref_s / calls * 1e9, log_s / calls * 1e9
    per_flush = statistics.median(flushes)
    rows = steps_per_second * len(NAMES)
    print(f"(a) log_metrics with {len(NAMES)} metrics, {calls:,} calls, one flush per {steps_per_second} steps")
    print(f"    reference, build the dict only: {ref_ns:8.0f} ns/call")
    print(f"    build the dict + log_metrics:   {log_ns:8.0f} ns/call   ratio {log_ns / ref_ns:.1f}x")
    print(f"    log_metrics alone:              {log_ns - ref_ns:8.0f} ns/call")
    print(
        f"    flush of {steps_per_second} steps ({rows} rows): {per_flush * 1e3:.2f} ms median"
        f" = {per_flush / rows * 1e9:.0f} ns/row"
    )
    per_step_us = (log_ns - ref_ns) / 1e3 + per_flush / steps_per_second * 1e6
    print(f"    logging and flushing together: {per_step_us:.1f} µs per training step")
    start = time.perf_counter()
    for _ in range(10_000):
        store.pending_commands()
    print(f"    pending_commands() with none pending: {(time.perf_counter() - start) / 10_000 * 1e6:.1f} µs/call")
    store.close()


def build_series(root: Path, every: int = 1) -> Path:
    """A run whose train/loss has SERIES_POINTS points, one every `every` steps, with a spike now and then."""
    run_dir = root / f"series-every-{every}"
    start = time.perf_counter()
    with RunStore.create(run_dir, run_dir.name, flush_interval_s=math.inf) as store:
        for point in range(SERIES_POINTS):
            spike = 25.0 if point % 99_991 == 0 else 0.0
            loss = 3.0 * math.exp(-point / 300_000) + 0.1 * math.sin(point) + spike
            store.log_metrics(point * every, {"train/loss": loss})
            if point % 10_000 == 9_999:
                store.flush()
    elapsed = time.perf_counter() - start
    print(f"    (writing {SERIES_POINTS:,} points, one every {every} steps, through log_metrics + flush took")
    print(f"     {elapsed:.1f} s: {elapsed / SERIES_POINTS * 1e6:.1f} µs per point including the block summaries)")
    return run_dir


def bench_queries(run_dir: Path) -> None:
    reader = RunStore.open(run_dir)
    start = time.perf_counter()
    buckets = reader.metrics_downsampled("train/loss", 200)
    cold_s = time.perf_counter() - start
    down_s, down_median = best_of(lambda: reader.metrics_downsampled("train/loss", 200))
    full_s, _ = best_of(lambda: reader.metrics_since("train/loss"), 3)
    conn = sqlite3.connect(f"{(run_dir / 'run.db').as_uri()}?mode=ro", uri=True)
    width = -(-SERIES_POINTS // 200)
    raw_s, _ = best_of(
        lambda: conn.execute(
            "SELECT min(step), min(value), max(value), avg(value) FROM metrics WHERE name_id = 1 GROUP BY step / ?",
            (width,),
        ).fetchall(),
        3,
    )
    zoom_s, _ = best_of(lambda: reader.metrics_downsampled("train/loss", 200, 400_000, 600_000))
    print(f"(b) metrics_downsampled of {SERIES_POINTS:,} points to {len(buckets)} buckets")
    print(
        f"    downsampled: {down_s * 1e3:6.1f} ms best, {down_median * 1e3:.1f} ms median,"
        f" {cold_s * 1e3:.1f} ms first call (target < 50 ms)"
    )
    print(f"    reference, full SELECT of the series (metrics_since from the start): {full_s * 1e3:6.1f} ms")
    print(f"    ratio full/downsampled: {full_s / down_s:.0f}x")
    print(
        f"    without block summaries (GROUP BY over every raw row): {raw_s * 1e3:6.1f} ms,"
        f" {raw_s / down_s:.0f}x slower"
    )
    print(f"    zoomed window of 200,000 steps to 200 buckets: {zoom_s * 1e3:.1f} ms")
    spikes = sum(b.max >= 20 for b in buckets)
    print(f"    spikes visible as bucket max: {spikes} of {SERIES_POINTS // 99_991 + 1}")

    last = SERIES_POINTS - 1
    since_s, _ = best_of(lambda: reader.metrics_since("train/loss", last - 100), 50)
    print("(c) metrics_since of the last 100 steps of the 1M series")
    print(f"    {since_s * 1e6:.0f} µs   vs full SELECT {full_s * 1e3:.0f} ms: ratio {full_s / since_s:,.0f}x")
    conn.close()
    reader.close()


def main() -> None:
    print(f"sqlite {sqlite3.sqlite_version}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bench_logging(root)
        bench_queries(build_series(root))
        sparse = RunStore.open(build_series(root, every=10))
        sparse_s, _ = best_of(lambda: sparse.metrics_downsampled("train/loss", 200))
        print(f"(b') the same series logged every 10 steps (10M steps) to 200 buckets: {sparse_s * 1e3:.1f} ms")
        sparse.close()


if __name__ == "__main__":
    main()
