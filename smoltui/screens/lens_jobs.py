"""What the Lens screen asks of the model session (the lens of a prompt while the model generates after it, the lens
across a run's checkpoints) and the frames the answers become.

A generation's frames share one grid, the newest: frame i shows its first `columns` positions (LensGrid.columns, a
view), so scrubbing back replays what was computed and keeps one copy. A checkpoint's frame holds its own grid.
Events arrive one per token as SessionUpdated and only change the frames; the screen draws at its play rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from smoltui.engine.decode_events import PromptTruncated
from smoltui.engine.lens import LensGrown
from smoltui.engine.lens_checkpoints import CheckpointLens

if TYPE_CHECKING:
    from collections.abc import Callable

    from smoltui.engine.lens import LensGrid
    from smoltui.engine.session import JobContext

TOP_K = 10  # the side panel's top tokens


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
