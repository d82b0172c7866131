"""Textual messages that carry engine results from thread workers to the screens (posted with post_message)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from smoltui.engine.runs import RunSummary
    from smoltui.engine.session import SessionEvent


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


class SessionUpdated(Message):
    """Something the model session said (engine.session: a job started, progressed, ended; the model changed),
    posted from its worker to whoever submitted the job (the app for ModelChanged)."""

    def __init__(self, event: SessionEvent) -> None:
        super().__init__()
        self.event = event


class RunsListed(Message):
    """A fresh list of the workspace's runs, newest first; only the latest list matters."""

    def __init__(self, runs: Sequence[RunSummary]) -> None:
        super().__init__()
        self.runs = runs

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunsListed)
