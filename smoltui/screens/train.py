"""TrainScreen: the new-run form and the live dashboard of a run, with the keys that steer the run.

`show_run` and `show_form` are what the rest of the app calls; the app's settings come through `self.smol`.
"""

from __future__ import annotations

from collections.abc import Sequence

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import AwaitMount
from textual.widgets import ContentSwitcher, Input, Select

from smoltui.engine.errors import UserError
from smoltui.engine.run_contract import TERMINAL_STATUSES, CommandKind, RunStatus
from smoltui.engine.runs import RunHandle, launch_run
from smoltui.screens.base import SmolScreen
from smoltui.screens.confirm import ConfirmStop
from smoltui.widgets.run_dashboard import RunDashboard
from smoltui.widgets.train_form import TrainForm

CONTROL_ACTIONS = {"pause", "resume", "stop_run", "checkpoint", "sample"}
CHART_ACTIONS = {"toggle_clip_start", "toggle_align", "crosshair", "move_crosshair"}
CURSOR_KEYS = "Move the loss chart's cursor a column left or right (with shift: ten)"
DASHBOARD_ACTIONS = CONTROL_ACTIONS | CHART_ACTIONS | {"toggle_log_y", "smoothing", "zoom", "new_run"}


class TrainScreen(SmolScreen):
    """Train: a form for a new run, and the live dashboard of the run being watched."""

    MODE = "train"
    WORKER_TITLES = {"launch": "Cannot start the run"}

    DEFAULT_CSS = """
    TrainScreen #train-views { height: 1fr; }
    """

    BINDINGS = [  # in footer order: what a narrow footer cuts off comes last
        Binding("p,space", "pause", "Pause", tooltip="Pause the run after its current step"),
        Binding("p,space", "resume", "Resume", tooltip="Resume the paused run"),
        Binding("s", "stop_run", "Stop", tooltip="Stop the run with a checkpoint (asks first)"),
        Binding("l", "toggle_log_y", "Log y", tooltip="Logarithmic loss axis on or off"),
        Binding("plus,equals_sign", "smoothing(1)", "Smooth", key_display="+/-", tooltip="More EMA smoothing"),
        Binding("minus,underscore", "smoothing(-1)", "Less smoothing", show=False, tooltip="Less EMA smoothing"),
        Binding("z", "zoom", "Zoom", tooltip="Show all steps, or the last 2000, 500 or 100"),
        Binding("f", "new_run", "New run", tooltip="The form for a new run"),
        Binding("c", "checkpoint", "Checkpoint", tooltip="Save a checkpoint after the current step"),
        Binding("n", "sample", "Sample", tooltip="Generate a sample after the current step"),
        Binding("ctrl+s", "start_run", "Start run", tooltip="Check the form and launch the run"),
        Binding("escape", "leave_field", "Leave field", tooltip="Stop typing in the field; the keys work again"),
        Binding("escape", "back_to_run", "Back to run", tooltip="Back to the dashboard of the open run"),
        Binding(
            "o",
            "toggle_clip_start",
            "Y range",
            show=False,
            tooltip="Y ranges: every point, or leave out the first steps' outliers (drawn clipped, ▲)",
        ),
        Binding(
            "a",
            "toggle_align",
            "Align runs",
            show=False,
            tooltip="Overlaid runs: aligned by step, or by fraction of each run's max_steps",
        ),
        Binding(
            "x", "crosshair", "Cursor", show=False, tooltip="Cursor on the loss chart: the step and every value there"
        ),
        Binding("left", "move_crosshair(-1)", "Cursor left", show=False, tooltip=CURSOR_KEYS),
        Binding("right", "move_crosshair(1)", "Cursor right", show=False, tooltip=CURSOR_KEYS),
        Binding("shift+left", "move_crosshair(-10)", "Cursor left", show=False, tooltip=CURSOR_KEYS),
        Binding("shift+right", "move_crosshair(10)", "Cursor right", show=False, tooltip=CURSOR_KEYS),
    ]

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._pending: tuple[str, tuple] | None = None  # a show_* call made before the screen was mounted
        self._dashboard: RunDashboard | None = None
        self._form: TrainForm | None = None
        self._switcher: ContentSwitcher | None = None
        self._form_mounted: AwaitMount | None = None

    def compose_body(self) -> ComposeResult:
        with ContentSwitcher(id="train-views"):
            yield RunDashboard(self.smol.workspace, refresh_fps=self.smol.refresh_fps, id="dashboard")

    def on_mount(self) -> None:
        self._dashboard, self._switcher = self.query_one(RunDashboard), self.query_one(ContentSwitcher)
        pending, self._pending = self._pending, None
        if pending is None and self.smol.start_run is not None:  # `watch RUN`, `demo`: the run comes first
            pending = ("dashboard", (self.smol.start_run, self.smol.start_overlay))
        if pending is None:
            self._find_first_view()
        elif pending[0] == "dashboard":
            self.show_run(*pending[1])
        else:
            self.show_form()

    @work(thread=True, exclusive=True, exit_on_error=False, group="first-view")
    def _find_first_view(self) -> None:
        """What the screen opens on when nothing asked for a view: the run training now, else a new run's form."""
        from smoltui.app import active_runs

        running = active_runs(self.smol.workspace)
        self.app.call_from_thread(self._show_first_view, running[0] if running else None)

    def _show_first_view(self, run_id: str | None) -> None:
        if self.view is not None:
            return  # something was asked for meanwhile
        self.show_run(run_id) if run_id else self.show_form()

    def on_screen_resume(self) -> None:
        self.dashboard.poll_now()

    # -- the contract with the app

    @property
    def dashboard(self) -> RunDashboard:
        return self._dashboard or self.query_one(RunDashboard)

    @property
    def form(self) -> TrainForm:
        """The new-run form, built on first use: watching a run never pays for its thirty fields."""
        if self._form is None:
            self._form = TrainForm(self.smol.workspace, self.smol.recent_sources, id="form")
            self._form.display = False  # the switcher hides what it does not show, but only what it had at mount
            self._form_mounted = self._switcher.mount(self._form)
        return self._form

    @property
    def view(self) -> str | None:
        """ "form" or "dashboard": what the screen shows (None for the instant before it chose)."""
        return self._switcher.current if self._switcher else None

    def show_run(self, run_ref: str | RunHandle, overlay: Sequence[str] = ()) -> None:
        """Open the live dashboard of `run_ref` (id, unique prefix or "latest") with `overlay` runs on its loss.

        Called before the screen is mounted (the app's first screen, `watch`), it is what the screen opens on.
        """
        if self._switcher is None:
            self._pending = ("dashboard", (run_ref, tuple(overlay)))
            return
        self.workers.cancel_group(self, "first-view")
        self.workers.cancel_group(self, "show-form")
        self._switch("dashboard")
        self.dashboard.show(run_ref, overlay, launched=isinstance(run_ref, RunHandle))

    def show_form(self) -> None:
        """Show the new-run form, pre-filled with the session's model if one is loaded."""
        if self._switcher is None:
            self._pending = ("form", ())
            return
        self.workers.cancel_group(self, "first-view")
        if self.form.is_mounted:
            self._show_form()
        else:  # built just now: the switcher shows only a mounted child
            self.run_worker(self._show_form_when_mounted(), group="show-form", exclusive=True)

    async def _show_form_when_mounted(self) -> None:
        await self._form_mounted
        self._show_form()

    def _show_form(self) -> None:
        self.form.offer_model(self._session_source())
        self._switch("form")
        self.form.focus_first()

    def _switch(self, view: str) -> None:
        self._switcher.current = view
        if view == "dashboard":
            self.set_focus(None)
            self.dashboard.poll_now()
        self.refresh_bindings()

    def _session_source(self) -> str | None:
        model = self.smol.session_model
        return None if model is None else model.source

    @property
    def read_only(self) -> bool:
        return self.smol.read_only

    # -- keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if self._dashboard is None:
            return True  # not composed yet
        if action in DASHBOARD_ACTIONS and self.view != "dashboard":
            return False
        if action in CONTROL_ACTIONS:
            if self.read_only or self.dashboard.run_id is None or self.dashboard.state.status in TERMINAL_STATUSES:
                return False  # keys appear only where they can act: a run that ended takes no commands
            if action in ("pause", "resume"):
                return (self.dashboard.state.status == RunStatus.PAUSED) == (action == "resume")
        if action == "move_crosshair":
            return self.dashboard.crosshair
        if action == "new_run":
            return not self.read_only
        if action == "start_run":
            return self.view == "form" and not self.read_only
        typing = isinstance(self.focused, Input | Select)
        if action == "leave_field":
            return self.view == "form" and typing
        if action == "back_to_run":
            return self.view == "form" and self.dashboard.run_id is not None and not typing
        return True

    def action_pause(self) -> None:
        self.dashboard.send(CommandKind.PAUSE)

    def action_resume(self) -> None:
        self.dashboard.send(CommandKind.RESUME)

    def action_checkpoint(self) -> None:
        self.dashboard.send(CommandKind.CHECKPOINT)
        self.notify("Checkpoint requested: the trainer saves it after its current step.", timeout=3)

    def action_sample(self) -> None:
        self.dashboard.send(CommandKind.SAMPLE)
        self.notify("Sample requested: it appears under samples after the current step.", timeout=3)

    def action_stop_run(self) -> None:
        dashboard = self.dashboard

        def stop_if_confirmed(stop: bool | None) -> None:
            if stop:
                dashboard.send(CommandKind.STOP)

        self.app.push_screen(ConfirmStop(dashboard.run_id or "?"), stop_if_confirmed)

    def action_toggle_log_y(self) -> None:
        self.dashboard.toggle_log_y()

    def action_smoothing(self, direction: int) -> None:
        self.dashboard.change_smoothing(direction)

    def action_zoom(self) -> None:
        self.dashboard.cycle_zoom()

    def action_toggle_clip_start(self) -> None:
        self.dashboard.toggle_clip_start()

    def action_toggle_align(self) -> None:
        self.dashboard.toggle_align()

    def action_crosshair(self) -> None:
        self.dashboard.toggle_crosshair()

    def action_move_crosshair(self, columns: int) -> None:
        self.dashboard.move_crosshair(columns)

    def action_new_run(self) -> None:
        self.show_form()

    def action_leave_field(self) -> None:
        self.set_focus(None)

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()  # typing or not decides what escape does, and the footer says so

    def on_descendant_blur(self) -> None:
        self.refresh_bindings()

    def action_back_to_run(self) -> None:
        self._switch("dashboard")

    def action_start_run(self) -> None:
        self.form.start()

    # -- launching

    @on(TrainForm.StartRequested)
    def _start_requested(self, message: TrainForm.StartRequested) -> None:
        if self.read_only:
            self.notify("This dashboard is read-only; start runs with `smoltui train`.", severity="warning")
            return
        self.notify(f"Starting a run of {message.config.model}…", timeout=3)
        self._launch(message.config)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def _launch(self, config) -> None:
        handle = launch_run(config, self.smol.workspace)  # its checks come first: a mistake leaves no run behind
        self.app.call_from_thread(self.show_run, handle)

    def worker_failed(self, group: str, error: BaseException) -> None:
        if group == "launch" and isinstance(error, UserError) and self._form is not None:
            self._form.show_error(error)  # the sentence stays beside its field, not only in a toast
        super().worker_failed(group, error)
