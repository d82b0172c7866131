"""The help screen (`?`): every key of every screen, read from the bindings themselves."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from smoltui.screens.base import TABS

if TYPE_CHECKING:
    from smoltui.app import SmolApp

# Where each mode's screen class lives; the train module is read only if this build has it.
SCREEN_CLASSES = {
    "home": ("smoltui.screens.home", "HomeScreen"),
    "model": ("smoltui.screens.model", "ModelScreen"),
    "train": ("smoltui.screens.train", "TrainScreen"),
    "runs": ("smoltui.screens.runs", "RunsScreen"),
}


def declared_bindings(cls: type, *, own: bool = False) -> list[Binding]:
    """The bindings `cls` and its base classes declare (only smoltui's classes when `own`), one per key."""
    by_key: dict[str, Binding] = {}
    for klass in reversed(cls.__mro__):
        if own and not klass.__module__.startswith("smoltui"):
            continue
        for binding in Binding.make_bindings(klass.__dict__.get("BINDINGS", [])):
            by_key[binding.key] = binding
    return list(by_key.values())


def key_sections(app: SmolApp) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(section title, [(key, what it does)]): the keys every screen has, then each screen's own."""
    palette = (app.get_key_display(Binding(app.COMMAND_PALETTE_BINDING, "")), "Command palette: every action by name")
    everywhere = [*declared_bindings(type(app)), *declared_bindings(Screen)]
    yield "Everywhere", [*_rows(app, everywhere), palette]
    for mode, title in TABS.items():
        if not app.mode_available(mode):
            continue
        module, name = SCREEN_CLASSES[mode]
        screen_class = getattr(importlib.import_module(module), name)
        rows = _rows(app, declared_bindings(screen_class, own=True))
        if rows:
            yield f"{title} screen", rows


def _rows(app: SmolApp, bindings: list[Binding]) -> list[tuple[str, str]]:
    rows: dict[str, str] = {}
    for binding in bindings:
        if binding.description and not binding.system:
            what = binding.tooltip or binding.description
            key = app.get_key_display(binding)
            rows[what] = f"{rows[what]} {key}" if what in rows else key  # keys that do the same share a line
    return [(key, what) for what, key in rows.items()]


class HelpScreen(ModalScreen[None]):
    """A panel over the current screen listing every key; escape, ? or q closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close", tooltip="Close this panel."),
        Binding("question_mark", "dismiss", "Close", key_display="?", show=False),
        Binding("q", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help-panel"):
            yield Label("Keys", id="help-title")
            with VerticalScroll(id="help-keys"):
                yield Static(self._table())
            yield Label("esc closes this panel · ctrl+p finds any action by name", id="help-hint")

    def _table(self) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(justify="right", style="bold", no_wrap=True)
        table.add_column()
        for index, (section, rows) in enumerate(key_sections(self.app)):  # type: ignore[arg-type]
            if index:
                table.add_row("", "")
            table.add_row("", Text(section, style="bold underline"))
            for key, what in rows:
                table.add_row(key, what)
        return table
