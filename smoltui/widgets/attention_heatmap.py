"""AttentionHeatmap: one (T, T) attention matrix as half-block cells, queries down the left, keys along the bottom.

One widget draws every cell with `render_line` (no widget per cell): two query rows per line (smoltui.heatmap),
each line's Strip made once per matrix and kept until the matrix, the size or the scroll changes. A short prompt
is zoomed (each weight 2 or 4 cells wide and as many half-lines tall) while it still fits; a long one shows the
last keys that fit the width with their queries, and when the queries need more lines than there are, the lines
scroll (`scroll_lines`), starting at the bottom, where the queries see the whole prompt.
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from smoltui.formatting import visible
from smoltui.heatmap import half_block_rows, heat_levels

LABEL = 10  # the query labels' column: two tokens of four characters, a space between, one after
ZOOMS = (4, 2, 1)  # cells per weight, largest first: even, so a query's rows start on a line of their own
KEY_LINES = 3  # the key labels under the map, written downwards, at most this many characters
DIM = Style(dim=True)
TICK = Style(bold=True)


def token_label(text: str, width: int) -> str:
    """A token cut to `width` cells, its spaces drawn as · (a token is often a space and a word)."""
    shown = visible(text).replace(" ", "·")
    return shown[:width].ljust(width)


class AttentionHeatmap(Widget, can_focus=True):
    """Draws the matrix given to `show` (see module doc); `placeholder` when there is none."""

    DEFAULT_CSS = """
    AttentionHeatmap {
        height: 1fr;
        background: transparent;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.matrix: np.ndarray | None = None  # (T, T) query rows, key columns
        self.tokens: tuple[str, ...] = ()
        self.high = 1.0  # the weight drawn brightest (the largest past the first query), and any above it
        self.top = 0  # the first heatmap line in view
        self._follow_end = True  # a new matrix starts scrolled to its last queries
        self._cells: list[list[Segment]] = []  # one list of cells per heatmap line, over the shown keys
        self._strips: dict[int, Strip] = {}
        self._longest_key = 0  # the longest shown key's characters
        self.zoom = 1  # cells per weight, across and down (in half-lines)

    # -- what the screen sets --------------------------------------------------------------------------------

    def show(self, matrix: np.ndarray, tokens: tuple[str, ...]) -> None:
        """Draw `matrix` (T, T) over `tokens` (T); the scroll stays where it was (at the end if it was there)."""
        self.matrix, self.tokens = matrix, tokens
        # The first query sees only itself (a weight of 1 whatever the head does): the scale ends at the rest's top.
        self.high = float(matrix[1:].max()) if len(matrix) > 1 else 1.0
        self._redraw()

    def clear(self) -> None:
        self.matrix, self.tokens, self._cells = None, (), []
        self._follow_end = True
        self._strips.clear()
        self.refresh()

    def scroll_lines(self, step: int) -> None:
        """Move the queries in view by `step` lines (two queries each), stopping at the first and the last."""
        self.top = max(0, min(self.top + step, self.last_top))
        self._follow_end = self.top == self.last_top
        self._redraw()

    # -- geometry ------------------------------------------------------------------------------------------

    @property
    def first_key(self) -> int:
        """The first position drawn: the last keys that fit the width are shown, with their queries."""
        count = len(self.tokens)
        return max(0, count - max(1, (self.size.width - LABEL) // self.zoom))

    @property
    def key_lines(self) -> int:
        """Lines under the map: the positions' ticks, then the keys written downwards (fewer on a short widget)."""
        return 1 + max(0, min(KEY_LINES, self._longest_key, self.size.height - 4))

    @property
    def map_lines(self) -> int:
        """Heatmap lines that fit above the key labels."""
        return max(1, self.size.height - self.key_lines)

    @property
    def last_top(self) -> int:
        return max(0, len(self._cells) - self.map_lines)

    @property
    def shown_queries(self) -> tuple[int, int]:
        """The first query in view and the one after the last, as positions of the prompt."""
        first = self.first_key + 2 * self.top // self.zoom
        return first, min(len(self.tokens), self.first_key + -(-2 * (self.top + self.map_lines) // self.zoom))

    def _redraw(self) -> None:
        self._strips.clear()
        if self.matrix is not None:
            count = len(self.tokens)
            self._longest_key = max((len(visible(token)) for token in self.tokens), default=0)
            lines = max(1, self.size.height - 1 - min(KEY_LINES, self._longest_key))
            self.zoom = next(
                z for z in ZOOMS if z == 1 or (count * z <= self.size.width - LABEL and count * z <= 2 * lines)
            )
            first = self.first_key
            self._longest_key = max((len(visible(token)) for token in self.tokens[first:]), default=0)
            levels = heat_levels(self.matrix[first:, first:], high=self.high)  # (K, K)
            self._cells = half_block_rows(levels.repeat(self.zoom, axis=0).repeat(self.zoom, axis=1))
            self.top = self.last_top if self._follow_end else min(self.top, self.last_top)
            first, end = self.shown_queries
            count = len(self.tokens)
            scroll = " · ↑↓ scroll" if first > 0 and self.first_key != first or end < count else ""
            self.border_subtitle = f"queries {first}–{end - 1} of {count}{scroll}"
        self.refresh()

    def on_resize(self) -> None:
        self._redraw()

    # -- drawing -------------------------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        strip = self._strips.get(y)
        if strip is None:
            strip = self._strips[y] = self._line(y).apply_style(self.rich_style)
        return strip

    def _line(self, y: int) -> Strip:
        width = self.size.width
        if self.matrix is None:
            return Strip.blank(width)
        first = self.first_key
        if y < self.map_lines:
            line = self.top + y
            if line >= len(self._cells):
                return Strip.blank(width)
            upper = first + 2 * line // self.zoom
            if self.zoom == 1:  # two queries on the line
                names = token_label(self.tokens[upper], 4) + " "
                names += token_label(self.tokens[upper + 1], 4) if upper + 1 < len(self.tokens) else "    "
            else:  # a query over one or more lines, named on its first
                names = token_label(self.tokens[upper], LABEL - 1) if 2 * line % self.zoom == 0 else ""
            return Strip([Segment(names.ljust(LABEL), DIM), *self._cells[line]]).adjust_cell_length(width)
        depth = y - self.map_lines - 1
        keys, zoom = self.tokens[first:], self.zoom
        if depth < 0:  # the positions' ticks: every tenth key's index starts at its column (every fifth zoomed)
            ticks = [" "] * (len(keys) * zoom)
            for index in range(len(keys)):
                position, column = first + index, index * zoom
                label = str(position)
                if position % (10 if zoom == 1 else 5) == 0 and all(
                    t == " " for t in ticks[column : column + len(label)]
                ):
                    for offset, digit in enumerate(label):
                        if column + offset < len(ticks):
                            ticks[column + offset] = digit
            return Strip([Segment("keys ↓".ljust(LABEL), DIM), Segment("".join(ticks), TICK)]).adjust_cell_length(width)
        chars = "".join(token_label(token, depth + 1)[depth].ljust(zoom) for token in keys)
        return Strip([Segment(" " * LABEL), Segment(chars, DIM)]).adjust_cell_length(width)
