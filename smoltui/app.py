"""SmolApp: the dashboard. One mode per screen on the number keys, global keys, the command palette, and the
header's pulse of the run that is training.

Nothing here imports torch: the first frame paints at once, and models load inside the Model screen's worker.
"""

from __future__ import annotations

import gc
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from textual import events, work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.widget import AwaitMount
from textual.worker import Worker, get_current_worker

from smoltui.engine.errors import UserError
from smoltui.engine.run_contract import ACTIVE_STATUSES, Metric
from smoltui.engine.session import JobCancelled, JobFailed, JobFinished, ModelChanged, ModelSession, SessionEvent
from smoltui.engine.workspace import workspace_path
from smoltui.messages import RunProgressShown, RunPulse, SessionUpdated
from smoltui.screens import SCREENS
from smoltui.screens.help import HelpScreen, declared_bindings
from smoltui.widgets.worker_errors import report_error

if TYPE_CHECKING:
    from smoltui.engine.models import LoadedModel
    from smoltui.screens.train import TrainScreen

SETTLE_S = 1.0  # after a screen is first built, wait this long before freezing what it made (see _freeze_built)
RESCAN_EVERY_S = 5.0  # how often the header looks for a newer active run; the tracked run is read every frame


class SmolApp(App[None]):
    """The smoltui dashboard over one workspace."""

    TITLE = "smoltui"
    CSS_PATH = "smoltui.tcss"
    MODES = {entry.mode: entry.make for entry in SCREENS}  # each screen's module is imported on its first visit
    DEFAULT_MODE = "home"
    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(
                entry.key, f"go('{entry.mode}')", entry.title, show=False, tooltip=f"Show the {entry.title} screen."
            )
            for entry in SCREENS
        ),
        Binding("question_mark", "help", "Keys", key_display="?", tooltip="List every key of every screen."),
        Binding("q", "quit", "Quit", tooltip="Leave smoltui; runs keep training."),
    ]

    # The session's model, and the header's run (None: no active run, or not read yet). Their watchers draw what
    # they change: a repaint of the whole screen at every pulse read (four a second) cost a full frame each time.
    session_model: reactive[LoadedModel | None] = reactive(None, always_update=True, repaint=False)
    model_loading: reactive[str | None] = reactive(None, repaint=False)  # a model the app loads itself (`demo`)
    pulse: reactive[RunPulse | None] = reactive(None, always_update=True, repaint=False)

    def __init__(
        self,
        workspace: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        refresh_fps: float = 4.0,
        start_mode: str = "home",
        start_run: str | None = None,
        start_overlay: Sequence[str] = (),
        start_model: str | None = None,
        device: str = "auto",
        clock: Callable[[], float] = time.time,
    ) -> None:
        if start_mode not in self.MODES:
            raise ValueError(f"unknown start mode {start_mode!r}; modes: {', '.join(self.MODES)}")
        self.DEFAULT_MODE = start_mode  # read by App.__init__: the first screen built is the start screen
        super().__init__()
        self.workspace: Path = workspace_path(workspace)
        self.read_only = read_only
        self.refresh_fps = max(0.1, float(refresh_fps))
        self.start_mode = start_mode
        self.start_run = start_run
        self.start_overlay = tuple(start_overlay)
        self.start_model = start_model  # loaded into the session once the first frame is up (`demo`)
        self.device = device
        self.clock = clock
        self.session = ModelSession(self._session_said)  # the loaded model and the one worker that runs its jobs
        self.recent_sources: list[str] = []  # models loaded this session, newest first (the Model input suggests them)
        self._built_modes = {start_mode}
        self._building_mode = False
        self.pulse_known = False  # whether the pulse has been read once: before that the header says nothing
        self._pulse_worker: Worker | None = None
        self._pulse_reader = PulseReader(self.workspace, start_run)

    # -- modes: the Workbench interface the screens use (see screens.base) ----------------------------------

    def switch_mode(self, mode: str) -> AwaitMount:
        self._building_mode = mode not in self._built_modes
        self._built_modes.add(mode)
        if self._building_mode:
            self.set_timer(SETTLE_S, self._freeze_built)
        return super().switch_mode(mode)

    def delay_update(self, delay: float = 0.05) -> None:
        """Textual calls this on every mode switch, to hold the screen for 50 ms while it is built. A screen is
        built on its first visit only, and the hold was most of a key's latency, so later switches paint at once.
        """
        if self._building_mode:
            super().delay_update(delay)

    def go(self, mode: str) -> None:
        self.switch_mode(mode)

    def action_go(self, mode: str) -> None:
        self.go(mode)

    def open_run(self, run_ref: str, overlay: Sequence[str] = ()) -> None:
        """Show a run's dashboard on the Train screen, with other runs' curves overlaid."""
        overlay = tuple(overlay)
        self._on_train_screen(lambda screen: screen.show_run(run_ref, overlay))

    def open_train_form(self) -> None:
        self._on_train_screen(lambda screen: screen.show_form())

    def _on_train_screen(self, call: Callable[[TrainScreen], None]) -> None:
        """Switch to the Train screen and `call` it: a screen built by this switch takes the call as its first view."""
        self.switch_mode("train")
        call(self.screen)  # type: ignore[arg-type]

    def open_model(self, *, new: bool) -> None:
        """The Model screen with its input focused: a preset to build (`new`) or any source to load."""
        self.switch_mode("model")
        self.screen.begin(new=new)  # type: ignore[attr-defined]  # the Model screen's own entry point

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """Save the palette's Screenshot into <workspace>/screenshots/ (owner-only), else the current folder.

        Textual's default, ~/Downloads, is missing on many machines reached over SSH, and the save then fails.
        Its notification names the full path; in a browser (`smoltui serve`) the file is downloaded as before.
        """
        from smoltui.engine.workspace import ensure_private_dir

        if path is None:
            try:
                path = str(ensure_private_dir(self.workspace / "screenshots"))
            except (UserError, OSError):  # no permission, a file in the way, a read-only disk: try the current folder
                path = str(Path.cwd())
        return super().deliver_screenshot(filename, path, time_format)

    # -- start and quit ------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.set_interval(1 / self.refresh_fps, self._poll_pulse, name="pulse")
        self.call_after_refresh(self._poll_pulse)  # after the first frame: its thread would compete with it
        self.set_timer(SETTLE_S, self._freeze_built)
        if self.start_model is not None:  # after the first frame: loading imports torch and reads the weights
            self.call_after_refresh(self._load_start_model)
        if probe := os.environ.get("SMOLTUI_FIRST_FRAME_PROBE"):  # bench_ui: which modules the first frame needed
            self.call_after_refresh(_write_module_probe, Path(probe))

    def _freeze_built(self) -> None:
        """Move the objects that live as long as the app (modules, screens, widgets) out of the collector's sight.

        Rendering makes enough short-lived containers that Python runs a full collection every second or two;
        with ~90,000 long-lived objects each took 100-190 ms while a run trained on both cores, and a key pressed
        meanwhile waited for it (bench_ui's p95). Frozen, they are no longer traversed; what screens make later
        is collected as before, and everything is unfrozen when the app ends. A model loaded into the session
        brings torch and transformers along: frozen again then, or a key waited ~200 ms for each full collection
        while the model generated.
        """
        gc.collect()
        gc.freeze()

    def on_unmount(self) -> None:
        self.session.close(timeout=1.0)  # a job stops at its next token; the daemon worker dies with the app
        gc.unfreeze()  # the interpreter's own clean-up at exit must see everything again
        if self._pulse_worker is None or self._pulse_worker.is_finished:
            self._pulse_reader.close()

    async def action_quit(self) -> None:
        self.exit(message=quit_message(active_runs(self.workspace)))

    # -- the model session -----------------------------------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key | events.MouseDown) and not event.is_forwarded:
            self.session.give_way()  # the model's job waits while the key's repaint runs: p95 < 100 ms, generating
        await super().on_event(event)

    def _session_said(self, event: SessionEvent) -> None:
        """From the session's worker: each job's events go to whoever submitted it (its tag), the rest here."""
        owner = getattr(getattr(event, "job", None), "tag", None)
        (owner if owner is not None else self).post_message(SessionUpdated(event))  # thread-safe, never blocks

    def _load_start_model(self) -> None:
        self.model_loading = self.start_model
        self.session.load(self.start_model, device=self.device, workspace=self.workspace)

    def on_session_updated(self, message: SessionUpdated) -> None:
        """What reaches the app itself: the model changed, or how a load the app asked for (`demo`) went."""
        event = message.event
        if isinstance(event, ModelChanged):
            self.session_model = event.loaded
            self.call_after_refresh(self._freeze_built)  # torch, transformers and the model: ~10x what the UI has
            if event.loaded is not None and event.loaded.source not in self.recent_sources:
                self.recent_sources.insert(0, event.loaded.source)
        elif isinstance(event, JobFailed):
            report_error(self, event.error)  # a job of the app's own (or one whose screen is gone)
        if isinstance(event, JobFinished | JobFailed | JobCancelled) and event.job.kind == "load":
            self.model_loading = None

    # -- the header's pulse --------------------------------------------------------------------------------

    def _poll_pulse(self) -> None:
        if self._pulse_worker is None or self._pulse_worker.is_finished:
            self._pulse_worker = self._read_pulse()

    @work(thread=True, exit_on_error=False, group="pulse")
    def _read_pulse(self) -> None:
        pulse = self._pulse_reader.read()
        if not get_current_worker().is_cancelled:
            self.call_from_thread(self._take_pulse, pulse)

    def _take_pulse(self, pulse: RunPulse | None) -> None:
        """A fresh read, unless the dashboard has already shown newer numbers of the same run."""
        self.pulse_known = True
        shown = self.pulse
        if pulse is not None and shown is not None and shown.run_id == pulse.run_id:
            if (shown.step or 0) > (pulse.step or 0):
                pulse = replace(pulse, step=shown.step, loss=shown.loss)
        self.pulse = pulse

    def on_run_progress_shown(self, message: RunProgressShown) -> None:
        """The header follows what the run dashboard shows of the same run, at the same moment."""
        shown = self.pulse
        if shown is not None and shown.run_id == message.run_id and message.step >= (shown.step or 0):
            self.pulse = replace(shown, status=message.status, step=message.step, loss=message.loss)

    # -- the command palette -------------------------------------------------------------------------------

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Textual's own commands, the screens by name, and every key of this screen and of the app."""
        for command in super().get_system_commands(screen):
            if command.title != "Keys":  # Textual's own keys panel: "Keys of every screen" below lists them all
                yield command
        for entry in SCREENS:
            yield SystemCommand(
                f"{entry.title} screen",
                f"Go to the {entry.title} screen (key {entry.key}).",
                partial(self.go, entry.mode),
            )
        yield SystemCommand("Keys of every screen", "List every key of every screen (key ?).", self.action_help)
        seen = {"go", "help", "quit"}
        for binding in declared_bindings(type(screen), own=True):
            name = binding.action.split("(")[0]
            if name in seen or not binding.description:
                continue
            seen.add(name)
            if screen.check_action(name, ()) is False:
                continue
            help_text = binding.tooltip or binding.description
            key = self.get_key_display(binding)
            yield SystemCommand(
                binding.description, f"{help_text} (key {key})", partial(screen.run_action, binding.action)
            )


def quit_message(running: Sequence[str]) -> str | None:
    """What the terminal says after the dashboard closes: the runs it leaves training, and how to get back."""
    if not running:
        return None
    run_id = running[0]
    others = f" (and {len(running) - 1} more)" if len(running) > 1 else ""
    return (
        f"run {run_id}{others} keeps training; `smoltui watch {run_id}` shows it again, "
        f"`smoltui stop {run_id}` stops it."
    )


class PulseReader:
    """Reads the header's numbers from the store of one run, kept open between frames.

    It follows `start_run` when given (watch, demo), else the newest active run, and looks for a newer one every
    RESCAN_EVERY_S. Called from one worker at a time.
    """

    def __init__(self, workspace: Path, start_run: str | None) -> None:
        self.workspace = workspace
        self.start_run = start_run
        self._store = None
        self._active: tuple[str, ...] = ()
        self._last_rescan = -RESCAN_EVERY_S

    def read(self) -> RunPulse | None:
        from smoltui.engine.runs import find_run
        from smoltui.engine.runstore import RunStore, effective_status

        if time.monotonic() - self._last_rescan >= RESCAN_EVERY_S:
            self._last_rescan = time.monotonic()
            self._active = active_runs(self.workspace)
            try:
                wanted = find_run(self.start_run, self.workspace) if self.start_run else None
            except UserError:
                wanted = None
            if wanted is None and self._active:
                wanted = self.workspace / "runs" / self._active[0]
            if wanted is None or self._store is None or self._store.run_dir != wanted:
                self.close()
                self._store = RunStore.open(wanted) if wanted is not None else None
        if self._store is None:
            return None
        try:
            meta = self._store.meta()
            last = self._store.last_metric(Metric.TRAIN_LOSS)
        except sqlite3.Error:  # the run was deleted under us: the next rescan finds what is left
            self.close()
            return None
        return RunPulse(
            run_id=self._store.run_dir.name,
            status=effective_status(meta),
            step=None if last is None else last[0],
            max_steps=meta.get("max_steps"),
            loss=None if last is None else last[1],
            active_runs=self._active,
        )

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def active_runs(workspace: Path) -> tuple[str, ...]:
    """The ids of the workspace's runs that are training, paused or starting, newest first."""
    from smoltui.engine.runstore import RunStore, effective_status, list_run_dirs

    active = []
    for run_dir in list_run_dirs(workspace):
        try:
            with RunStore.open(run_dir) as store:
                if effective_status(store.meta()) in ACTIVE_STATUSES:
                    active.append(run_dir.name)
        except (UserError, sqlite3.Error):  # deleted or half-created this instant; the next scan sees it whole
            continue
    return tuple(active)


def _write_module_probe(path: Path) -> None:
    import sys

    path.write_text("\n".join(sorted(sys.modules)))
