"""Textual messages that carry engine results from thread workers to the screens (posted with post_message)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from smoltui.engine.models import LoadedModel, ModuleRow
    from smoltui.engine.runs import RunSummary


@dataclass(frozen=True)
class RunPulse:
    """The few numbers of the run the header line follows: the newest active run, or the one being watched."""

    run_id: str
    status: str
    step: int | None
    max_steps: int | None
    loss: float | None
    active_runs: tuple[str, ...] = ()  # every run still training, named when the app quits


class RunProgressShown(Message):
    """The run dashboard drew these numbers of its run: the header shows the same ones, not an older read."""

    def __init__(self, run_id: str, status: str, step: int, max_steps: int | None, loss: float | None) -> None:
        super().__init__()
        self.run_id, self.status, self.step, self.max_steps, self.loss = run_id, status, step, max_steps, loss

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunProgressShown)


class ModelLoadProgressed(Message):
    """A step of loading a model, as load_model's `progress` callback reports it; only the latest matters."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ModelLoadProgressed)


class ModelLoaded(Message):
    """A model finished loading, with what the worker found out about it off the event loop: its module table,
    the dotted name of its LM head and whether that head shares the token embedding's weight, and for a
    run:<id>[@step] source the run and the checkpoint step it loaded."""

    def __init__(
        self,
        loaded: LoadedModel,
        modules: Sequence[ModuleRow],
        *,
        lm_head: str,
        head_tied: bool,
        checkpoint: tuple[str, int] | None = None,  # (run id, step)
    ) -> None:
        super().__init__()
        self.loaded = loaded
        self.modules = modules
        self.lm_head = lm_head
        self.head_tied = head_tied
        self.checkpoint = checkpoint


class RunsListed(Message):
    """A fresh list of the workspace's runs, newest first; only the latest list matters."""

    def __init__(self, runs: Sequence[RunSummary]) -> None:
        super().__init__()
        self.runs = runs

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)
