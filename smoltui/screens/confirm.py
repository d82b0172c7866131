"""A question before something that cannot be undone: `y` does it, `n` or escape keeps things as they are."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class ConfirmScreen(ModalScreen[bool]):
    """Dismissed with True for yes; the no button has the focus, so a stray Enter changes nothing."""

    DEFAULT_CSS = """
    ConfirmScreen {
        align: center middle;
        #confirm-panel { width: 64; max-width: 90%; height: auto; border: thick $error; background: $surface;
                         padding: 1 2; }
        #confirm-title { text-style: bold; margin-bottom: 1; }
        #confirm-detail { color: $text-muted; }
        #confirm-buttons { height: auto; margin-top: 1; align-horizontal: right; }
        #confirm-buttons Button { margin-left: 2; }
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, detail: str, *, yes: str, no: str) -> None:
        super().__init__()
        self.question, self.detail, self.yes, self.no = question, detail, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-panel"):
            yield Static(self.question, id="confirm-title")
            yield Static(self.detail, id="confirm-detail")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes} (y)", variant="error", id="confirm-yes")
                yield Button(f"{self.no} (n)", variant="primary", id="confirm-no")

    def on_mount(self) -> None:
        self.query_one("#confirm-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "confirm-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConfirmDelete(ConfirmScreen):
    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"Delete run {run_id}?", "Its metrics, samples, checkpoints and log go for good.", yes="Delete", no="Keep"
        )


class ConfirmStop(ConfirmScreen):
    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"Stop run {run_id}?",
            f"The trainer saves a checkpoint and exits; `smoltui train --resume {run_id}` continues it.",
            yes="Stop run",
            no="Keep running",
        )
