"""LensGridView: a logit-lens grid drawn line by line, layers as rows (the final layer on top, the embeddings at the
bottom), positions as columns, each cell its top token on the colour of the current mode's value.

One widget draws every cell (`render_line` builds a Strip of segments per line), so a cursor key repaints lines,
never lays out widgets. The "next" tokens run along the top, the input tokens along the bottom; the grid scrolls
both ways to keep the cursor in sight. A click on a cell posts `CellClicked`.
"""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from smoltui.formatting import fit_text, visible
from smoltui.lens_look import CELL, LABEL, LENS_MODES, MARK, LensMode

if TYPE_CHECKING:
    from smoltui.engine.lens import LensGrid

LABEL_STYLE = Style(bold=True)
AXIS_STYLE = Style(dim=True)
CURSOR_STYLE = Style(reverse=True, bold=True)


class LensGridView(Widget, can_focus=True):
    """The grid of the screen's current frame (see module doc); `cursor` is (row, position), row 0 the embeddings."""

    DEFAULT_CSS = """
    LensGridView {
        height: 1fr;
        & > .lens-grid--placeholder { color: $foreground-muted; text-style: italic; }
    }
    """
    COMPONENT_CLASSES = {"lens-grid--placeholder"}

    class CellClicked(Message):
        def __init__(self, view: LensGridView, row: int, position: int) -> None:
            super().__init__()
            self.view, self.row, self.position = view, row, position

        @property
        def control(self) -> LensGridView:
            return self.view

    def __init__(self, placeholder: str = "", *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._placeholder = placeholder
        self.grid: LensGrid | None = None
        self.mode: LensMode = LENS_MODES[0]
        self.cursor = (0, 0)
        self.first_position = 0  # the leftmost position drawn
        self.first_line = 0  # the topmost layer drawn, counted from the final layer down
        self._bands = None  # (layers + 1, T) band index of every cell in the current mode, None without values
        self._styles: dict[tuple[str, bool], Style] = {}
        self._lines: dict[int, Strip] = {}

    # -- what the screen sets -----------------------------------------------------------------------------------

    @property
    def placeholder(self) -> str:
        return self._placeholder

    @placeholder.setter
    def placeholder(self, text: str) -> None:
        self._placeholder = text
        self._changed()

    def show(self, grid: LensGrid | None, mode: LensMode | None = None, cursor: tuple[int, int] | None = None) -> None:
        """Draw `grid` in `mode` with the cursor on (row, position), clamped to the grid."""
        self.grid = grid
        self.mode = mode or self.mode
        values = None if grid is None else self.mode.values(grid)
        self._bands = None if values is None else self.mode.bands(values)
        self.place_cursor(*(cursor or self.cursor))

    def place_cursor(self, row: int, position: int) -> None:
        grid = self.grid
        if grid is not None:
            row = min(max(row, 0), grid.rows - 1)
            position = min(max(position, 0), max(grid.positions - 1, 0))
        self.cursor = (row, position)
        self._scroll_to_cursor()
        self._changed()

    # -- geometry -----------------------------------------------------------------------------------------------

    @property
    def columns_shown(self) -> int:
        """How many positions fit across."""
        return max(1, (self.content_size.width - LABEL) // CELL)

    @property
    def layers_shown(self) -> int:
        """How many layer rows fit between the "next" line and the input line."""
        rows = 0 if self.grid is None else self.grid.rows
        return max(1, min(rows, self.content_size.height - 2))

    def _scroll_to_cursor(self) -> None:
        if self.grid is None:
            return
        row, position = self.cursor
        across, down = self.columns_shown, self.layers_shown
        self.first_position = min(max(self.first_position, position - across + 1), position)
        self.first_position = max(0, min(self.first_position, self.grid.positions - across))
        line = self.grid.rows - 1 - row
        self.first_line = min(max(self.first_line, line - down + 1), line)
        self.first_line = max(0, min(self.first_line, self.grid.rows - down))

    def cell_at(self, x: int, y: int) -> tuple[int, int] | None:
        """The (row, position) drawn at content offset (x, y), or None (a label, an axis, nothing)."""
        if self.grid is None or x < LABEL or not 1 <= y <= self.layers_shown:
            return None
        position = self.first_position + (x - LABEL) // CELL
        line = self.first_line + y - 1
        if position >= self.grid.positions or line >= self.grid.rows:
            return None
        return self.grid.rows - 1 - line, position

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        cell = None if offset is None else self.cell_at(offset.x, offset.y)
        if cell is not None:
            event.stop()
            self.post_message(self.CellClicked(self, *cell))

    def on_resize(self) -> None:
        self._scroll_to_cursor()
        self._changed()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._lines.clear()

    # -- drawing ------------------------------------------------------------------------------------------------

    def _changed(self) -> None:
        self._lines.clear()
        self.refresh()

    def _cell_style(self, colour: str, marked: bool) -> Style:
        style = self._styles.get((colour, marked))
        if style is None:
            style = Style(color="#000000", bgcolor=colour, bold=marked)
            self._styles[colour, marked] = style
        return style

    def render_line(self, y: int) -> Strip:
        strip = self._lines.get(y)
        if strip is None:
            strip = self._render(y)
            self._lines[y] = strip
        return strip

    def _render(self, y: int) -> Strip:
        width = self.content_size.width
        base = self.rich_style
        grid = self.grid
        if grid is None or grid.positions == 0:
            lines = textwrap.wrap(self._placeholder, max(width, 1))
            if y >= len(lines):
                return Strip.blank(width, base)
            style = base + self.get_component_rich_style("lens-grid--placeholder")
            return Strip([Segment(lines[y], style)]).adjust_cell_length(width, base)
        shown = range(self.first_position, min(grid.positions, self.first_position + self.columns_shown))
        layers = self.layers_shown
        if y == 0:
            segments = self._axis("next", grid.next_ids, shown, base)
        elif y <= layers:
            segments = self._layer(grid, grid.rows - 1 - (self.first_line + y - 1), shown, base)
        elif y == layers + 1:
            segments = self._axis("input", grid.token_ids, shown, base)
        else:
            return Strip.blank(width, base)
        return Strip(segments).adjust_cell_length(width, base)

    def _axis(self, label: str, ids, shown: range, base: Style) -> list[Segment]:
        grid = self.grid
        segments = [Segment(label.ljust(LABEL), base + LABEL_STYLE)]
        for position in shown:
            token = int(ids[position])
            text = fit_text(visible(grid.text(token)), CELL - 2) if token >= 0 else "?"
            style = base + (CURSOR_STYLE if position == self.cursor[1] and label == "input" else AXIS_STYLE)
            segments += [Segment(text.ljust(CELL - 1), style), Segment(" ", base)]
        return segments

    def _layer(self, grid: LensGrid, row: int, shown: range, base: Style) -> list[Segment]:
        cursor_row, cursor_position = self.cursor
        label_style = base + (CURSOR_STYLE if row == cursor_row else LABEL_STYLE)
        segments = [Segment(grid.row_label(row).ljust(LABEL - 1), label_style), Segment(" ", base)]
        hits = grid.top_ids[row, :, 0] == grid.next_ids  # (T,)
        colours = self.mode.colours
        for position in shown:
            marked = bool(hits[position])
            text = fit_text(visible(grid.text(grid.top_ids[row, position, 0])), CELL - 2)
            text = text.ljust(CELL - 2) + (MARK if marked else " ")
            if self._bands is None:
                style = base + Style(bold=marked)
            else:
                style = self._cell_style(colours[int(self._bands[row, position])], marked)
            if (row, position) == (cursor_row, cursor_position):
                style = style + CURSOR_STYLE
            segments += [Segment(text, style), Segment(" ", base)]
        return segments
