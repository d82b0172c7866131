"""WeightHeatmap: a downsampled weight matrix in half-block cells (two matrix rows per line, ▀ with the upper row
as its colour and the lower as its background) and, on its last line, the legend of its colour scale.

The matrix comes already downsampled to the cells the widget asks for (`cells_wanted`, computed off the UI thread:
engine.weights.downsample); the widget only maps it to colours (smoltui.weight_look) and paints lines.
"""

from __future__ import annotations

import textwrap

import numpy as np
from rich.segment import Segment
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget

from smoltui.weight_look import heat_legend, heat_rows


class WeightHeatmap(Widget):
    """One matrix as half-block cells with its legend below; a placeholder sentence when there is none."""

    DEFAULT_CSS = """
    WeightHeatmap {
        height: 1fr;
        & > .weight-heatmap--placeholder { color: $foreground-muted; text-style: italic; }
    }
    """
    COMPONENT_CLASSES = {"weight-heatmap--placeholder"}

    class SizeChanged(Message):
        """The widget's size changed: the matrix it draws best (`cells_wanted`) is another one now."""

        def __init__(self, heatmap: WeightHeatmap) -> None:
            super().__init__()
            self.heatmap = heatmap

        @property
        def control(self) -> WeightHeatmap:
            return self.heatmap

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.placeholder = ""
        self.matrix: np.ndarray | None = None  # (R, C) block means, as shown
        self.mode = "abs"
        self.high = 0.0  # the top of the colour scale: the largest |block mean|
        self._lines: list[list[Segment]] = []
        self._legend: list[Segment] = []

    @property
    def cells_wanted(self) -> tuple[int, int]:
        """(rows, columns) of the matrix this widget draws best: two rows per line above the legend's line."""
        width, height = self.content_size
        return max(2 * (height - 1), 2), max(width, 1)

    def on_resize(self) -> None:
        self.post_message(self.SizeChanged(self))

    def show(self, matrix: np.ndarray | None, mode: str, placeholder: str = "") -> None:
        """Draw `matrix` (block means; "abs" or "signed" as computed), or `placeholder` when it is None."""
        self.matrix, self.mode, self.placeholder = matrix, mode, placeholder
        if matrix is None:
            self._lines, self._legend, self.high = [], [], 0.0
        else:
            self._lines, self.high = heat_rows(matrix, mode)
            self._legend = list(heat_legend(mode, self.high, self.content_size.width or 60).render(self.app.console))
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size
        base = self.rich_style
        if self.matrix is None:
            lines = textwrap.wrap(self.placeholder, max(width, 1))
            if y >= len(lines):
                return Strip.blank(width, base)
            style = base + self.get_component_rich_style("weight-heatmap--placeholder")
            return Strip([Segment(lines[y], style)]).adjust_cell_length(width, base)
        if y == min(len(self._lines), height - 1):
            return Strip(self._legend).apply_style(base).crop_extend(0, width, base)
        if y < len(self._lines):
            return Strip(self._lines[y]).crop_extend(0, width, base)
        return Strip.blank(width, base)
