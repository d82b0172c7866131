"""Lens: the logit lens of a prompt on the session's model, animated as the model generates after it one token at
a time, or across a run's checkpoints; play, pause and step through it, point at any cell for its top tokens.

The layout, keys, cursor and playback are here; the jobs and the frames they make are in lens_jobs.
"""

from __future__ import annotations

import time
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

from smoltui.lens_look import LENS_MODES
from smoltui.screens.base import SmolScreen, model_name
from smoltui.screens.bundled_model import LOAD_BUNDLED_BINDING, BundledModelOffer
from smoltui.screens.lens_jobs import DEFAULT_NEW_TOKENS, STATUS_FPS, LensJobs
from smoltui.widgets.lens_details import cell_panel, mode_legend
from smoltui.widgets.lens_grid import LensGridView

if TYPE_CHECKING:
    from smoltui.engine.lens import LensGrid
    from smoltui.engine.runs import RunSummary

NARROW_WIDTH = 100
SIDE_WIDTH = 37  # the side panel's text, before it is laid out (smoltui.tcss: 42 less border, padding, scrollbar)
SPEEDS = (1, 2, 4, 8, 16, 32)  # frames a second
DEFAULT_SPEED = 3  # 8 a second
TYPING_ACTIONS = {"compute", "stop", "leave_field"}  # what keys do while a field has the keyboard
CURSOR_HELP = "Move the cell cursor (the side panel shows the cell's top tokens)"
STEP_HELP = "Step back or forward one frame (a token, or a checkpoint); stepping pauses"


class LensScreen(BundledModelOffer, LensJobs, SmolScreen):
    """The logit lens of the session's model (or of a run's checkpoints), frame by frame."""

    MODE = "lens"
    AUTO_FOCUS = "#lens-grid"  # not the prompt: number keys still switch screens until i (or a click) starts typing
    RUNS_REFRESH_S = 10.0  # the run input completes the workspace's run ids
    AFTER_LOADING = "type a prompt (i) and press enter."
    NO_MODEL_EXTRA = "; or type a run id below (r)"
    BINDINGS: ClassVar[list[BindingType]] = [  # in order of importance: a narrow footer drops the last first
        Binding("ctrl+s", "compute", "Compute", tooltip="The lens of the prompt, then of each token generated"),
        Binding("escape", "stop", "Stop", tooltip="Stop computing now (the frames so far stay)"),
        LOAD_BUNDLED_BINDING,
        Binding("space", "play_pause", "Play/pause", tooltip="Play the frames from here, or pause them"),
        Binding("comma", "step(-1)", "Back", key_display=",", tooltip=STEP_HELP),
        Binding("full_stop", "step(1)", "Fwd", key_display=".", tooltip=STEP_HELP),
        Binding("m", "cycle_mode", "Mode", tooltip="Colour by probability, target rank, entropy or KL to final"),
        Binding("i", "focus_field('prompt')", "Prompt", tooltip="Type the prompt", priority=True),
        Binding(
            "t", "focus_field('target')", "Target", tooltip="Type a target token: its rank in every cell", priority=True
        ),
        Binding(
            "r",
            "focus_field('run')",
            "Run",
            tooltip="Type a run id: the lens at each of its checkpoints",
            priority=True,
        ),
        Binding("s", "save_picture", "Save SVG", tooltip="Save the screen as an SVG picture in the workspace"),
        Binding("plus", "speed(1)", "Faster", key_display="+", tooltip="Play more frames a second"),
        Binding("minus", "speed(-1)", "Slower", key_display="-", tooltip="Play fewer frames a second"),
        Binding(
            "escape",
            "leave_field",
            "Leave field",
            tooltip="Stop typing in the field; the keys work again",
            priority=True,
        ),
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
        self._init_jobs()
        self._legend_shown: tuple[int, bool] | None = None  # (mode, whether a target is set) of the legend shown

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
        self._show()
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
        self.grid_view.placeholder = self._placeholder()
        self._show_grid()

    def _placeholder(self) -> str:
        if self.computing:
            return "computing the lens…"
        if self.film.kind != "checkpoints" and self.smol.session_model is None:
            return self.no_model_hint()
        return "Type a prompt below (i) and press enter: its lens, then each generated token's; or a run id (r)."

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
        """Which positions and layers are in sight, when not all are."""
        view = self.grid_view
        grid = view.grid
        parts = []
        if grid is not None and grid.positions > view.columns_shown:
            last = min(grid.positions, view.first_position + view.columns_shown)
            parts.append(f"positions {view.first_position}-{last - 1} of {grid.positions}")
        if grid is not None and grid.rows > view.layers_shown:
            top = grid.rows - 1 - view.first_line
            bottom = top - view.layers_shown + 1
            parts.append(f"{grid.row_label(bottom)} to {top - 1} of {grid.rows} rows")  # the top row is layer top - 1
        view.border_subtitle = " · ".join(parts)

    def _show_legend(self) -> None:
        grid = self.grid_view.grid
        has_target = grid is not None and grid.target_id is not None
        if self._legend_shown != (self.mode, has_target):  # a legend that may wrap lays the screen out again
            self._legend_shown = (self.mode, has_target)
            self.query_one("#lens-legend", Static).update(mode_legend(LENS_MODES[self.mode], has_target=has_target))

    def _show_status(self) -> None:
        parts = ["▶ playing" if self.playing else "paused", f"{SPEEDS[self.speed]} frames/s (+ -)"]
        if self.film.frames:
            parts.append(f"frame {self.frame + 1}/{len(self.film.frames)} (, .)")
        if self.computing:
            parts.append("computing… (esc stops)")
        self.query_one("#lens-status", Static).update(Text(" · ".join(parts), style="dim"), layout=False)

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
        self.set_focus(self.query_one(f"#{field}", Input))  # at once: keys typed right behind go into the field

    def action_leave_field(self) -> None:
        self.set_focus(self.grid_view)

    def action_save_picture(self) -> None:
        """The screen as an SVG picture, saved where the palette's Screenshot saves (SmolApp.deliver_screenshot)."""
        self.app.deliver_screenshot(time.strftime("smoltui-lens-%Y%m%d-%H%M%S.svg"))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        typing = self.is_current and isinstance(self.focused, Input)
        if action == "stop":
            return self.computing
        if action == "leave_field":
            return typing and not self.computing
        if typing and action not in TYPING_ACTIONS:
            return False
        if action == "load_bundled":
            return self.can_load_bundled()
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
