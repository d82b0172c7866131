"""The Train screen driven like a person: the form, the live dashboard, its keys and its polling.

Most tests watch runs written by hand into a run store (a finished one, or a "running" one whose trainer is this
test process); two start real trainers in subprocesses from the form, and stop them whatever happens.
"""

from __future__ import annotations

import math
import os
import random
import socket
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from textual.app import App
from textual.reactive import reactive
from textual.widgets import Input, Static

import smoltui
from smoltui.engine import run_feed
from smoltui.engine.config import SETTINGS, TrainConfig, format_setting, parse_number, parse_setting
from smoltui.engine.run_contract import TERMINAL_STATUSES
from smoltui.engine.run_feed import RunDelta, RunFeed, RunProgressState, bucket_points, eta_seconds
from smoltui.engine.runs import attach, list_runs
from smoltui.engine.runstore import RunStore
from smoltui.formatting import format_clock, format_compact, format_duration
from smoltui.screens.confirm import ConfirmStop
from smoltui.screens.train import TrainScreen
from smoltui.widgets.line_chart import LineChart
from smoltui.widgets.train_form import FIELDS

APP_CSS = Path(smoltui.__file__).parent / "smoltui.tcss"
FIXED_START = 1_700_000_000.0
WORDS = "the quick brown fox jumps over a lazy dog while seven small models learn to spell every word".split()


class TrainTestApp(App[None]):
    """The attributes TrainScreen reads from SmolApp, and nothing else: the screen is the only one."""

    CSS_PATH = str(APP_CSS) if APP_CSS.exists() else None
    session_model = reactive(None)
    pulse = reactive(None)
    pulse_known = True
    model_loading = None
    start_run = None
    start_overlay = ()
    recent_sources: list[str] = []
    shown_progress = None  # the last numbers the dashboard told the header (SmolApp puts them in its header)

    def on_run_progress_shown(self, message) -> None:
        self.shown_progress = message

    def __init__(self, workspace: Path, *, read_only: bool = False, refresh_fps: float = 20.0, session_model=None):
        super().__init__()
        self.workspace = workspace
        self.read_only = read_only
        self.refresh_fps = refresh_fps
        self.set_reactive(TrainTestApp.session_model, session_model)

    def on_mount(self) -> None:
        self.push_screen(TrainScreen())


# -- runs written by hand ---------------------------------------------------------------------------------


class FrozenClock:
    """Stands in for the time module inside the run store, so hand-written runs carry fixed times."""

    monotonic = staticmethod(time.monotonic)

    def __init__(self, start: float) -> None:
        self.now = start

    def time(self) -> float:
        self.now += 0.2
        return self.now


def write_run(
    workspace: Path,
    run_id: str = "20250101-120000-tiny",
    *,
    steps: int = 600,
    status: str = "finished",
    seed: int = 0,
    level: float = 1.4,
    activations: bool = True,
    failure: str | None = None,
) -> Path:
    """A run store with a synthetic loss curve, val points, samples, events and activation statistics.

    Every time in it is fixed, so pictures of it never change; a "running" run names this process as its
    trainer, so it stays alive (not "lost") while the test runs.
    """
    with pytest.MonkeyPatch.context() as patch:
        clock = FrozenClock(FIXED_START)
        patch.setattr("smoltui.engine.runstore.time", clock)
        run_dir = _write_run(workspace, run_id, steps, status, seed, level, activations, failure, clock)
    if status in ("running", "paused"):
        with RunStore.open(run_dir, readonly=False) as store:
            store.set_meta(pid=os.getpid(), host=socket.gethostname(), heartbeat=time.time())
    return run_dir


def _write_run(workspace, run_id, steps, status, seed, level, activations, failure, clock) -> Path:
    rng = np.random.default_rng(seed)
    run_dir = workspace / "runs" / run_id
    config = {"model": "tiny", "corpus": "/data/corpus.txt", "max_steps": 600, "hooks": ["activation_stats:50"]}
    meta = {"config": config, "model_source": "tiny", "corpus": "/data/corpus.txt", "max_steps": 600}
    store = RunStore.create(run_dir, run_id, meta)
    store.update_status("running")
    store.log_event("info", "start", "training tiny on cpu (fp32), context 32, 30,688 parameters.")
    for step in range(1, steps + 1):
        loss = level + 2.8 * math.exp(-step / 120) + float(rng.normal(0, 0.08))
        store.log_metrics(
            step,
            {
                "train/loss": loss,
                "lr": 3e-3 * min(1.0, step / 20),
                "grad_norm": 1 + 0.5 * math.exp(-step / 200) + float(rng.normal(0, 0.05)),
                "tokens_per_s": 9000 + float(rng.normal(0, 300)),
                "tokens_seen": step * 128,
            },
        )
        if step % 50 == 0:
            store.log_metrics(step, {"val/loss": level + 0.1 + 2.8 * math.exp(-step / 120)})
            store.log_sample(step, "\n", f"the quick brown fox at step {step}\njumps over the lazy dog")
            if activations:
                stats = {"mean": 0.01, "std": 1.0 + step / 6000, "absmax": 4.0 + step / 600}
                store.log_metrics(step, {f"act/block{b}/{k}": v * (1 + b) for b in range(2) for k, v in stats.items()})
        if step % 200 == 0:
            store.log_event("info", "checkpoint", f"checkpoint saved at step {step}.")
    store.log_event("warning", "corpus", "the corpus has only 58,963 training tokens; expect overfitting.")
    if failure:
        store.log_event("error", "bad-config", failure)
    if status != "running":
        if status == "finished":
            store.log_event("info", "finished", f"reached max_steps 600; final checkpoint at step {steps}.")
        store.update_status(status)
    times = {"started_at": FIXED_START, "created_at": FIXED_START}
    if status != "running":
        times["ended_at"] = clock.now
    store.set_meta(device="cpu", precision="fp32", parameters=30_688, **times)
    store.close()
    return run_dir


def keep_alive(run_dir: Path) -> RunStore:
    """The writer of a hand-made "running" run, as the trainer would hold it (heartbeat included)."""
    store = RunStore.open(run_dir, readonly=False, flush_interval_s=0.0)
    store.start_heartbeat(0.5)
    return store


@pytest.fixture
def corpus(tmp_path) -> Path:
    """About 60 KB of deterministic word salad: enough for train and val windows of a tiny model."""
    rng = random.Random(0)
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(1000)) + "\n")
    return path


@pytest.fixture
def stop_runs_at_end(workspace):
    """Stops every run the test leaves training, even when it fails."""
    yield
    for summary in list_runs(workspace):
        if summary.status in TERMINAL_STATUSES:
            continue
        handle = attach(summary.run_id, workspace)
        pid = handle.meta().get("pid")
        try:
            handle.stop()
            if handle.wait(timeout=30) not in TERMINAL_STATUSES and pid and pid != os.getpid():
                os.kill(pid, 9)
        finally:
            handle.close()


async def wait_until(pilot, predicate, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await pilot.pause(0.05)
    return value


def text_of(screen, selector: str) -> str:
    return str(screen.query_one(selector, Static).render())


def notifications(app) -> list[str]:
    return [notification.message for notification in app._notifications]


async def open_form(pilot) -> TrainScreen:
    screen = pilot.app.screen
    screen.show_form()
    await wait_until(pilot, lambda: screen.form.ready, "the form")
    await pilot.pause()
    return screen


async def wait_for_final_read(pilot, dashboard) -> None:
    """Until an ended run's last data is on screen: the feeds have read it, and the message carrying it is handled."""
    await wait_until(pilot, lambda: dashboard.feeds and not dashboard.polling, "the final read")
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


async def open_run(pilot, run_ref: str, overlay=()) -> TrainScreen:
    screen = pilot.app.screen
    screen.show_run(run_ref, overlay)
    await wait_until(pilot, lambda: screen.dashboard.run_id is not None and screen.dashboard.state.step > 0, "data")
    await pilot.pause()
    return screen


# -- the form ---------------------------------------------------------------------------------------------


def test_the_form_covers_every_setting_but_the_safety_switch():
    assert set(FIELDS) | {"trust_remote_code"} == set(TrainConfig.__dataclass_fields__)
    assert not SETTINGS["trust_remote_code"].in_form


@pytest.mark.parametrize(
    ("text", "whole", "value"),
    [
        ("3e-4", False, 3e-4),
        ("1_000", True, 1000),
        ("1,000", True, 1000),
        ("1e3", True, 1000),
        ("2.5", True, 2.5),
        (" 16 ", True, 16),
        ("abc", True, "abc"),
        ("-1", False, -1.0),
    ],
)
def test_numbers_are_read_leniently(text, whole, value):
    assert parse_number(text, whole) == value
    assert type(parse_number(text, whole)) is type(value)


def test_settings_round_trip_through_their_text():
    defaults = TrainConfig()
    for name, spec in FIELDS.items():
        if spec.kind != "choice":
            assert parse_setting(format_setting(getattr(defaults, name), spec), spec) == getattr(defaults, name), name
    assert parse_setting("n_layer=2, n_embd=64, act=gelu", FIELDS["model_overrides"]) == {
        "n_layer": 2,
        "n_embd": 64,
        "act": "gelu",
    }
    assert parse_setting(r"Once\nupon\ta", FIELDS["sample_prompt"]) == "Once\nupon\ta"


async def test_the_form_is_prefilled_valid_and_offers_the_session_model(workspace):
    model = SimpleNamespace(
        source="my-folder/model", kind="folder", placement=SimpleNamespace(device="cpu", dtype="fp32")
    )
    app = TrainTestApp(workspace, session_model=model)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot)
        assert screen.view == "form"
        config = screen.form.validate()
        assert config == TrainConfig(model="my-folder/model")
        assert "Valid" in text_of(screen, "#form-status")


async def test_the_form_rejects_a_negative_lr_as_you_type_and_start_only_notifies(workspace):
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot)
        lr = screen.form.query_one("#field-lr", Input)
        lr.focus()
        lr.value = ""
        await pilot.press("minus", "1", "e", "minus", "3")
        await pilot.pause()
        assert lr.value == "-1e-3"
        assert text_of(screen, "#error-lr") == "lr must be above 0, not -0.001."
        assert lr.has_class("-invalid")
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert "lr must be above 0, not -0.001." in notifications(app)
        assert app.is_running and screen.view == "form"
        assert list_runs(workspace) == []
        lr.value = "3e-4"
        await pilot.pause()
        assert not lr.has_class("-invalid") and text_of(screen, "#error-lr") == ""


async def test_the_form_puts_each_sentence_under_its_field(workspace, tmp_path):
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        form = (await open_form(pilot)).form
        form.set_field("max_steps", "50")
        await pilot.pause()
        assert form.validate() is not None  # an unset warmup scales with the run
        form.set_field("warmup_steps", "100")
        await pilot.pause()
        assert "warmup_steps (100) must be fewer than max_steps (50)" in text_of(app.screen, "#error-warmup_steps")
        form.set_field("warmup_steps", "5")
        form.set_field("batch_size", "lots")
        await pilot.pause()
        assert text_of(app.screen, "#error-batch_size") == "batch_size must be a whole number above 0, not 'lots'."
        form.set_field("batch_size", "1e1")
        form.set_field("corpus", str(tmp_path / "missing.txt"))
        await pilot.pause()
        assert text_of(app.screen, "#error-corpus").startswith("no such file or folder:")
        assert form.validate() is None
        form.set_field("corpus", "builtin:pydocs")
        form.set_field("hooks", "activation_stats:often")
        await pilot.pause()
        assert "activation_stats takes a positive step interval" in text_of(app.screen, "#error-hooks")


# -- a finished run -----------------------------------------------------------------------------------------


async def test_a_finished_run_shows_its_curves_numbers_samples_and_events(workspace):
    write_run(workspace)
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(pilot, "latest")
        dashboard = screen.dashboard
        await wait_for_final_read(pilot, dashboard)
        chart = dashboard.loss_chart
        assert chart.series_names == ["train loss", "val loss"]
        assert len(chart.series("train loss")) == 600 and len(chart.series("val loss")) == 12
        assert "finished" in text_of(screen, "#run-status") and "step 600 / 600" in text_of(screen, "#run-step")
        details = text_of(screen, "#run-details")
        assert "elapsed 2m09s" in details and "tokens 76,800" in details and "best val" in details
        samples = str(screen.query_one("#samples Static", Static).render())
        assert "step 600" in samples and "jumps over" in samples
        events = str(screen.query_one("#events Static", Static).render())
        assert "checkpoint saved at step 600." in events and "expect overfitting" in events
        assert screen.query_one("#activations").row_count == 2
        assert len(screen.query_one("#lr-chart", LineChart).series("lr")) == 600
        assert not dashboard.polling  # stopped after the final read


async def test_view_keys_change_the_loss_chart(workspace):
    write_run(workspace)
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(pilot, "20250101")
        chart = screen.dashboard.loss_chart
        assert (chart.log_y, chart.smoothing, chart.window) == (False, 0.6, None)
        await pilot.press("l")
        assert chart.log_y
        await pilot.press("l")
        assert not chart.log_y
        await pilot.press("plus", "plus")
        assert chart.smoothing == 0.9
        await pilot.press("minus", "minus", "minus", "minus", "minus")
        assert chart.smoothing == 0.0
        windows = []
        for _ in range(4):
            await pilot.press("z")
            windows.append(chart.window)
        assert windows == [2000, 500, 100, None]


async def test_two_finished_runs_overlaid_both_show_in_the_legend(workspace):
    write_run(workspace, "20250101-120000-tiny")
    write_run(workspace, "20250101-130000-tiny", seed=1, level=1.1)
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(pilot, "20250101-120000-tiny", ["20250101-130000-tiny"])
        chart = screen.dashboard.loss_chart
        await wait_until(pilot, lambda: len(chart.series("130000-tiny")) == 600, "the overlaid run")
        assert chart.series_names == ["120000-tiny", "130000-tiny", "120000-tiny val", "130000-tiny val"]
        assert chart.series("120000-tiny").colour != chart.series("130000-tiny").colour
        assert chart.series("130000-tiny val").colour == chart.series("130000-tiny").colour
        legend = "".join(segment.text for segment in chart.render_line(0))
        assert "120000-tiny" in legend and "130000-tiny" in legend
        assert "vs 130000-tiny" in text_of(screen, "#run-title")


async def test_an_unknown_run_gets_the_engines_sentence(workspace):
    write_run(workspace)
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        app.screen.show_run("nope")
        await wait_until(pilot, lambda: notifications(app), "a notification")
        assert notifications(app) == [f"no run 'nope' in {workspace}; `smoltui runs` lists the runs."]
        assert app.is_running


async def test_a_finished_run_offers_no_controls(workspace):
    write_run(workspace)
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(pilot, "latest")
        for action in ("pause", "resume", "stop_run", "checkpoint", "sample"):
            assert screen.check_action(action, ()) is False, action
        footer = str(screen.query_one("KeyBar #keys").render())
        for word in ("Pause", "Resume", "Stop", "Checkpoint", "Sample"):
            assert word not in footer, word
        await pilot.press("p", "s", "c", "n")
        await pilot.pause(0.2)
        assert not isinstance(app.screen, ConfirmStop) and notifications(app) == []


async def test_read_only_hides_the_controls(workspace, monkeypatch):
    run_dir = write_run(workspace, status="running")
    writer = keep_alive(run_dir)
    try:
        app = TrainTestApp(workspace, read_only=True)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_run(pilot, "latest")
            shown = {binding.action for _, binding, enabled, _ in screen.active_bindings.values() if enabled}
            assert not shown & {"pause", "resume", "stop_run", "checkpoint", "sample", "new_run"}
            assert {"toggle_log_y", "zoom"} <= shown
            await pilot.press("p", "s", "n", "c")
            await pilot.pause(0.2)
            assert writer.pending_commands() == []
    finally:
        writer.close()


# -- a live run, its polling and its controls --------------------------------------------------------------


async def test_polling_reads_only_new_points_and_ends_with_the_run(workspace):
    run_dir = write_run(workspace, steps=100, status="running")
    writer = keep_alive(run_dir)
    try:
        app = TrainTestApp(workspace)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_run(pilot, "latest")
            chart = screen.dashboard.loss_chart
            assert len(chart.series("train loss")) == 100
            for step in range(101, 151):
                writer.log_metrics(step, {"train/loss": 2.0, "tokens_seen": step * 128})
            writer.flush()
            await wait_until(pilot, lambda: len(chart.series("train loss")) == 150, "the new steps")
            assert chart.series("train loss").steps[-1] == 150 and list(chart.series("train loss").steps[:3]) == [
                1,
                2,
                3,
            ]
            assert "step 150 / 600" in text_of(screen, "#run-step")

            screen.show_form()  # hidden: nothing is read
            await pilot.pause()
            writer.log_metrics(151, {"train/loss": 2.0})
            writer.flush()
            await pilot.pause(0.3)
            assert len(chart.series("train loss")) == 150
            await pilot.press("escape", "escape")  # the first leaves the focused field, the second the form
            await wait_until(pilot, lambda: len(chart.series("train loss")) == 151, "the step read on return")

            writer.log_event("info", "finished", "reached max_steps.")
            writer.update_status("finished")
            await wait_until(pilot, lambda: "finished" in text_of(screen, "#run-status"), "the final status")
            await wait_until(pilot, lambda: not screen.dashboard.polling, "polling to stop")
    finally:
        writer.close()


async def test_stop_asks_first_and_pause_is_sent_to_the_trainer(workspace):
    run_dir = write_run(workspace, status="running")
    writer = keep_alive(run_dir)
    try:
        app = TrainTestApp(workspace)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_run(pilot, "latest")
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmStop), "the question")
            await pilot.press("n")
            await pilot.pause(0.2)
            assert app.screen is screen and writer.pending_commands() == []
            await pilot.press("space")
            await wait_until(pilot, lambda: writer.pending_commands(), "the pause command")
            assert [c.kind for c in writer.pending_commands()] == ["pause"]
            assert "pausing…" in text_of(screen, "#run-status")
            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmStop), "the question")
            await pilot.press("y")
            await wait_until(pilot, lambda: len(writer.pending_commands()) == 2, "the stop command")
            assert [c.kind for c in writer.pending_commands()] == ["pause", "stop"]
    finally:
        writer.close()


@pytest.mark.slow
async def test_a_run_started_from_the_form_trains_pauses_resumes_and_stops(workspace, corpus, stop_runs_at_end):
    app = TrainTestApp(workspace, refresh_fps=10)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot)
        form = screen.form
        for name, value in {
            "model": "tiny",
            "corpus": str(corpus),
            "context": "32",
            "batch_size": "4",
            "max_steps": "100000",  # far more than the test waits for: it must not finish first
            "eval_every": "20",
            "sample_every": "20",
        }.items():
            form.set_field(name, value)
        await pilot.pause()
        assert form.validate() is not None
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: screen.view == "dashboard" and screen.dashboard.run_id, "the new run")
        dashboard, chart = screen.dashboard, screen.dashboard.loss_chart
        handle = attach(dashboard.run_id, workspace)
        try:
            await wait_until(pilot, lambda: dashboard.state.step >= 2, "the first steps", timeout=90)
            shown_step, points = text_of(screen, "#run-step"), len(chart.series("train loss"))
            await wait_until(pilot, lambda: len(chart.series("train loss")) > points, "more points on the chart")
            assert text_of(screen, "#run-step") != shown_step

            await pilot.press("p")
            await wait_until(pilot, lambda: "paused" in text_of(screen, "#run-status"), "paused", timeout=30)
            paused_at = handle.store.last_metric("train/loss")[0]
            await pilot.pause(1.0)
            assert handle.store.last_metric("train/loss")[0] == paused_at

            await pilot.press("p")
            await wait_until(pilot, lambda: "running" in text_of(screen, "#run-status"), "running again")
            await wait_until(pilot, lambda: handle.store.last_metric("train/loss")[0] > paused_at, "steps after resume")

            await pilot.press("s")
            await wait_until(pilot, lambda: isinstance(app.screen, ConfirmStop), "the question")
            await pilot.press("y")
            await wait_until(pilot, lambda: "stopped" in text_of(screen, "#run-status"), "stopped", timeout=60)
            assert handle.status() == "stopped"
        finally:
            handle.close()


@pytest.mark.slow
async def test_a_corpus_too_small_is_marked_in_the_form_and_starts_no_run(workspace, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short for any window\n")
    app = TrainTestApp(workspace, refresh_fps=10)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_form(pilot)
        for name, value in {"model": "tiny", "corpus": str(short), "context": "32", "batch_size": "4"}.items():
            screen.form.set_field(name, value)
        await pilot.pause()
        assert "use a longer corpus or a shorter --context" in text_of(screen, "#error-corpus")
        await pilot.press("ctrl+s")
        await pilot.pause(0.3)
        assert screen.view == "form" and list_runs(workspace) == []
        assert any("use a longer corpus" in n for n in notifications(app))
        assert app.is_running


# -- the feed, without an app -------------------------------------------------------------------------------


def test_a_long_history_comes_as_a_downsampled_preview_then_in_full(workspace, monkeypatch):
    monkeypatch.setattr(run_feed, "FULL_READ_BELOW", 100)
    feed = RunFeed(attach(write_run(workspace, steps=300), workspace))
    try:
        assert feed.poll() and feed.poll()  # the full read waits until the preview was taken
        first = feed.take()
        assert first.first and first.status == "finished" and not first.final  # the full loss is still owed
        steps, values = first.replace["train/loss"]
        assert len(steps) <= 2 * run_feed.PREVIEW_POINTS and steps[-1] == 300
        assert len(first.replace["lr"][0]) <= 2 * run_feed.SPARK_POINTS
        assert feed.poll()
        second = feed.take()
        assert second.final and len(second.replace["train/loss"][0]) == 300
        assert feed.ended and not feed.poll()  # the run had ended: that was the final read
    finally:
        feed.close()

    monkeypatch.setattr(run_feed, "PREVIEW_POINTS", 10)
    run_dir = write_run(workspace, "20250101-130000-tiny", steps=300, status="running")
    writer = keep_alive(run_dir)
    feed = RunFeed(attach(run_dir, workspace))
    try:
        feed.poll()
        preview = feed.take().replace["train/loss"]
        assert len(preview[0]) == 20
        writer.log_metrics(301, {"train/loss": 1.0})
        writer.flush()
        feed.poll()
        later = feed.take()
        assert len(later.replace["train/loss"][0]) == 301  # the full read replaces the preview
        assert "train/loss" not in later.points
        feed.poll()
        assert feed.take().points == {}
    finally:
        feed.close()
        writer.close()


def test_deltas_merge_as_if_read_at_once():
    a = RunDelta(points={"x": (np.array([1.0, 2.0]), np.array([5.0, 6.0]))})
    b = RunDelta(points={"x": (np.array([3.0]), np.array([7.0]))}, replace={"y": (np.array([1.0]), np.array([1.0]))})
    a.merge(b)
    assert a.points["x"][0].tolist() == [1, 2, 3] and "y" in a.replace
    a.merge(RunDelta(replace={"x": (np.array([9.0]), np.array([9.0]))}))
    assert "x" not in a.points and a.replace["x"][0].tolist() == [9]


def test_progress_numbers_eta_and_formats():
    state = RunProgressState()
    state.fold(
        RunDelta(
            meta={"max_steps": 1000, "started_at": 100.0},
            status="running",
            points={
                "train/loss": (np.array([1.0, 2.0]), np.array([3.0, 2.5])),
                "tokens_seen": (np.array([2.0]), np.array([256.0])),
                "tokens_per_s": (np.array([1.0, 2.0]), np.array([1280.0, 1280.0])),
                "val/loss": (np.array([2.0]), np.array([2.7])),
            },
        )
    )
    assert (state.step, state.tokens_per_step, state.best_val) == (2, 128.0, (2, 2.7))
    assert state.eta() == pytest.approx(998 * 128 / 1280)
    assert state.elapsed(now=160.0) == 60.0
    assert eta_seconds(0, 100, step_rate=10.0) == 10.0 and eta_seconds(0, 100) is None
    assert bucket_points([])[0].size == 0
    assert (format_duration(3), format_duration(192), format_duration(3840), format_duration(200_000)) == (
        "3s",
        "3m12s",
        "1h04m",
        "2d07h",
    )
    assert (format_clock(62), format_clock(3723), format_compact(1234), format_compact(1_234_567)) == (
        "1:02",
        "1:02:03",
        "1,234",
        "1.23M",
    )


# -- inside the real app ------------------------------------------------------------------------------------


async def test_the_app_opens_a_run_and_the_form_on_the_train_screen(workspace):
    from smoltui.app import SmolApp

    write_run(workspace)
    app = SmolApp(workspace, start_mode="train", start_run="latest", refresh_fps=20)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, TrainScreen), "the Train screen")
        screen = app.screen
        await wait_until(pilot, lambda: screen.dashboard.state.step == 600, "the run's data")
        assert "finished" in text_of(screen, "#run-status")
        await pilot.press("f")
        await wait_until(pilot, lambda: screen.form.ready and screen.view == "form", "the form")
        await pilot.press("escape", "escape")  # the first leaves the model field, the second the form
        assert screen.view == "dashboard"
        app.open_run("20250101-120000-tiny", ())
        await pilot.pause()
        assert app.screen is screen


def test_the_run_clock_follows_the_state():
    state = RunProgressState(status="paused", started_at=1000.0, max_steps=100)
    assert state.clock_text(now=1160.0) == "paused after 2m40s"  # not "took": the run has not ended
    state.status, state.ended_at = "stopped", 1160.0
    assert state.clock_text(now=2000.0) == "took 2m40s"  # no ETA for a stopped run
    state.status = "running"
    assert state.clock_text(now=1160.0) == "ETA …"
    assert RunProgressState(status="created").clock_text() == "starting…"


async def test_the_form_completes_a_model_name_and_refuses_one_it_cannot_load(workspace, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_form(pilot)
        field = screen.form._fields["model"]
        field.focus()
        field.value = ""
        await pilot.press(*"nano", "right")  # → takes the greyed completion
        await pilot.pause()
        assert field.value == "nano-char"
        field.value = "nano"
        await pilot.pause()
        assert screen.form.validate() is None
        assert "unknown model 'nano'; known presets" in text_of(screen, "#error-model")
        field.value = "2lnano1"  # a Hub id as far as its spelling goes: the Hub is asked at Start
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "Hub is unreachable" in text_of(screen, "#error-model"), "the Hub's answer")
        assert list_runs(workspace) == [] and screen.view == "form"


async def test_one_screen_one_loss(workspace):
    """The stats line, the legend and the header all say the same latest train loss."""
    from textual.geometry import Region

    from smoltui.widgets.chart_ticks import format_value

    write_run(workspace, status="running")
    run_dir = workspace / "runs" / "20250101-120000-tiny"
    writer = keep_alive(run_dir)
    try:
        app = TrainTestApp(workspace)
        async with app.run_test(size=(120, 40)) as pilot:
            screen = await open_run(pilot, "latest")
            details = text_of(screen, "#run-details")
            train = details.split(" train ")[1].split(" ")[0]
            chart = screen.dashboard.loss_chart
            legend = chart.render_lines(Region(0, 0, chart.size.width, 1))[0].text
            assert f"train loss {train} (ema " in legend
            shown = app.shown_progress  # what the dashboard told the header
            assert shown is not None and format_value(shown.loss) == train
            assert shown.step == screen.dashboard.state.step
    finally:
        writer.close()
