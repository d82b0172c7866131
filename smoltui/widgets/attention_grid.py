"""AttentionHeadGrid: every head of one layer as a small heatmap with its mean entropy, and the head average last;
a cursor picks one (the screen opens it in the full heatmap).

A prompt longer than a thumbnail is pooled: each thumbnail cell is the mean weight of the (query, key) block it
covers, counting only the cells the causal mask lets through, and a block with none of those stays blank.
Drawn with `render_line`, one Strip per line, remade when the layer, the cursor or the size changes.
"""

from __future__ import annotations

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widget import Widget

from smoltui.heatmap import MASKED, half_block_rows, heat_levels

THUMB = 40  # a thumbnail's most columns (and query rows: two per line)
TITLE_WIDTH = 9  # "h9 H 1.23": a thumbnail is at least this wide
GAP = 2  # columns between thumbnails
TITLE = Style(bold=True)
CURSOR = Style(bold=True, reverse=True)


def pooled_levels(matrix: np.ndarray, size: int) -> np.ndarray:
    """A (T, T) causal attention matrix as (S, S) colour levels, S = min(T, size), by the mean of each block."""
    count = matrix.shape[0]
    if count <= size:  # the first query's weight of 1 on itself would darken the rest (as in the heatmap)
        return heat_levels(matrix, high=float(matrix[1:].max()) if count > 1 else 1.0)
    bins = np.arange(count) * size // count  # (T,) the thumbnail row (and column) of each position
    summed = np.zeros((size, size))
    seen = np.zeros((size, size))
    np.add.at(summed, (bins[:, None], bins[None, :]), matrix)
    np.add.at(seen, (bins[:, None], bins[None, :]), np.tri(count))  # the cells below the diagonal
    mean = summed / np.maximum(seen, 1)  # (S, S)
    levels = heat_levels(mean, high=float(mean.max()), causal=False)
    levels[seen == 0] = MASKED
    return levels


class AttentionHeadGrid(Widget, can_focus=True):
    """Thumbnails of a layer's heads and their average (see module doc); `cursor` is a head, or `heads` for the
    average."""

    DEFAULT_CSS = """
    AttentionHeadGrid {
        height: 1fr;
        background: transparent;
    }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.heads = 0
        self.cursor = 0
        self._titles: list[str] = []
        self._matrices: list[np.ndarray] = []  # (T, T) each head's, then the average
        self._side = 0  # the thumbnails' side, in cells
        self._cells: list[list[list[Segment]]] = []  # per thumbnail: its lines of cells
        self._lines: list[Strip] = []

    def show(self, weights: np.ndarray, average: np.ndarray, entropy: np.ndarray, average_entropy: float) -> None:
        """Draw `weights` (heads, T, T) and `average` (T, T), titled with `entropy` (heads,) and the average's."""
        self.heads = weights.shape[0]
        self._matrices = [*weights, average]
        self._titles = [f"h{head} H {entropy[head]:.2f}" for head in range(self.heads)]
        self._titles.append(f"avg H {average_entropy:.2f}")
        self.cursor = min(self.cursor, self.heads)
        self._cells = []
        self._layout()

    def clear(self) -> None:
        self.heads, self._matrices, self._titles = 0, [], []
        self._layout()

    def _thumb_size(self) -> int:
        """The largest thumbnail side (cells) at which every thumbnail fits the widget (the smallest if none)."""
        count, tokens = len(self._matrices), self._matrices[0].shape[0]
        width, height = self.size
        for size in range(min(tokens, THUMB), 0, -1):
            cell = max(size, TITLE_WIDTH)
            columns = max(1, (width + GAP) // (cell + GAP))
            rows = -(-count // columns)
            if rows * (2 + -(-size // 2)) <= height:
                return size
        return min(tokens, 8)

    @property
    def thumb_width(self) -> int:
        return max(self._side, TITLE_WIDTH)

    @property
    def columns(self) -> int:
        """Thumbnails per row."""
        return max(1, (self.size.width + GAP) // (self.thumb_width + GAP))

    def move(self, step: int) -> None:
        """Move the cursor by `step` thumbnails (a row is `columns`), stopping at the first and the last."""
        self.cursor = max(0, min(self.cursor + step, self.heads))
        self._layout()

    def on_resize(self) -> None:
        self._layout()

    def _layout(self) -> None:
        """Lay the thumbnails out in rows, the cursor's row in view."""
        self._lines = []
        if self._matrices:
            size = self._thumb_size()
            if size != self._side or len(self._cells) != len(self._matrices):
                self._side = size
                self._cells = [half_block_rows(pooled_levels(matrix, size)) for matrix in self._matrices]
            width, columns = self.thumb_width, self.columns
            for start in range(0, len(self._cells), columns):
                row = range(start, min(start + columns, len(self._cells)))
                title: list[Segment] = []
                for index in row:
                    style = CURSOR if index == self.cursor else TITLE
                    title += [Segment(self._titles[index][:width].ljust(width), style), Segment(" " * GAP)]
                self._lines.append(Strip(title))
                for depth in range(max(len(self._cells[index]) for index in row)):
                    cells: list[Segment] = []
                    for index in row:
                        lines = self._cells[index]
                        drawn = lines[depth] if depth < len(lines) else []
                        cells += [*drawn, Segment(" " * (width - len(drawn) + GAP))]
                    self._lines.append(Strip(cells))
                self._lines.append(Strip.blank(0))
            per_row = len(self._lines) // ((len(self._cells) + columns - 1) // columns)
            cursor_end = (self.cursor // columns + 1) * per_row
            skip = -(-max(0, cursor_end - self.size.height) // per_row) * per_row  # whole rows
            self._lines = self._lines[skip:]
        self.refresh()

    def render_line(self, y: int) -> Strip:
        strip = self._lines[y] if y < len(self._lines) else Strip.blank(0)
        return strip.adjust_cell_length(self.size.width).apply_style(self.rich_style)
