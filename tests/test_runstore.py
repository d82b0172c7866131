"""The run database: round trips, batching, downsampling, commands, the heartbeat, crash safety, listing."""

from __future__ import annotations

import json
import math
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from smoltui.engine import runstore
from smoltui.engine.errors import UserError
from smoltui.engine.metric_blocks import BLOCK_ROWS
from smoltui.engine.runstore import RunStore, list_run_dirs


@pytest.fixture
def run_dir(workspace) -> Path:
    return workspace / "runs" / "run-1"


@pytest.fixture
def writer(run_dir):
    store = RunStore.create(run_dir, "run-1", {"config": {"lr": 3e-4, "layers": 2}, "device": "cpu"})
    yield store
    store.close()


def run_python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def brute_force_buckets(series, points, start=None, end=None):
    """What metrics_downsampled must return, computed the obvious way in Python."""
    inside = [(s, v) for s, v in series if (start is None or s >= start) and (end is None or s <= end)]
    if not inside:
        return []
    first, last = inside[0][0], inside[-1][0]
    width = -(-(last - first + 1) // points)
    buckets: dict[int, list] = {}
    for step, value in inside:
        buckets.setdefault((step - first) // width, []).append((step, value))
    out = []
    for rows in buckets.values():
        values = [v for _, v in rows if not math.isnan(v)]
        out.append(
            (
                rows[0][0],
                rows[-1][0],
                min(values, default=math.nan),
                max(values, default=math.nan),
                sum(values) / len(values) if values else math.nan,
                rows[-1][1],
            )
        )
    return out


def same(a, b):
    return all(x == y or (math.isnan(x) and math.isnan(y)) or math.isclose(x, y) for x, y in zip(a, b, strict=True))


# -- round trip and batching ------------------------------------------------------------------------------


def test_round_trip_of_meta_metrics_samples_and_events(writer, run_dir):
    writer.log_metrics(0, {"train/loss": 4.5, "lr": 0.0})
    writer.log_metrics(1, {"train/loss": 4.25, "lr": 1e-4, "tokens_seen": 512})
    writer.log_sample(1, "To be", "To be or not")
    writer.log_event("info", "checkpoint", "saved step 1")
    writer.set_meta(dtype="fp32", hooks=["act_stats"], dataset=Path("/data/corpus.txt"))
    writer.update_status("running")
    writer.close()

    reader = RunStore.open(run_dir)
    meta = reader.meta()
    assert meta["config"] == {"lr": 3e-4, "layers": 2}
    assert meta["run_id"] == reader.run_id == "run-1"
    assert (meta["dtype"], meta["hooks"], meta["dataset"]) == ("fp32", ["act_stats"], "/data/corpus.txt")
    assert meta["status"] == "running" and meta["pid"] == os.getpid() and meta["host"] == socket.gethostname()
    assert meta["schema_version"] == runstore.SCHEMA_VERSION
    assert reader.metric_names() == ["lr", "tokens_seen", "train/loss"]
    assert reader.metrics_since("train/loss") == [(0, 4.5), (1, 4.25)]
    assert reader.last_metric("tokens_seen") == (1, 512.0)
    assert reader.last_metric("missing") is None
    assert reader.latest_metrics() == {"lr": (1, 1e-4), "tokens_seen": (1, 512.0), "train/loss": (1, 4.25)}
    [sample] = reader.samples()
    assert (sample.step, sample.prompt, sample.text) == (1, "To be", "To be or not")
    [event] = reader.events()
    assert (event.level, event.kind, event.message) == ("info", "checkpoint", "saved step 1")
    assert reader.samples(after_id=sample.id) == [] and reader.events(after_id=event.id) == []
    reader.close()


def test_nan_and_infinity_survive_and_a_step_logged_twice_keeps_the_last_value(writer, run_dir):
    writer.log_metrics(0, {"loss": 1.0})
    writer.log_metrics(1, {"loss": math.nan})
    writer.log_metrics(2, {"loss": math.inf})
    writer.log_metrics(0, {"loss": 0.5})
    writer.flush()
    [(s0, v0), (s1, v1), (s2, v2)] = RunStore.open(run_dir).metrics_since("loss")
    assert (s0, v0, s1, s2, v2) == (0, 0.5, 1, 2, math.inf) and math.isnan(v1)


def test_steps_must_be_integers_and_values_numbers(writer):
    with pytest.raises(TypeError):
        writer.log_metrics(1.5, {"loss": 1.0})
    with pytest.raises(ValueError):
        writer.log_metrics(1, {"loss": "high"})


def test_nothing_is_visible_before_a_flush_and_everything_after(writer, run_dir):
    reader = RunStore.open(run_dir)
    for step in range(100):
        writer.log_metrics(step, {"loss": 1 / (step + 1)})
    writer.log_sample(5, "a", "b")
    writer.log_event("info", "note", "hello")
    assert reader.metrics_since("loss") == [] and reader.samples() == [] and reader.events() == []
    writer.flush()
    assert len(reader.metrics_since("loss")) == 100
    assert len(reader.samples()) == 1 and len(reader.events()) == 1


class FakeClock:
    """Stands in for the `time` module inside runstore, so a test decides when a second has passed."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def time(self) -> float:
        return self.now

    monotonic = time

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_the_writer_flushes_by_itself_once_the_interval_has_passed(run_dir, monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(runstore, "time", clock)
    with RunStore.create(run_dir, "run-1") as writer:
        reader = RunStore.open(run_dir)
        writer.log_metrics(0, {"loss": 1.0})
        clock.sleep(0.99)
        writer.log_metrics(1, {"loss": 0.9})
        assert reader.metrics_since("loss") == []
        clock.sleep(0.02)
        writer.log_metrics(2, {"loss": 0.8})
        assert reader.metrics_since("loss") == [(0, 1.0), (1, 0.9), (2, 0.8)]
        writer.log_metrics(3, {"loss": 0.7})
        assert len(reader.metrics_since("loss")) == 3  # the next second has just begun


def test_warnings_errors_and_status_changes_are_written_at_once(writer, run_dir):
    reader = RunStore.open(run_dir)
    writer.log_event("info", "note", "waits for the next flush")
    assert reader.events() == []
    writer.log_event("warning", "nan", "loss is NaN at step 12")
    assert [e.kind for e in reader.events()] == ["note", "nan"]
    writer.update_status("running")
    writer.update_status("paused")
    assert reader.meta()["status"] == "paused"
    writer.update_status("finished")
    assert reader.meta()["ended_at"] >= reader.meta()["started_at"]
    with pytest.raises(ValueError):
        writer.update_status("sleeping")
    with pytest.raises(ValueError):
        writer.log_event("loud", "x", "y")


def test_a_writer_reopened_later_continues_the_run(writer, run_dir):
    writer.log_metrics(0, {"loss": 2.0})
    writer.close()
    with RunStore.open(run_dir, readonly=False) as again:
        for step in range(1, 300):
            again.log_metrics(step, {"loss": 2.0 - step / 1000})
    reader = RunStore.open(run_dir)
    assert reader.metrics_since("loss")[:2] == [(0, 2.0), (1, 1.999)]
    assert reader.metrics_downsampled("loss", 1) == [(0, 299, 1.701, 2.0, pytest.approx(1.8505), 1.701)]


# -- queries ----------------------------------------------------------------------------------------------


def test_metrics_since_returns_only_newer_steps(writer, run_dir):
    for step in range(0, 50, 2):
        writer.log_metrics(step, {"loss": float(step), "other": -1.0})
    writer.flush()
    reader = RunStore.open(run_dir)
    assert reader.metrics_since("loss", after_step=40) == [(42, 42.0), (44, 44.0), (46, 46.0), (48, 48.0)]
    assert reader.metrics_since("loss", after_step=41)[0] == (42, 42.0)
    assert reader.metrics_since("loss", after_step=48) == []
    assert reader.metrics_since("never-logged", after_step=0) == []


def test_downsampling_keeps_a_spike_and_matches_a_brute_force_computation(writer, run_dir):
    series = [(step, 3.0 - step / 5000) for step in range(5000)]
    series[3333] = (3333, 50.0)  # a spike that the mean would hide
    for step, value in series:
        writer.log_metrics(step, {"loss": value})
    writer.flush()
    reader = RunStore.open(run_dir)

    buckets = reader.metrics_downsampled("loss", points=200)
    assert len(buckets) == 200
    assert max(b.max for b in buckets) == 50.0
    [spiky] = [b for b in buckets if b.max == 50.0]
    assert spiky.first_step <= 3333 <= spiky.last_step and spiky.min < 3.0
    assert (buckets[0].first_step, buckets[-1].last_step) == (0, 4999)
    for got, want in zip(buckets, brute_force_buckets(series, 200), strict=True):
        assert same(got, want)

    window = reader.metrics_downsampled("loss", points=10, start_step=1000, end_step=1999)
    assert (window[0].first_step, window[-1].last_step, len(window)) == (1000, 1999, 10)
    assert reader.metrics_downsampled("loss", points=10, start_step=6000) == []
    assert reader.metrics_downsampled("nothing", points=10) == []
    assert len(reader.metrics_downsampled("loss", points=1)) == 1
    with pytest.raises(ValueError):
        reader.metrics_downsampled("loss", points=0)


def test_downsampling_is_exact_for_sparse_series_gaps_nans_and_any_window(writer, run_dir):
    rng = random.Random(7)
    steps = sorted(rng.sample(range(20_000), 3000)) + list(range(20_000, 20_000 + 4 * BLOCK_ROWS))
    series = [(s, math.nan if rng.random() < 0.01 else rng.gauss(0, 1)) for s in steps]
    for step, value in series:
        writer.log_metrics(step, {"x": value})
        if rng.random() < 0.01:
            writer.flush()  # blocks get refreshed across many partial flushes
    writer.flush()
    reader = RunStore.open(run_dir)
    for _ in range(60):
        points = rng.choice([1, 2, 3, 7, 50, 200, 1000])
        start = rng.choice([None, rng.randrange(-100, 21_000)])
        end = rng.choice([None, rng.randrange(0, 21_000)])
        got = reader.metrics_downsampled("x", points, start, end)
        want = brute_force_buckets(series, points, start, end)
        assert len(got) == len(want), (points, start, end)
        for g, w in zip(got, want, strict=True):
            assert same(g, w), (points, start, end, g, w)


def test_blocks_follow_the_spacing_a_metric_is_logged_at(writer, run_dir):
    series = {"every10": [], "every200": []}
    writer.log_metrics(7, {"single": 1.5})
    for step in range(0, 30_000, 10):
        writer.log_metrics(step, {"every10": math.sin(step)})
        series["every10"].append((step, math.sin(step)))
        if step % 200 == 0:
            writer.log_metrics(step, {"every200": step / 7})
            series["every200"].append((step, step / 7))
            writer.flush()  # so no batch holds two steps of "every200"
    writer.flush()
    reader = RunStore.open(run_dir)
    block_steps = dict(reader._query("SELECT name, block_steps FROM metric_names"))
    assert block_steps == {"single": None, "every10": 10 * BLOCK_ROWS, "every200": 200 * BLOCK_ROWS}
    assert reader.metrics_downsampled("single") == [(7, 7, 1.5, 1.5, 1.5, 1.5)]
    for name, points, start in [("every10", 200, None), ("every10", 33, 1234), ("every200", 50, None)]:
        got = reader.metrics_downsampled(name, points, start)
        want = brute_force_buckets(series[name], points, start)
        assert len(got) == len(want) and all(same(g, w) for g, w in zip(got, want, strict=True))


def _query_plans(store: RunStore, call) -> list[str]:
    """EXPLAIN QUERY PLAN of every statement `call` runs on the store's connection, with its parameters."""
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)
    call()
    store._conn.set_trace_callback(None)
    return [
        " | ".join(row[3] for row in store._conn.execute("EXPLAIN QUERY PLAN " + sql))
        for sql in statements
        if sql.lstrip().upper().startswith(("SELECT", "WITH"))
    ]


def test_both_series_queries_search_the_primary_key_and_never_scan_the_metrics(writer, run_dir):
    for step in range(3000):
        writer.log_metrics(step, {"loss": 1.0, "lr": 0.1})
    writer.flush()
    reader = RunStore.open(run_dir)

    since = _query_plans(reader, lambda: reader.metrics_since("loss", 2900))
    assert any("SEARCH metrics USING PRIMARY KEY (name_id=? AND step>?)" in plan for plan in since)
    downsampled = _query_plans(reader, lambda: reader.metrics_downsampled("loss", 20))
    plans = " || ".join(downsampled)
    assert "SEARCH metric_blocks USING PRIMARY KEY (name_id=? AND block>? AND block<?)" in plans
    assert "SEARCH m USING PRIMARY KEY (name_id=? AND step>? AND step<?)" in plans
    assert "SCAN metrics" not in plans and "SCAN m " not in plans + " "


# -- concurrency --------------------------------------------------------------------------------------------


def test_readers_in_other_processes_follow_a_writer_that_keeps_writing(run_dir):
    with RunStore.create(run_dir, "run-1", flush_interval_s=0.01) as writer:
        reader_code = """
            import sys, time
            from smoltui.engine.runstore import RunStore
            store = RunStore.open(sys.argv[1])
            print("ready", flush=True)
            seen, polls, deadline = -1, 0, time.monotonic() + 20
            while seen < 2999 and time.monotonic() < deadline:
                rows = store.metrics_since("loss", seen)
                assert [s for s, _ in rows] == list(range(seen + 1, seen + 1 + len(rows))), rows[:3]
                seen = rows[-1][0] if rows else seen
                store.metrics_downsampled("loss", 50)
                polls += 1
            print(seen, polls)
        """
        readers = [run_python(reader_code, str(run_dir)) for _ in range(3)]
        assert [reader.stdout.readline() for reader in readers] == ["ready\n"] * 3
        for step in range(3000):
            writer.log_metrics(step, {"loss": 1.0 / (step + 1)})
            if step % 100 == 0:
                time.sleep(0.01)
        writer.flush()
        for reader in readers:
            out, err = reader.communicate(timeout=30)
            assert reader.returncode == 0, err
            last_seen, polls = map(int, out.split())
            assert last_seen == 2999 and polls > 3  # it saw the series grow, not just the end


def test_commands_sent_from_another_process_reach_the_trainer_while_it_writes(run_dir):
    with RunStore.create(run_dir, "run-1", flush_interval_s=0.005) as writer:
        sender = run_python(
            """
            import sys
            from smoltui.engine.runstore import RunStore
            store = RunStore.open(sys.argv[1])
            ids = [store.send_command(kind, {"n": n}) for n, kind in enumerate(["pause", "resume", "sample"] * 20)]
            print(ids[-1])
            """,
            str(run_dir),
        )
        handled = []
        step, deadline = 0, time.monotonic() + 30
        while len(handled) < 60 and time.monotonic() < deadline:
            writer.log_metrics(step, {"loss": 1.0})
            for command in writer.pending_commands():
                handled.append((command.kind, command.payload["n"]))
                writer.mark_done(command.id)
            step += 1
        _, err = sender.communicate(timeout=30)
        assert sender.returncode == 0, err
    assert handled == [(kind, n) for n, kind in enumerate(["pause", "resume", "sample"] * 20)]
    assert RunStore.open(run_dir).pending_commands() == []


def test_a_viewer_can_send_commands_and_unknown_kinds_are_refused(writer, run_dir):
    viewer = RunStore.open(run_dir)
    first = viewer.send_command("checkpoint")
    second = writer.send_command("stop", {"reason": "user"})
    assert [(c.id, c.kind, c.payload) for c in writer.pending_commands()] == [
        (first, "checkpoint", None),
        (second, "stop", {"reason": "user"}),
    ]
    writer.mark_done(first)
    assert [c.id for c in viewer.pending_commands()] == [second]
    with pytest.raises(UserError, match="unknown command 'explode'"):
        viewer.send_command("explode")


def test_the_writer_keeps_writing_while_a_reader_holds_a_read_transaction(writer, run_dir):
    writer.log_metrics(0, {"loss": 1.0})
    writer.flush()
    holder = sqlite3.connect(f"{(run_dir / 'run.db').as_uri()}?mode=ro", uri=True, isolation_level=None)
    holder.execute("BEGIN")
    assert holder.execute("SELECT count(*) FROM metrics").fetchone() == (1,)
    for step in range(1, 2000):
        writer.log_metrics(step, {"loss": 1.0})
        if step % 100 == 0:
            writer.flush()
    writer.flush()
    assert holder.execute("SELECT count(*) FROM metrics").fetchone() == (1,)  # its snapshot is stable
    holder.execute("COMMIT")
    assert holder.execute("SELECT count(*) FROM metrics").fetchone() == (2000,)
    holder.close()


def test_a_writer_killed_mid_stream_leaves_every_flushed_batch_intact(run_dir):
    RunStore.create(run_dir, "run-1").close()
    trainer = run_python(
        """
        import sys
        from smoltui.engine.runstore import RunStore
        store = RunStore.open(sys.argv[1], readonly=False, flush_interval_s=0.002)
        store.update_status("running")
        step = 0
        while True:
            store.log_metrics(step, {"a": step, "b": -step, "c": step * 0.5})
            if step % 97 == 0:
                store.log_sample(step, "p", "t" * 200)
            step += 1
        """,
        str(run_dir),
    )
    reader = RunStore.open(run_dir)
    deadline = time.monotonic() + 30
    while (reader.last_metric("c") or (0, 0))[0] < 3000 and time.monotonic() < deadline:
        time.sleep(0.02)
    trainer.send_signal(signal.SIGKILL)
    trainer.wait(timeout=10)
    reader.close()

    after = RunStore.open(run_dir)
    assert after._conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    steps = {name: [s for s, _ in after.metrics_since(name)] for name in ("a", "b", "c")}
    assert len(steps["a"]) >= 3000
    assert steps["a"] == steps["b"] == steps["c"] == list(range(len(steps["a"])))  # one batch, one transaction
    assert after.status(now=time.time()) == "lost"  # its pid is gone
    summarised = after._conn.execute(
        "SELECT n.name, sum(b.count) FROM metric_blocks b JOIN metric_names n ON n.id = b.name_id GROUP BY n.name"
    ).fetchall()
    assert summarised == [(name, len(steps[name])) for name in ("a", "b", "c")]  # blocks agree with the rows


# -- heartbeat --------------------------------------------------------------------------------------------


def test_the_heartbeat_thread_keeps_a_busy_trainer_alive(writer, run_dir):
    writer.update_status("running")
    writer.start_heartbeat(interval_s=0.05)
    reader = RunStore.open(run_dir)
    first = reader.meta()["heartbeat"]
    time.sleep(0.3)  # the "training loop" logs nothing meanwhile
    assert reader.meta()["heartbeat"] > first
    assert reader.status() == "running"
    writer.close()
    stopped = reader.meta()["heartbeat"]
    time.sleep(0.15)
    assert reader.meta()["heartbeat"] == stopped


# -- files, errors, listing --------------------------------------------------------------------------------


def test_the_run_folder_and_database_are_owner_only(writer, run_dir):
    assert run_dir.stat().st_mode & 0o777 == 0o700
    assert (run_dir / "run.db").stat().st_mode & 0o777 == 0o600
    assert not (run_dir / "run.db.creating").exists()


def test_missing_foreign_and_duplicate_runs_are_user_errors(tmp_path, writer, run_dir, monkeypatch):
    monkeypatch.setattr(runstore, "_OPEN_RETRY_S", 0.1)
    with pytest.raises(UserError, match="no run at .*; `smoltui runs` lists the runs"):
        RunStore.open(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no run at"):
        RunStore.open(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "run.db").write_bytes(b"not sqlite at all" * 100)
    with pytest.raises(UserError, match="not a readable run database"):
        RunStore.open(tmp_path / "junk")
    (tmp_path / "other").mkdir()
    sqlite3.connect(tmp_path / "other" / "run.db").execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(UserError, match="not a smoltui run database"):
        RunStore.open(tmp_path / "other")
    with pytest.raises(UserError, match="a run already exists"):
        RunStore.create(run_dir, "run-1")
    assert RunStore.open(run_dir / "run.db").run_dir == run_dir  # the file itself is accepted too


def test_list_run_dirs_lists_runs_newest_first(workspace):
    assert list_run_dirs(workspace) == []
    for name in ("b-old", "a-new"):
        RunStore.create(workspace / "runs" / name, name).close()
        time.sleep(0.01)
    (workspace / "runs" / "not-a-run").mkdir()
    assert [d.name for d in list_run_dirs(workspace)] == ["a-new", "b-old"]


def test_the_run_store_loads_neither_torch_nor_textual():
    code = (
        "import json, sys, smoltui.engine.runstore, smoltui.engine.metrics_export\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    loaded = {m.split(".")[0] for m in json.loads(out.stdout)}
    assert not loaded & {"torch", "textual", "numpy", "transformers"}
