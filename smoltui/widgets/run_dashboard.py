"""RunDashboard: the live view of one run (and others overlaid on its loss), fed by cheap polls of its store.

A timer at `refresh_fps` starts a thread worker that reads only what is new (`RunFeed.poll`) and posts
`RunDataArrived`; bursts of those coalesce (`can_replace`), since the data waits in the feeds until the UI takes
it. Nothing is polled while the dashboard is not visible, nor after the final read of runs that ended.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from smoltui.engine.run_contract import ACTIVE_STATUSES, CommandKind, Metric, RunStatus
from smoltui.engine.run_feed import TRAIN_LOSS, VAL_LOSS, RunDelta, RunFeed, RunProgressState
from smoltui.engine.runs import RunHandle, attach
from smoltui.messages import RunProgressShown
from smoltui.widgets.chart_frame import format_value
from smoltui.widgets.line_chart import PALETTE, LineChart
from smoltui.widgets.run_panels import (
    ActivationTable,
    RunLog,
    RunProgress,
    details_content,
    event_content,
    sample_content,
)
from smoltui.widgets.worker_errors import ReportsWorkerErrors

SMOOTHING_LADDER = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)
DEFAULT_SMOOTHING = 0.6
ZOOM_CYCLE = (None, 2000, 500, 100)  # steps shown: all, then the last N
SPARKS = ((Metric.LR, "lr"), (Metric.GRAD_NORM, "grad norm"), (Metric.TOKENS_PER_S, "tokens/s"))
LOSS_TITLE = "loss (nats)"  # mean cross-entropy per token, natural log
SHORT_BELOW, NARROW_BELOW = 30, 100  # rows and columns under which the dashboard goes compact
CONTROL_NOTES = {CommandKind.PAUSE: "pausing…", CommandKind.RESUME: "resuming…", CommandKind.STOP: "stopping…"}


def run_labels(run_ids: Sequence[str]) -> list[str]:
    """Short names for runs drawn together: ids without their date part where that keeps them apart."""
    short = [re.sub(r"^\d{8}-", "", run_id) for run_id in run_ids]
    return short if len(set(short)) == len(short) else list(run_ids)


class RunOpened(Message):
    """The runs to show were found and their feeds are ready to poll."""

    def __init__(self, feeds: list[RunFeed], launched: bool) -> None:
        self.feeds = feeds
        self.launched = launched
        super().__init__()


class RunDataArrived(Message):
    """New data waits in the feeds. Only a signal: a burst of them is applied once, nothing is lost."""

    def __init__(self, feeds: list[RunFeed]) -> None:
        self.feeds = feeds
        super().__init__()

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunDataArrived) and message.feeds is self.feeds


class RunDashboard(ReportsWorkerErrors, Vertical):
    """Loss chart with overlays, small charts, progress, samples and events of one run."""

    DEFAULT_CSS = """
    RunDashboard {
        height: 1fr;
        padding: 0 1;
        #run-title { height: 1; text-style: bold; }
        #run-details { height: 1; }
        #run-problem { height: auto; color: $text-error; display: none; }
        #run-problem.-shown { display: block; }
        #run-main { height: 1fr; }
        #loss-chart { width: 1fr; height: 1fr; }
        #run-side { width: 38; height: 1fr; margin-left: 2; }
        .spark-title { height: 1; color: $text-muted; }
        #run-side LineChart { height: 4; }
        #activations { display: none; }
        #activations.-shown { display: block; }
        #run-logs { height: 12; }
        #run-logs RunLog { width: 1fr; }
        #run-none { display: none; width: 1fr; height: 1fr; content-align: center middle; color: $text-muted; }
        &.-empty > * { display: none; }
        &.-empty > #run-none { display: block; }
        #run-latest { display: none; height: 2; }
        #run-latest > Static { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
        &.-short #run-logs { display: none; }
        &.-short #run-latest { display: block; }
        &.-narrow #run-side { display: none; }
    }
    """

    def __init__(self, workspace: Path | None = None, *, refresh_fps: float = 4.0, id: str | None = None) -> None:
        super().__init__(id=id, classes="-empty")
        self.workspace = workspace  # where run ids are looked up
        self.refresh_fps = refresh_fps
        self.feeds: list[RunFeed] = []
        self.state = RunProgressState()
        self.note = ""  # a control on its way to the trainer, shown beside the status
        self._series: list[dict[str, tuple[LineChart, str]]] = []
        self._launched = False
        self._timer: Timer | None = None
        self._shown_second = -1
        self._origin: float | None = None
        self._poll_failed = False
        self.polling = False  # whether the timer polls: from opening a run until the final read of its feeds

    def compose(self) -> ComposeResult:
        yield Static(id="run-title")
        yield RunProgress(id="run-progress")
        yield Static(id="run-details")
        yield Static(id="run-problem")
        with Horizontal(id="run-main"):
            yield LineChart(smoothing=DEFAULT_SMOOTHING, id="loss-chart", empty_text="waiting for the first steps…")
            with Vertical(id="run-side"):
                for key, title in SPARKS:
                    yield Static(title, classes="spark-title", id=f"{key}-title")
                    yield LineChart(compact=True, id=f"{key}-chart", empty_text="no data yet")
                yield ActivationTable(id="activations")
        with Vertical(id="run-latest"):  # a short terminal's logs: the newest sample and event, a line each
            yield Static(Content.styled("no samples yet", "italic $text-muted"), id="latest-sample")
            yield Static(Content.styled("no events yet", "italic $text-muted"), id="latest-event")
        with Horizontal(id="run-logs"):
            yield RunLog("samples", "no samples yet", max_lines=50, id="samples")
            yield RunLog("events", "no events yet", max_lines=200, id="events")  # wrapped: each is read whole
        yield Static("No run is open: f starts a new one; the runs screen opens an old one.", id="run-none")

    def on_mount(self) -> None:
        self._timer = self.set_interval(1 / self.refresh_fps, self._tick, pause=True)

    def on_resize(self) -> None:
        self.set_class(self.size.height < SHORT_BELOW, "-short")
        self.set_class(self.size.width < NARROW_BELOW, "-narrow")

    @property
    def loss_chart(self) -> LineChart:
        return self.query_one("#loss-chart", LineChart)

    @property
    def run_id(self) -> str | None:
        return self.feeds[0].run_id if self.feeds else None

    # -- opening

    def show(self, run: str | RunHandle, overlay: Sequence[str] = (), *, launched: bool = False) -> None:
        """Open `run` (an id, unique prefix, "latest", folder or handle) with `overlay` runs on its loss chart."""
        self._open(run, tuple(overlay), launched)

    @work(thread=True, exclusive=True, exit_on_error=False, group="open")
    def _open(self, run: str | RunHandle, overlay: tuple[str, ...], launched: bool) -> None:
        workspace = self.workspace
        handles: list[RunHandle] = []
        try:
            handles.append(run if isinstance(run, RunHandle) else attach(run, workspace))
            for reference in overlay:
                handle = attach(reference, workspace)
                if handle.run_dir in {h.run_dir for h in handles}:
                    handle.close()
                else:
                    handles.append(handle)
        except BaseException:
            for handle in handles:
                handle.close()
            raise
        feeds = [RunFeed(handle, with_details=index == 0) for index, handle in enumerate(handles)]
        self.post_message(RunOpened(feeds, launched))

    @on(RunOpened)
    def _opened(self, message: RunOpened) -> None:
        old, self.feeds = self.feeds, message.feeds
        self._launched = message.launched
        self._poll_failed = False
        self.state, self.note, self._origin = RunProgressState(), "", None
        self._set_up_series()
        self.query_one("#samples", RunLog).clear()
        self.query_one("#events", RunLog).clear()
        self.query_one("#latest-sample", Static).update(Content.styled("no samples yet", "italic $text-muted"))
        self.query_one("#latest-event", Static).update(Content.styled("no events yet", "italic $text-muted"))
        table = self.query_one(ActivationTable)
        table.clear_stats()
        table.set_class(False, "-shown")
        self.remove_class("-empty")
        self._show_title({})
        self._show_progress()
        if old:
            self._close_feeds(old)
        self._set_polling(True)
        self.poll_now()
        self.screen.refresh_bindings()

    def _set_up_series(self) -> None:
        """Loss lines and val points of every run (a run's val in its own colour when it is alone, else in the
        run's colour), and the small charts of the main run; tokens/s is read against zero."""
        chart = self.loss_chart
        chart.clear()
        chart.y_title = LOSS_TITLE
        labels = run_labels([feed.run_id for feed in self.feeds])
        alone = len(self.feeds) == 1
        self._series = [{} for _ in self.feeds]
        for index, label in enumerate(labels):  # every train line first, so the legend lists the runs first
            name = "train loss" if alone else label
            chart.add_series(name, colour=PALETTE[index % len(PALETTE)])
            self._series[index][TRAIN_LOSS] = (chart, name)
        for index, label in enumerate(labels):
            name = "val loss" if alone else f"{label} val"
            chart.add_series(name, colour=PALETTE[1 if alone else index % len(PALETTE)], style="points")
            self._series[index][VAL_LOSS] = (chart, name)
        for key, _ in SPARKS:
            spark = self.query_one(f"#{key}-chart", LineChart)
            spark.clear()
            spark.from_zero = key == Metric.TOKENS_PER_S  # a stall drops to the floor; the axis stays put
            spark.add_series(key, colour=PALETTE[0])
            self._series[0][key] = (spark, key)

    def _note_max_steps(self, index: int, meta: dict) -> None:
        """Give run `index`'s series its length, on which runs line up when aligned by fraction."""
        max_steps = meta.get("max_steps") or (meta.get("config") or {}).get("max_steps")
        for chart, name in self._series[index].values():
            chart.set_max_steps(name, max_steps)

    @work(thread=True, group="close")
    def _close_feeds(self, feeds: list[RunFeed]) -> None:
        for feed in feeds:
            feed.close()

    # -- polling

    def _tick(self) -> None:
        if not self.feeds:
            return
        if all(feed.ended for feed in self.feeds):
            self._set_polling(False)  # the final read is done; what it found waits in the feeds or is applied
            return
        if self.state.status == RunStatus.RUNNING and int(time.time()) != self._shown_second:
            self._show_progress()  # elapsed and ETA move on with the clock
        self.poll_now()

    def _set_polling(self, on: bool) -> None:
        self.polling = on
        self._timer.resume() if on else self._timer.pause()

    def poll_now(self) -> None:
        """Read what is new at once (if the dashboard can be seen)."""
        if self.feeds and not self._poll_failed and self.display and self.screen.is_current:
            self._poll(self.feeds)

    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def _poll(self, feeds: list[RunFeed]) -> None:
        if sum(feed.poll() for feed in feeds):  # not any(): every feed must poll
            self.post_message(RunDataArrived(feeds))

    @on(RunDataArrived)
    def _data_arrived(self, message: RunDataArrived) -> None:
        if message.feeds is not self.feeds:
            return  # data of runs no longer shown
        for index, feed in enumerate(self.feeds):
            delta = feed.take()
            if delta:
                self._apply(index, delta)

    def _apply(self, index: int, delta: RunDelta) -> None:
        if delta.meta is not None:
            self._note_max_steps(index, delta.meta)
        series = self._series[index]
        for name, (steps, values) in delta.replace.items():
            if name in series:
                chart, series_name = series[name]
                chart.set_series(series_name, steps, values)
        for name, (steps, values) in delta.points.items():
            if name in series:
                chart, series_name = series[name]
                chart.append(series_name, steps, values)
        if index != 0:
            return
        status_before = self.state.status
        self.state.fold(delta)
        if delta.meta is not None:
            self._origin = delta.meta.get("started_at") or delta.meta.get("created_at")
            self._show_title(delta.meta)
        if self.state.status != status_before or delta.first:
            self.note = ""
            self.screen.refresh_bindings()
        self._show_sparks()
        if delta.activations:
            table = self.query_one(ActivationTable)
            table.update_stats(delta.activations)
            table.add_class("-shown")
        if delta.samples:
            self.query_one("#samples", RunLog).add(sample_content(s) for s in delta.samples)
            latest = sample_content(delta.samples[-1], one_line=True)
            self.query_one("#latest-sample", Static).update(Content.assemble(("sample ", "$text-muted"), latest))
        if delta.events:
            self.query_one("#events", RunLog).add(event_content(e, self._origin) for e in delta.events)
            latest = event_content(delta.events[-1], self._origin)
            self.query_one("#latest-event", Static).update(Content.assemble(("event ", "$text-muted"), latest))
            if not delta.first or self._launched:
                for event in delta.events:
                    if event.level == "error":
                        self.notify(self.state.problem or event.message, title=f"Run {event.kind}", severity="error")
        self._show_progress()
        state = self.state
        self.post_message(
            RunProgressShown(self.feeds[0].run_id, state.status, state.step, state.max_steps, state.last_train)
        )

    # -- display

    def _show_title(self, meta: dict) -> None:
        if not self.feeds:
            return
        parts = [Content.styled(self.feeds[0].run_id, "bold")]
        if meta:
            corpus = str(meta.get("corpus", "?"))
            corpus = corpus if corpus.startswith("builtin:") else corpus.rsplit("/", 1)[-1]
            parts.append(Content(f"{meta.get('model_source', '?')} on {corpus}"))
            if meta.get("device"):
                parts.append(Content(f"{meta['device']} {meta.get('precision', '')}".strip()))
            if meta.get("parameters"):
                parts.append(Content(f"{meta['parameters']:,} parameters"))
            if (meta.get("world_size") or 1) > 1:
                parts.append(Content(f"{meta['world_size']} processes"))
        if len(self.feeds) > 1:
            others = ", ".join(run_labels([f.run_id for f in self.feeds])[1:])
            parts.append(Content.styled(f"vs {others}", "$text-muted"))
        self.query_one("#run-title", Static).update(Content(" · ").join(parts))

    def _show_progress(self) -> None:
        now = time.time()
        self._shown_second = int(now)
        self.query_one(RunProgress).show(self.state, self.note, now)
        self.query_one("#run-details", Static).update(details_content(self.state, now))
        problem = self.query_one("#run-problem", Static)
        failing = self.state.status in (RunStatus.FAILED, RunStatus.LOST) and self.state.problem
        problem.update(Content.assemble(("✘ ", "bold"), self.state.problem or "") if failing else "")
        problem.set_class(bool(failing), "-shown")

    def _show_sparks(self) -> None:
        for key, title in SPARKS:
            chart = self.query_one(f"#{key}-chart", LineChart)
            value = ""
            if key in chart.series_names and len(chart.series(key)):
                value = format_value(float(chart.series(key).values[-1]), 3)
            self.query_one(f"#{key}-title", Static).update(
                Content.assemble((title, "$text-muted"), " ", (value, "bold"))
            )

    # -- view keys

    def toggle_log_y(self) -> None:
        self.loss_chart.log_y = not self.loss_chart.log_y

    def change_smoothing(self, direction: int) -> None:
        chart = self.loss_chart
        rungs = [i for i, s in enumerate(SMOOTHING_LADDER) if s <= chart.smoothing + 1e-9]
        here = rungs[-1] if rungs else 0
        chart.smoothing = SMOOTHING_LADDER[max(0, min(len(SMOOTHING_LADDER) - 1, here + direction))]

    def cycle_zoom(self) -> None:
        chart = self.loss_chart
        here = ZOOM_CYCLE.index(chart.window) if chart.window in ZOOM_CYCLE else 0
        chart.window = ZOOM_CYCLE[(here + 1) % len(ZOOM_CYCLE)]

    def toggle_clip_start(self) -> None:
        """Every chart's y range: leave out the first steps' outliers (drawn clipped at the top), or not."""
        clip = not self.loss_chart.clip_start
        for chart in self.query(LineChart):
            chart.clip_start = clip

    def toggle_align(self) -> None:
        """Overlaid runs on the loss chart: aligned by step, or by fraction of each run's max_steps."""
        self.loss_chart.by_fraction = not self.loss_chart.by_fraction

    def toggle_crosshair(self) -> None:
        self.loss_chart.crosshair = not self.loss_chart.crosshair

    @property
    def crosshair(self) -> bool:
        return self.loss_chart.crosshair

    def move_crosshair(self, columns: int) -> None:
        self.loss_chart.move_cursor(columns)

    # -- controls

    def send(self, kind: str) -> None:
        """Send a command to the main run's trainer; the engine's sentence comes back if it cannot take it."""
        if not self.feeds:
            return
        if kind in CONTROL_NOTES and self.state.status in ACTIVE_STATUSES:
            self.note = CONTROL_NOTES[kind]
            self._show_progress()
        self._send(self.feeds[0].handle, kind)

    @work(thread=True, exit_on_error=False, group="control")
    def _send(self, handle: RunHandle, kind: str) -> None:
        handle.send(kind)

    def worker_failed(self, group: str, error: BaseException) -> None:
        if group == "control":
            self.note = ""
            self._show_progress()
        if group == "poll":
            self._poll_failed = True  # one notification, not four a second; opening a run again retries
        super().worker_failed(group, error)
