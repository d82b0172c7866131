"""The help screen (`?`): every key of every screen, read from the bindings themselves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Label, Static

from smoltui.screens import SCREENS


def declared_bindings(cls: type, *, own: bool = False) -> list[Binding]:
    """The bindings `cls` and its base classes declare (only smoltui's classes when `own`), one per key and action.

    Two bindings on one key for different actions (p pauses a running run and resumes a paused one) are both
    kept: which one acts depends on the state, and the keys list must show both.
    """
    by_key: dict[tuple[str, str], Binding] = {}
    for klass in reversed(cls.__mro__):
        if own and not klass.__module__.startswith("smoltui"):
            continue
        for binding in Binding.make_bindings(klass.__dict__.get("BINDINGS", [])):
            by_key[binding.key, binding.action] = binding
    return list(by_key.values())


def key_sections(app: App) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(section title, [(keys, what they do)]): the keys every screen has, then each screen's own."""
    palette = (app.get_key_display(Binding(app.COMMAND_PALETTE_BINDING, "")), "Command palette: every action by name")
    everywhere = [*declared_bindings(type(app)), *declared_bindings(Screen)]
    yield "Everywhere", [*_rows(app, everywhere), palette]
    for entry in SCREENS:
        rows = _rows(app, declared_bindings(entry.screen_class(), own=True))
        if rows:
            yield f"{entry.title} screen", rows


def _rows(app: App, bindings: list[Binding]) -> list[tuple[str, str]]:
    """One row per thing a key does; several keys that do the same thing share their row."""
    keys_of: dict[str, list[str]] = {}
    for binding in bindings:
        if binding.description and not binding.system:
            what = binding.tooltip or binding.description
            key = app.get_key_display(binding)
            if key not in keys_of.setdefault(what, []):
                keys_of[what].append(key)
    return [(" ".join(keys), what) for what, keys in keys_of.items()]


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
        for index, (section, rows) in enumerate(key_sections(self.app)):
            if index:
                table.add_row("", "")
            table.add_row("", Text(section, style="bold underline"))
            for key, what in rows:
                table.add_row(key, what)
        return table
