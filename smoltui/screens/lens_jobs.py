"""What the Lens screen asks of the model session (the lens of a prompt while the model generates after it, the lens
across a run's checkpoints) and the frames the answers become.

A generation's frames share one grid, the newest: frame i shows its first `columns` positions (LensGrid.columns, a
view), so scrubbing back replays what was computed and keeps one copy. A checkpoint's frame holds its own grid.
Events arrive one per token as SessionUpdated and only change the frames; the screen draws at its play rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from textual.widgets import Input

from smoltui.engine.decode_events import PromptTruncated
from smoltui.engine.errors import UserError
from smoltui.engine.lens import LensGrown
from smoltui.engine.lens_checkpoints import CheckpointLens
from smoltui.engine.session import Job, JobCancelled, JobFailed, JobFinished, JobProgressed
from smoltui.messages import SessionUpdated
from smoltui.widgets.worker_errors import describe_error, report_error

if TYPE_CHECKING:
    from collections.abc import Callable

    from smoltui.engine.lens import LensGrid, TargetToken
    from smoltui.engine.session import JobContext
    from smoltui.screens.base import Workbench
    from smoltui.widgets.lens_grid import LensGridView

TOP_K = 10  # the side panel's top tokens
STATUS_FPS = 10  # how often the status line may count the frames coming in: never a repaint per token
DEFAULT_NEW_TOKENS = 16


@dataclass(frozen=True)
class LensFrame:
    """One step of the animation: a checkpoint's `grid`, or the first `columns` positions of the generated grid."""

    title: str
    columns: int = 0
    grid: LensGrid | None = None


class LensFilm:
    """The frames of the last computation, as they come in."""

    def __init__(self) -> None:
        self.frames: list[LensFrame] = []
        self.generated: LensGrid | None = None  # the newest grid of a generation
        self.kind = ""  # "generation" or "checkpoints"
        self.source = ""  # the run (checkpoints) whose frames these are
        self.note = ""  # a truncated prompt, said once

    def start(self, kind: str, source: str = "") -> None:
        self.frames, self.generated, self.kind, self.source, self.note = [], None, kind, source, ""

    def grid(self, index: int) -> LensGrid | None:
        if not 0 <= index < len(self.frames):
            return None
        frame = self.frames[index]
        if frame.grid is not None:
            return frame.grid
        return None if self.generated is None else self.generated.columns(0, frame.columns)

    def add(self, event: Any) -> int | None:
        """Take one event of a lens job; the index of the frame it added or changed, if any."""
        if isinstance(event, PromptTruncated):
            self.note = event.message
            return None
        if isinstance(event, LensGrown):
            self.generated = event.grid
            if event.token is None:
                self.frames = [LensFrame("the prompt", event.grid.positions)]
                return 0
            if event.token.index == 0:  # it completes the prompt's last column: the frame stays, now with its next
                self.frames[0] = LensFrame(f"the prompt → {event.token.text!r}", event.grid.positions)
                return 0
            self.frames.append(LensFrame(f"+{event.token.index} → {event.token.text!r}", event.grid.positions))
            return len(self.frames) - 1
        if isinstance(event, CheckpointLens):
            self.frames.append(LensFrame(f"checkpoint step {event.step:,}", grid=event.grid))
            return len(self.frames) - 1
        return None


def generation_work(prompt: str, new_tokens: int, target: int | None) -> Callable[[JobContext], None]:
    """The session job: the lens of `prompt`, then one column per generated token (greedy), as LensGrown events."""

    def work(context: JobContext) -> None:
        from smoltui.engine.lens import lens_while_generating, logit_lens

        loaded = context.require_model()
        if new_tokens == 0:
            grid = logit_lens(loaded.model, loaded.tokenizer, prompt, target=target, top_k=TOP_K)
            if grid.truncation is not None:
                context.emit(grid.truncation)
            context.emit(LensGrown(grid, None))
            return
        events = lens_while_generating(
            loaded.model, loaded.tokenizer, prompt, max_new_tokens=new_tokens, target=target, top_k=TOP_K,
            should_stop=context.cancelled,
        )  # fmt: skip
        for event in events:
            context.emit(event)

    return work


def checkpoints_work(run: str, prompt: str, target: str | None, workspace, device: str) -> Callable[[JobContext], None]:
    """The session job: the lens of `prompt` at each checkpoint of `run`, oldest first (cached on disk)."""

    def work(context: JobContext) -> None:
        from smoltui.engine.lens_checkpoints import checkpoint_lenses

        lenses = checkpoint_lenses(
            run, prompt, target=target, top_k=TOP_K, workspace=workspace, device=device,
            should_stop=context.cancelled, progress=context.emit,
        )  # fmt: skip
        for lens in lenses:
            context.emit(lens)

    return work


class LensJobs:
    """The Lens screen's jobs and their events (a part of LensScreen, kept apart for its size)."""

    # What LensScreen provides (see lens.py): its reactives, the app, and _say, _show, _show_grid, _show_status;
    # _load_job, load_event and no_model_hint are BundledModelOffer's.
    frame: int
    playing: bool
    computing: bool
    smol: Workbench
    grid_view: LensGridView
    _load_job: Job | None

    def _init_jobs(self) -> None:
        self.film = LensFilm()
        self._job: Job | None = None
        self._stop_requested = False
        self._frames_counted = True  # whether the status line's count of frames is up to date

    # -- computing -------------------------------------------------------------------------------------------

    def action_compute(self) -> None:
        """The lens of the prompt on the session's model, growing with each generated token."""
        loaded = self.smol.session_model
        if loaded is None:
            self._say(self.no_model_hint())
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
        self.grid_view.focus()  # the keys play, step and point at once

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
            self.load_event(event)
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
        self._show()
