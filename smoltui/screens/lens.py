"""Lens: the logit lens of a prompt on the session's model, animated as the model generates after it one token at
a time, or across a run's checkpoints; play, pause and step through it, point at any cell for its top tokens.

The layout, keys, cursor and playback are here; the jobs and the frames they make are in lens_jobs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.suggester import SuggestFromList
from textual.widget import Widget
from textual.widgets import Input, Label, Static

from smoltui.engine.bundled import bundled_models
from smoltui.engine.decode_events import PromptTruncated
from smoltui.engine.errors import UserError
from smoltui.engine.session import Job, JobCancelled, JobFailed, JobFinished, JobProgressed
from smoltui.lens_look import LENS_MODES
from smoltui.messages import SessionUpdated
from smoltui.screens.base import SmolScreen, model_name
from smoltui.screens.lens_jobs import LensFilm, checkpoints_work, generation_work
from smoltui.screens.sample_generation import BUNDLED
from smoltui.widgets.lens_details import cell_panel, mode_legend
from smoltui.widgets.lens_grid import LensGridView
from smoltui.widgets.worker_errors import describe_error, report_error

if TYPE_CHECKING:
    from smoltui.engine.lens import LensGrid, TargetToken
    from smoltui.engine.runs import RunSummary

NARROW_WIDTH = 100
SIDE_WIDTH = 37  # the side panel's text, before it is laid out (smoltui.tcss: 42 less border, padding, scrollbar)
SPEEDS = (1, 2, 4, 8, 16, 32)  # frames a second
DEFAULT_SPEED = 3  # 8 a second
DEFAULT_NEW_TOKENS = 16
STATUS_FPS = 10  # how often the status line may count the frames coming in: never a repaint per token
TYPING_ACTIONS = {"compute", "stop", "leave_field"}  # what keys do while a field has the keyboard
CURSOR_HELP = "Move the cell cursor (the side panel shows the cell's top tokens)"
STEP_HELP = "Step back or forward one frame (a token, or a checkpoint); stepping pauses"


class LensScreen(SmolScreen):
    """The logit lens of the session's model (or of a run's checkpoints), frame by frame."""

    MODE = "lens"
    AUTO_FOCUS = "#lens-grid"  # not the prompt: number keys still switch screens until i (or a click) starts typing
    RUNS_REFRESH_S = 10.0  # the run input completes the workspace's run ids
    BINDINGS: ClassVar[list[BindingType]] = [  # in order of importance: a narrow footer drops the last first
        Binding("ctrl+s", "compute", "Compute", tooltip="The lens of the prompt, then of each token generated"),
        Binding("escape", "stop", "Stop", tooltip="Stop computing now (the frames so far stay)"),
        Binding("b", "load_bundled", "Load SmolLM2", tooltip=f"Load the bundled {BUNDLED} as the session's model"),
        Binding("space", "play_pause", "Play/pause", tooltip="Play the frames from here, or pause them"),
        Binding("comma", "step(-1)", "Back", key_display=",", tooltip=STEP_HELP),
        Binding("full_stop", "step(1)", "Fwd", key_display=".", tooltip=STEP_HELP),
        Binding("m", "cycle_mode", "Mode", tooltip="Colour by probability, target rank, entropy or KL to final"),
        Binding("i", "focus_field('prompt')", "Prompt", tooltip="Type the prompt"),
        Binding("t", "focus_field('target')", "Target", tooltip="Type a target token: its rank in every cell"),
        Binding("r", "focus_field('run')", "Run", tooltip="Type a run id: the lens at each of its checkpoints"),
        Binding("s", "save_picture", "Save SVG", tooltip="Save the screen as an SVG picture in the workspace"),
        Binding("plus", "speed(1)", "Faster", key_display="+", tooltip="Play more frames a second"),
        Binding("minus", "speed(-1)", "Slower", key_display="-", tooltip="Play fewer frames a second"),
        Binding("escape", "leave_field", "Leave field", tooltip="Stop typing in the field; the keys work again"),
        Binding("home", "step_to(0)", "First frame", show=False, tooltip="Show the first frame"),
        Binding("end", "step_to(-1)", "Last frame", show=False, tooltip="Show the last frame"),
        Binding("left", "move(0,-1)", "Cell left", show=False, tooltip=CURSOR_HELP),
        Binding("right", "move(0,1)", "Cell right", show=False, tooltip=CURSOR_HELP),
        Binding("up", "move(1,0)", "Cell up", show=False, tooltip=CURSOR_HELP),
        Binding("down", "move(-1,0)", "Cell down", show=False, tooltip=CURSOR_HELP),
    ]

    frame: reactive[int] = reactive(0, repaint=False)  # the frame shown
    playing: reactive[bool] = reactive(False, repaint=False)
    speed: reactive[int] = reactive(DEFAULT_SPEED, repaint=False)  # an index into SPEEDS
    mode: reactive[int] = reactive(0, repaint=False)  # an index into LENS_MODES
    computing: reactive[bool] = reactive(False, repaint=False)

    def __init__(self) -> None:
        super().__init__()
        self.film = LensFilm()
        self._job: Job | None = None
        self._load_job: Job | None = None
        self._target: TargetToken | None = None
        self._stop_requested = False
        self._frames_counted = True  # whether the status line's count of frames is up to date
        self._bundled_available = any(model.name == BUNDLED and model.available for model in bundled_models())

    def compose_body(self) -> Iterable[Widget]:
        with Horizontal(id="lens-body"):
            with Vertical(id="lens-main"):
                yield LensGridView(id="lens-grid", classes="panel")
                yield Static(id="lens-note")
                yield Static(id="lens-legend")
                yield Static(id="lens-status")
                prompt = Input(placeholder="a text whose every position the lens shows", id="prompt")
                prompt.border_title = "Prompt · enter computes the lens"
                yield prompt
                with Horizontal(id="lens-options"):
                    yield Label("generate ")
                    yield Input(str(DEFAULT_NEW_TOKENS), type="integer", compact=True, id="generate")
                    yield Label(" target ")
                    yield Input(placeholder="one token", compact=True, id="target")
                    yield Label(" run ")
                    yield Input(placeholder="a run id: its checkpoints", compact=True, id="run")
            with VerticalScroll(id="lens-side", classes="panel"):
                yield Static(id="lens-cell")

    def on_mount(self) -> None:
        super().on_mount()
        self._play_timer = self.set_interval(1 / SPEEDS[self.speed], self._advance, pause=True)
        self.set_interval(1 / STATUS_FPS, self._count_frames)
        self.query_one("#lens-side").border_title = "Cell · arrows or a click"
        self.query_one("#generate", Input).tooltip = "How many tokens to generate after the prompt (0: none)"
        self.query_one("#target", Input).tooltip = "A token whose rank every cell shows (enter recomputes)"
        self.query_one("#run", Input).tooltip = "A run id (or a unique prefix): enter steps through its checkpoints"
        self.watch(self.app, "session_model", self._model_changed)
        self._show_status()

    # -- what tests and benchmarks read ----------------------------------------------------------------------

    @property
    def grid_view(self) -> LensGridView:
        return self.query_one("#lens-grid", LensGridView)

    @property
    def shown_grid(self) -> LensGrid | None:
        return self.film.grid(self.frame)

    # -- the model -------------------------------------------------------------------------------------------

    def _model_changed(self, _loaded=None) -> None:
        if self.film.kind != "checkpoints":
            self.film.start("")
            self.frame = 0
            self._target = None
        self._show()
        self.refresh_bindings()

    def _no_model_hint(self) -> str:
        if self.smol.session_model is not None:
            return ""
        bundled = f", or press b to load the bundled {BUNDLED} here" if self._bundled_available else ""
        return f"No model is loaded: load one on the Model screen (key 2){bundled}; or type a run id below (r)."

    def action_load_bundled(self) -> None:
        import os

        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # tqdm bars on stderr would tear the screen
        session = self.smol.session
        self._load_job = session.load(BUNDLED, tag=self, device=self.smol.device, workspace=self.smol.workspace)
        self._say(f"loading {BUNDLED}…")
        self.refresh_bindings()

    # -- computing -------------------------------------------------------------------------------------------

    def action_compute(self) -> None:
        """The lens of the prompt on the session's model, growing with each generated token."""
        loaded = self.smol.session_model
        if loaded is None:
            self._say(self._no_model_hint())
            return
        prompt = self.query_one("#prompt", Input).value
        if not prompt:
            self._say("Type a prompt first (i), then press enter.")
            return
        new_tokens = self._new_tokens()
        target = self._resolve_target(loaded.tokenizer)
        if new_tokens is None or target is False:
            return
        self._start("generation", generation_work(prompt, new_tokens, target.token_id if target else None))

    def _compute_checkpoints(self) -> None:
        run = self.query_one("#run", Input).value.strip()
        prompt = self.query_one("#prompt", Input).value
        if not run:
            self._say("Type a run id first (r): the lens is shown at each of its checkpoints.")
            return
        if not prompt:
            self._say("Type a prompt first (i): its lens is shown at each checkpoint of the run.")
            return
        target = self.query_one("#target", Input).value or None
        work = checkpoints_work(run, prompt, target, self.smol.workspace, self.smol.device)
        self._start("checkpoints", work, run)

    def _start(self, kind: str, work, source: str = "") -> None:
        if self._job is not None:
            self._job.cancel()
        self.film.start(kind, source)
        self._stop_requested = False
        self._job = self.smol.session.submit("lens", work, f"lens ({kind})", tag=self)
        self.computing = True
        self.frame = 0
        self.playing = True
        self._say("")
        self._show()

    def _new_tokens(self) -> int | None:
        text = self.query_one("#generate", Input).value.strip() or "0"
        count = int(text) if text.lstrip("-").isdigit() else -1
        if count < 0:
            self._say("The number of tokens to generate is a whole number, 0 or more; type it after generate.")
            return None
        return count

    def _resolve_target(self, tokenizer) -> TargetToken | None | bool:
        """The target token typed, None for none, or False after saying why the text is not one token."""
        from smoltui.engine.lens import target_token

        text = self.query_one("#target", Input).value
        if not text:
            return None
        try:
            return target_token(tokenizer, text)
        except UserError as error:
            self._say(str(error))
            return False

    def action_stop(self) -> None:
        if self._job is not None:
            self._stop_requested = True
            self._job.cancel()

    def on_session_updated(self, message: SessionUpdated) -> None:
        message.stop()
        event = message.event
        job = getattr(event, "job", None)
        if job is not None and job is self._load_job:
            self._load_event(event)
        elif job is not None and job is self._job:
            if isinstance(event, JobProgressed):
                self._job_said(event.event)
            elif isinstance(event, JobFinished | JobFailed | JobCancelled):
                self._job_ended(event)

    def _job_said(self, event) -> None:
        """One event of the lens job: a frame (drawn now only when it is the one in sight), a note, a load."""
        if isinstance(event, str):  # a checkpoint being loaded
            self._say(event)
            return
        changed = self.film.add(event)
        if isinstance(event, PromptTruncated):
            self._say(event.message)
        elif changed == self.frame:
            self._show_grid()  # the frame in sight (the first, or the prompt's, now with its next)
        elif changed is not None:
            self._frames_counted = False  # the status line counts them at STATUS_FPS, not once a token

    def _count_frames(self) -> None:
        if not self._frames_counted:
            self._frames_counted = True
            self._show_status()

    def _job_ended(self, event) -> None:
        self._job = None
        self.computing = False
        if isinstance(event, JobFailed):
            if not isinstance(event.error, UserError):
                report_error(self, event.error)
            self._say(describe_error(event.error))
        elif isinstance(event, JobCancelled) and not self._stop_requested:
            self._say("cancelled: the model changed.")
        elif not self.film.note:
            self._say("")
        if not self.playing:
            self._show()
        self._show_status()

    def _load_event(self, event) -> None:
        if isinstance(event, JobProgressed):
            self._say(str(event.event))
            return
        if isinstance(event, JobFinished):
            self._load_job = None
            self._say(f"loaded {BUNDLED}; type a prompt (i) and press enter.")
        elif isinstance(event, JobFailed | JobCancelled):
            self._load_job = None
            self._say(f"nothing loaded: {describe_error(event.error) if isinstance(event, JobFailed) else 'cancelled'}")
        self.refresh_bindings()

    # -- playback --------------------------------------------------------------------------------------------

    def _advance(self) -> None:
        if self.frame < len(self.film.frames) - 1:
            self.frame += 1
        elif not self.computing:
            self.playing = False

    def action_play_pause(self) -> None:
        if not self.playing and self.frame >= len(self.film.frames) - 1 and not self.computing:
            self.frame = 0  # from the start again
        self.playing = not self.playing

    def action_step(self, step: int) -> None:
        self.playing = False
        self.frame = min(max(self.frame + step, 0), max(len(self.film.frames) - 1, 0))

    def action_step_to(self, index: int) -> None:
        self.action_step((index if index >= 0 else len(self.film.frames) - 1) - self.frame)

    def action_speed(self, change: int) -> None:
        self.speed = min(max(self.speed + change, 0), len(SPEEDS) - 1)

    def watch_speed(self, speed: int) -> None:
        if self.is_mounted:
            self._play_timer.stop()
            self._play_timer = self.set_interval(1 / SPEEDS[speed], self._advance, pause=not self.playing)
            self._show_status()

    def watch_playing(self, playing: bool) -> None:
        if playing:
            self._play_timer.resume()
        else:
            self._play_timer.pause()
        self._show_status()

    def watch_frame(self) -> None:
        self._show_grid()

    def _show_grid(self) -> None:
        """The frame's grid, the cursor kept on its cell (or on the newest column, which it follows)."""
        view = self.grid_view
        grid = self.shown_grid
        row, position = view.cursor
        if grid is not None and (view.grid is None or position >= view.grid.positions - 1):
            position = grid.positions - 1  # a cursor on the newest column follows it
        if grid is not None and view.grid is None:
            row = grid.rows - 1  # the first grid: the model's own prediction at the last position
        view.show(grid, LENS_MODES[self.mode], (row, position))
        self._show_frame()

    def action_cycle_mode(self) -> None:
        self.mode = (self.mode + 1) % len(LENS_MODES)

    def watch_mode(self) -> None:
        self._show()

    # -- the cursor ------------------------------------------------------------------------------------------

    def action_move(self, rows: int, positions: int) -> None:
        view = self.grid_view
        row, position = view.cursor
        view.place_cursor(row + rows, position + positions)
        self._show_cell()

    @on(LensGridView.CellClicked)
    def _cell_clicked(self, event: LensGridView.CellClicked) -> None:
        event.view.place_cursor(event.row, event.position)
        event.view.focus()
        self._show_cell()

    # -- drawing ---------------------------------------------------------------------------------------------

    def _show(self) -> None:
        """Everything that depends on the frame: the grid, its title, the cell panel, the legend, the status."""
        view = self.grid_view
        grid = self.shown_grid
        view.placeholder = self._no_model_hint() if self.film.kind != "checkpoints" else ""
        if grid is None and self.smol.session_model is not None and not self.computing:
            view.placeholder = "Type a prompt below (i) and press enter: its lens, then each generated token's."
        if self.computing and grid is None:
            view.placeholder = "computing the lens…"
        self._show_grid()

    def _show_frame(self) -> None:
        view = self.grid_view
        if self.film.kind == "checkpoints":
            name = f"run {self.film.source}"
        else:
            loaded = self.smol.session_model
            name = "no model" if loaded is None else model_name(loaded)
        frames = self.film.frames
        title = f"Lens · {name}"
        if frames and self.frame < len(frames):
            title += f" · {self.frame + 1}/{len(frames)} {frames[self.frame].title}"
        view.border_title = title
        self._show_cell()
        self._show_legend()
        self._show_status()

    def _show_cell(self) -> None:
        view = self.grid_view
        panel = self.query_one("#lens-cell", Static)
        grid = view.grid
        if grid is None or grid.positions == 0:
            panel.update("No grid yet: compute one, then move the cursor over its cells.")
            view.border_subtitle = ""
            return
        panel.update(cell_panel(grid, *view.cursor, width=panel.size.width or SIDE_WIDTH))
        self._show_subtitle()

    def _show_subtitle(self) -> None:
        """Which positions are in sight, when not all are."""
        view = self.grid_view
        grid = view.grid
        subtitle = ""
        if grid is not None and grid.positions > view.columns_shown:
            last = min(grid.positions, view.first_position + view.columns_shown)
            subtitle = f"positions {view.first_position}-{last - 1} of {grid.positions}"
        view.border_subtitle = subtitle

    def _show_legend(self) -> None:
        grid = self.grid_view.grid
        legend = mode_legend(LENS_MODES[self.mode], has_target=grid is not None and grid.target_id is not None)
        self.query_one("#lens-legend", Static).update(legend)

    def _show_status(self) -> None:
        parts = ["▶ playing" if self.playing else "paused", f"{SPEEDS[self.speed]} frames/s (+ -)"]
        if self.film.frames:
            parts.append(f"frame {self.frame + 1}/{len(self.film.frames)} (, .)")
        if self.computing:
            parts.append("computing… (esc stops)")
        self.query_one("#lens-status", Static).update(Text(" · ".join(parts), style="dim"))

    def _say(self, sentence: str) -> None:
        """One sentence about the last thing asked (a bad input, a truncated prompt, a load), until the next."""
        note = self.query_one("#lens-note", Static)
        note.update(sentence)
        note.display = bool(sentence)

    # -- fields and keys -------------------------------------------------------------------------------------

    @on(Input.Submitted, "#prompt, #generate, #target")
    def _submitted(self) -> None:
        if self.film.kind == "checkpoints" and self.query_one("#run", Input).value.strip():
            self._compute_checkpoints()
        else:
            self.action_compute()

    @on(Input.Submitted, "#run")
    def _run_submitted(self) -> None:
        self._compute_checkpoints()

    def show_runs(self, runs: Sequence[RunSummary]) -> None:
        self.query_one("#run", Input).suggester = SuggestFromList([run.run_id for run in runs])

    def action_focus_field(self, field: str) -> None:
        self.query_one(f"#{field}", Input).focus()

    def action_leave_field(self) -> None:
        self.grid_view.focus()

    def action_save_picture(self) -> None:
        from textual._files import generate_datetime_filename

        self.app.deliver_screenshot(generate_datetime_filename("smoltui lens", ".svg"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        typing = self.is_current and isinstance(self.focused, Input)
        if action == "stop":
            return self.computing
        if action == "leave_field":
            return typing and not self.computing
        if typing and action not in TYPING_ACTIONS:
            return False
        if action == "load_bundled":
            return self._bundled_available and self.smol.session_model is None and self._load_job is None
        if action in ("step", "play_pause"):
            return None if not self.film.frames else True
        return True

    def on_descendant_focus(self) -> None:
        self.refresh_bindings()

    def on_descendant_blur(self) -> None:
        self.refresh_bindings()

    def watch_computing(self) -> None:
        self.refresh_bindings()

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW_WIDTH, "-narrow")
        self.call_after_refresh(self._show_cell)  # the bars fit the side panel's new width
