"""What every smoltui screen shares: the status line on top, the footer of keys, worker-error reports, tables,
and the small typed interface (Workbench) through which screens talk to the app."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

from rich.cells import cell_len
from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import DataTable, Label
from textual.worker import get_current_worker

from smoltui.engine.run_contract import RunStatus
from smoltui.formatting import format_loss, status_look
from smoltui.messages import RunsListed
from smoltui.screens import SCREENS
from smoltui.widgets.worker_errors import ReportsWorkerErrors

if TYPE_CHECKING:
    from smoltui.engine.models import LoadedModel
    from smoltui.engine.runs import RunSummary
    from smoltui.engine.session import ModelSession
    from smoltui.messages import RunPulse

FRESH_LIST_S = 1.0  # a screen shown again lists the runs anew only if its list is older than this
RESUME_LIST_DELAY_S = 0.25
NARROW_WIDTH = 100  # below this many columns the status line leaves out the model to keep the run's loss


class Workbench(Protocol):
    """What the screens may ask of the app (SmolApp implements it): its settings, the session's model, and the
    moves between screens."""

    workspace: Path
    read_only: bool
    refresh_fps: float
    device: str
    clock: Callable[[], float]
    session: ModelSession  # the loaded model's one worker: every inference job goes through it
    session_model: LoadedModel | None
    model_loading: str | None  # a model the app is loading by itself (`demo`), named in the header meanwhile
    pulse: RunPulse | None
    recent_sources: list[str]
    pulse_known: bool  # whether the header's run has been read once
    start_run: str | None  # the run the app was opened for (`watch`, `demo`), shown first on the Train screen
    start_overlay: Sequence[str]

    def go(self, mode: str) -> None: ...
    def open_run(self, run_ref: str, overlay: Sequence[str] = ()) -> None: ...
    def open_train_form(self) -> None: ...
    def open_model(self, *, new: bool) -> None: ...


class StatusLine(Horizontal):
    """One line on top of every screen: the mode tabs, the session's model and device, the training run."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode

    def compose(self) -> ComposeResult:
        for entry in SCREENS:
            yield ModeTab(entry.mode, entry.key, entry.title, active=entry.mode == self.mode)
        yield Label(id="run-info")
        yield Label(id="model-info")

    def on_mount(self) -> None:
        self.watch(self.app, "session_model", self._show_model)
        self.watch(self.app, "model_loading", self._show_model)
        self.watch(self.app, "pulse", self._show_pulse)

    def on_resize(self, event: events.Resize) -> None:
        self.set_class(event.size.width < NARROW_WIDTH, "-narrow")  # the run's numbers matter more than the model
        self._fit_tabs()

    def _fit_tabs(self) -> None:
        """Name every tab where the run and the model fit beside them, else only the current screen's: the run's
        step and loss matter more than the other screens' names, which their number keys stand for."""
        width = self.size.width
        if not width:
            return
        tabs = list(self.query(ModeTab))
        run = len(_plain(self.query_one("#run-info", Label))) + 3  # its margin and padding
        model_text = _plain(self.query_one("#model-info", Label))
        model = 0 if self.has_class("-narrow") else min(len(model_text) + 2, int(width * 0.4))
        short = width < NARROW_WIDTH or sum(tab.full_width for tab in tabs) + run + model > width
        for tab in tabs:
            tab.shorten(short)

    def _show_model(self, _changed: object = None) -> None:
        """The session's model, when one is loaded or loading (a run's model is named by the run beside it)."""
        app: Workbench = self.app  # type: ignore[assignment]
        loaded = app.session_model
        parts = [] if loaded is None else [f"{model_name(loaded)} · {loaded.placement.device} {loaded.placement.dtype}"]
        if app.model_loading is not None:
            parts = [f"loading {app.model_loading}…"]
        if app.read_only:
            parts.append("read-only")
        _update(self.query_one("#model-info", Label), " · ".join(parts))
        self._fit_tabs()

    def _show_pulse(self, pulse: RunPulse | None) -> None:
        label = self.query_one("#run-info", Label)
        label.set_class(pulse is not None and pulse.status == RunStatus.RUNNING, "-running")
        app: Workbench = self.app  # type: ignore[assignment]
        _update(label, describe_pulse(pulse) if app.pulse_known else "")  # nothing is claimed before the first read
        self._fit_tabs()


class ModeTab(Label):
    """A tab of the status line: its number key or a click shows its screen."""

    def __init__(self, mode: str, key: str, title: str, *, active: bool) -> None:
        super().__init__(f" {key} {title} ", classes="tab -active" if active else "tab")
        self.mode, self.tab_key, self.tab_title, self.current = mode, key, title, active
        self.tooltip = f"Show the {title} screen (or press {key})"

    @property
    def full_width(self) -> int:
        return len(self.tab_key) + len(self.tab_title) + 3

    def shorten(self, short: bool) -> None:
        """Where room is short only the current screen's tab is named; the others are their number keys."""
        _update(self, f" {self.tab_key} {self.tab_title} " if not short or self.current else f" {self.tab_key} ")

    def on_click(self, event: events.Click) -> None:
        event.stop()
        app: Workbench = self.app  # type: ignore[assignment]
        app.go(self.mode)


KEPT_ACTIONS = frozenset({"help", "quit"})  # a narrow footer drops other keys first: ? and q stay in sight


class KeyBar(Horizontal):
    """The current screen's keys on the bottom line, drawn as one label; a click on a key presses it.

    It shows what Textual's Footer shows (the active bindings marked `show`, greyed when disabled) without
    building a widget per key: re-building those on every screen switch cost about 100 ms on a 2-core machine.
    Where the keys do not fit, the screen's last keys give way first (screens list their keys by importance),
    never ? and q.
    """

    def __init__(self) -> None:
        super().__init__()
        self._spans: list[tuple[int, int, str]] = []  # (first cell, end cell, key) of each key shown

    def compose(self) -> ComposeResult:
        yield Label(id="keys")
        yield Label(id="palette-key")

    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self._bindings_changed)
        self._show()

    def on_resize(self) -> None:
        self._show()

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self.query_one("#keys", Label))
        if offset is None:
            return
        for start, end, key in self._spans:
            if start <= offset.x < end:
                event.stop()
                self.app.simulate_key(key)
                return

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def _bindings_changed(self, screen: Screen) -> None:
        if screen is self.screen:
            self.call_after_refresh(self._show)

    def _show(self) -> None:
        app = self.app
        entries: list[tuple[Binding, bool]] = []
        shown: set[str] = set()
        palette = None
        for _node, binding, enabled, _tooltip in self.screen.active_bindings.values():
            if binding.key == app.COMMAND_PALETTE_BINDING and app.ENABLE_COMMAND_PALETTE:
                palette = binding
            if not binding.show or binding.action in shown:
                continue
            shown.add(binding.action)
            entries.append((binding, enabled))
        palette_text = None
        if palette is not None:
            key = (app.get_key_display(palette), "bold $footer-key-foreground")
            palette_text = Content.assemble(key, f" {palette.description}")
            _update(self.query_one("#palette-key", Label), palette_text)

        def cells(binding: Binding) -> int:
            return cell_len(f" {app.get_key_display(binding)} {binding.description} ")

        room = self.size.width - (palette_text.cell_length + 2 if palette_text is not None else 0)
        while room > 0 and sum(cells(b) for b, _ in entries) > room:
            droppable = [i for i, (b, _) in enumerate(entries) if b.action not in KEPT_ACTIONS]
            if not droppable:
                break
            del entries[droppable[-1]]
        parts: list[tuple[str, str]] = []
        self._spans, at = [], 0
        for binding, enabled in entries:
            style = "" if enabled else "dim"
            key_text, description = f" {app.get_key_display(binding)} ", f"{binding.description} "
            parts += [(key_text, f"bold $footer-key-foreground {style}"), (description, style)]
            width = cell_len(key_text + description)
            self._spans.append((at, at + width, binding.key))
            at += width
        _update(self.query_one("#keys", Label), Content.assemble(*parts))


def _plain(label: Label) -> str:
    content = label.content
    return content.plain if isinstance(content, Content) else str(content)


def _update(label: Label, text: str | Content) -> None:
    """Change a label only when its text or its styles change: an update re-lays out the screen.

    Content's `==` compares the text only, so a key that turns grey (or back) keeps its text and would never be
    redrawn: the spans are compared too.
    """
    old = label.content
    if isinstance(old, Content) and isinstance(text, Content):
        if old.plain == text.plain and old.spans == text.spans:
            return
    elif old == text:
        return
    label.update(text)


def model_name(loaded: LoadedModel) -> str:
    """A model's short name: a folder's or a file's last part, else the source as written (preset, Hub id, run)."""
    return Path(loaded.source).name if loaded.kind in ("folder", "gguf") else loaded.source


def describe_pulse(pulse: RunPulse | None) -> str:
    if pulse is None:
        return "no run training"
    steps = f"{pulse.step if pulse.step is not None else 0}" + (f"/{pulse.max_steps}" if pulse.max_steps else "")
    run = short_run_ids([pulse.run_id])[pulse.run_id]  # the time and model; the date would be cut first
    return f"{pulse.status} · step {steps} · loss {format_loss(pulse.loss)} · {run}"


class SmolScreen(ReportsWorkerErrors, Screen):
    """A screen of the app: the status line, the screen's own widgets (`compose_body`), the footer.

    Screens that show the workspace's runs set RUNS_REFRESH_S and handle RunsListed; the base lists the runs on
    a thread while the screen is shown. Every worker that fails is reported (see ReportsWorkerErrors).
    """

    MODE: ClassVar[str]
    RUNS_REFRESH_S: ClassVar[float | None] = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._runs_listed_at: float | None = None
        self._runs: Sequence[RunSummary] = ()

    @property
    def smol(self) -> Workbench:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield StatusLine(self.MODE)
        yield from self.compose_body()
        yield KeyBar()

    def compose_body(self) -> Iterable[Widget]:
        raise NotImplementedError

    def on_mount(self) -> None:
        if self.RUNS_REFRESH_S is not None:
            self.set_interval(max(self.RUNS_REFRESH_S, 1 / self.smol.refresh_fps), self._list_runs_if_shown)
            self.watch(self.app, "pulse", self._pulse_changed, init=False)

    def show_runs(self, runs: Sequence[RunSummary]) -> None:
        """Show the workspace's runs (screens with RUNS_REFRESH_S draw them here)."""

    def on_runs_listed(self, message: RunsListed) -> None:
        self._runs = message.runs
        self.show_runs(self._with_pulse(self._runs))

    def _pulse_changed(self, pulse: RunPulse | None) -> None:
        if self._runs and self.is_current:
            self.show_runs(self._with_pulse(self._runs))

    def _with_pulse(self, runs: Sequence[RunSummary]) -> list[RunSummary]:
        """The listed runs, with the header's run at the header's numbers when those are newer: the table and the
        header above it never disagree about the run that is training."""
        pulse = self.smol.pulse
        if pulse is None:
            return list(runs)
        return [
            replace(run, step=pulse.step, train_loss=pulse.loss, status=pulse.status)
            if run.run_id == pulse.run_id and (pulse.step or 0) >= (run.step or 0)
            else run
            for run in runs
        ]

    def on_screen_resume(self) -> None:
        if self.RUNS_REFRESH_S is None:
            return
        if self._runs_listed_at is None:
            self.call_after_refresh(self.list_runs)  # the screen paints first, then fills in its runs
        elif time.monotonic() - self._runs_listed_at > FRESH_LIST_S:
            # Not with the key press that brought the screen back: a listing thread would slow its repaint.
            self.set_timer(RESUME_LIST_DELAY_S, self.list_runs)

    def _list_runs_if_shown(self) -> None:
        if self.is_current:
            self.list_runs()

    @work(thread=True, exclusive=True, exit_on_error=False, group="list-runs")
    def list_runs(self) -> None:
        """Read the workspace's runs off the event loop; the screen gets them as RunsListed."""
        from smoltui.engine.runs import list_runs

        runs = list_runs(self.smol.workspace)
        if not get_current_worker().is_cancelled:
            self._runs_listed_at = time.monotonic()
            self.post_message(RunsListed(runs))


# -- tables ---------------------------------------------------------------------------------------------------


def number(text: str) -> Text:
    """A table cell for a number: right-aligned, so digits line up."""
    return Text(text, justify="right")


def status_text(app: App, status: str) -> Text:
    """A status for a table cell, in its colour role's theme colour (as everywhere, see run_contract)."""
    _, role = status_look(status)
    return Text(status, style=app.theme_variables.get(f"text-{role}") or app.theme_variables.get(role) or "")


def short_run_ids(run_ids: Sequence[str]) -> dict[str, str]:
    """Run ids as a list shows them: without the date when every one shares it (the time and the model are what
    tell them apart), whole otherwise."""
    dates = {run_id[:9] for run_id in run_ids}
    shared = len(dates) == 1 and next(iter(dates))[:8].isdigit() and next(iter(dates)).endswith("-")
    return {run_id: run_id[9:] if shared else run_id for run_id in run_ids}


def fit_columns(
    columns: Sequence[tuple[str, str]],
    rows: Sequence[tuple[str, Sequence[str | Text]]],
    width: int,
    give_way: Sequence[str],
) -> tuple[list[tuple[str, str]], list[tuple[str, list[str | Text]]]]:
    """The columns (and their cells) that fit in `width`, leaving out those named in `give_way`, first one first,
    until the rest fit: a table never shows a column cut in half."""
    keep = list(range(len(columns)))

    def needed() -> int:  # each cell has a space either side; one more for the scrollbar's column
        widths = [max([cell_len(columns[i][0]), *(cell_len(str(cells[i])) for _, cells in rows)]) for i in keep]
        return 1 + sum(2 + width for width in widths)

    for key in give_way:
        if width <= 0 or needed() <= width:
            break
        keep = [i for i in keep if columns[i][1] != key]
    return [columns[i] for i in keep], [(row_key, [cells[i] for i in keep]) for row_key, cells in rows]


def sync_table(
    table: DataTable, columns: Sequence[tuple[str, str]], rows: Sequence[tuple[str, Sequence[str | Text]]]
) -> None:
    """Show `rows` ((key, cells) pairs) under `columns` ((label, key) pairs) in `table`.

    Cells change in place while the rows and the column widths stay the same, so the cursor stays on its row.
    The widths are measured here and set explicitly: DataTable's own auto widths are measured on idle, and a
    row it painted before then keeps the narrower width in its cache.
    """
    widths = [
        max(1, cell_len(label), *(cell_len(str(cells[index])) for _, cells in rows))
        for index, (label, _) in enumerate(columns)
    ]
    keys = [key for key, _ in rows]
    shown = [row_key.value for row_key in table.rows]
    if keys == shown and widths == [column.width for column in table.ordered_columns]:
        for key, cells in rows:
            for (_, column_key), cell in zip(columns, cells, strict=True):
                if table.get_cell(key, column_key) != cell:
                    table.update_cell(key, column_key, cell)
        return
    cursor_key = shown[table.cursor_row] if 0 <= table.cursor_row < len(shown) else None
    table.clear(columns=True)
    for (label, key), width in zip(columns, widths, strict=True):
        table.add_column(label, key=key, width=width)
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if cursor_key in keys:
        table.move_cursor(row=keys.index(cursor_key), animate=False)
