"""One way for every screen and widget to report a thread worker that failed: a user's mistake in its own words,
a bug named as one, never a traceback on screen."""

from __future__ import annotations

from typing import ClassVar

from textual.dom import DOMNode
from textual.worker import Worker, WorkerState

from smoltui.engine.errors import UserError


def describe_error(error: BaseException) -> str:
    """One line for `error`: a UserError's sentence as it is, anything else named by its type."""
    return str(error) if isinstance(error, UserError) else f"unexpected {type(error).__name__}: {error}"


def report_error(node: DOMNode, error: BaseException, title: str | None = None) -> None:
    """Notify about `error`: a UserError's sentence as it is, anything else as a smoltui bug."""
    if isinstance(error, UserError):
        node.notify(describe_error(error), title=title or "", severity="error", timeout=10)
    else:
        node.notify(describe_error(error), title="smoltui bug", severity="error", timeout=15)


class ReportsWorkerErrors:
    """Mixin for a screen or widget: each failed worker calls `worker_failed`, which reports it.

    Override `worker_failed` to also show the failure in place (a form field, a status line), then call super.
    WORKER_TITLES gives a notification title per worker group.
    """

    WORKER_TITLES: ClassVar[dict[str, str]] = {}

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR and event.worker.error is not None:
            self.worker_failed(event.worker.group, event.worker.error)

    def worker_failed(self, group: str, error: BaseException) -> None:
        report_error(self, error, self.WORKER_TITLES.get(group))  # type: ignore[arg-type]
