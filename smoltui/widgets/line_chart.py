"""LineChart: the Textual widget of live braille line charts of numeric series against training step.

It holds its series as chart_data.Series and draws the frame that chart_frame lays out; all it adds is colours,
the view reactives, a cursor that follows the mouse or the keys, and turning the frame into strips.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.color import Color
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from smoltui.widgets.chart_data import Series, SeriesStyle
from smoltui.widgets.chart_frame import EMPTY_TEXT, ChartFrame, ChartView, PlotArea, Run, build_frame, legend_row
from smoltui.widgets.chart_raster import Ink

# Mid-tone colours that read on dark and light backgrounds alike; a series keeps the colour it was first given.
PALETTE = ("#4c9be8", "#f28e2b", "#3fb37f", "#e5484d", "#a578e8", "#14b8c4", "#d4a017", "#e46fb0")


class LineChart(Widget):
    """Live line chart of series against training step: braille plot, y and step axes, one-line legend.

    Data goes in with `append` (only new points), `set_series` or `clear`; the view follows the reactives
    `smoothing`, `log_y`, `window`, `compact`, `clip_start`, `from_zero`, `by_fraction` and `y_title`. The frame
    is built once per change of data, size, view or theme and served line by line from a cache.

    A cursor (`cursor_x`) follows the mouse over the chart, or the keys once `crosshair` pins it: a vertical
    line in the plot and, in place of the legend (or of a compact chart's step labels), the step there and the
    value of every series. Moving it rebuilds no frame: its line is laid over the cached strips.
    """

    DEFAULT_CSS = """
    LineChart {
        width: 1fr;
        height: 1fr;
        min-height: 5;
        & > .line-chart--axis { color: $foreground-muted; }
        & > .line-chart--label { color: $foreground-muted; }
        & > .line-chart--legend { color: $foreground; }
        & > .line-chart--empty { color: $foreground-muted; text-style: italic; }
        & > .line-chart--title { color: $foreground; text-style: bold; }
        & > .line-chart--cursor { color: $foreground 60%; }
    }
    LineChart.-compact {
        height: 4;
        min-height: 1;
    }
    """

    COMPONENT_CLASSES = {
        "line-chart--axis",
        "line-chart--label",
        "line-chart--legend",
        "line-chart--empty",
        "line-chart--title",
        "line-chart--cursor",
    }
    ROLES = ("axis", "label", "legend", "empty", "title", "cursor")

    smoothing: reactive[float] = reactive(0.0)
    """EMA weight in [0, 0.999]: 0 draws the raw series; above 0 the raw series is faint under its debiased EMA."""
    log_y: reactive[bool] = reactive(False)
    """Logarithmic y axis; values <= 0 are left out while it is on."""
    window: reactive[int | None] = reactive(None)
    """Show only the last this many steps, up to the newest step (None: all steps)."""
    compact: reactive[bool] = reactive(False)
    """Sparkline look: no legend, step labels without an axis line, the y range as top, middle and bottom."""
    clip_start: reactive[bool] = reactive(True)
    """The y range leaves out the first 2% of steps when they stick out above the rest (drawn clipped, marked ▲)."""
    from_zero: reactive[bool] = reactive(False)
    """The y range reaches zero: for rates read against it, so a stall drops to the floor of a steady axis."""
    by_fraction: reactive[bool] = reactive(False)
    """x is each series' fraction of its run's length (`set_max_steps`), so runs of any length line up."""
    y_title: reactive[str] = reactive("")
    """What the values are, with their unit: the head of the legend."""
    crosshair: reactive[bool] = reactive(False)
    """The cursor is pinned: shown (from the newest step) until unpinned, moved by `move_cursor` and the mouse."""
    cursor_x: reactive[float | None] = reactive(None)
    """Where the cursor is, in x units (the step, or the fraction of a run); None when it is hidden."""

    def __init__(
        self,
        *,
        smoothing: float = 0.0,
        log_y: bool = False,
        window: int | None = None,
        compact: bool = False,
        clip_start: bool = True,
        from_zero: bool = False,
        y_title: str = "",
        empty_text: str = EMPTY_TEXT,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._series: dict[str, Series] = {}
        self._colours: dict[str, str] = {}  # outlives clear(), so a re-added series gets its old colour back
        self._palette_used = 0
        self._version = 0
        self._style_version = 0
        self._cache_key: tuple | None = None
        self._cache: list[Strip] = []
        self._frame = ChartFrame([])
        self._styles: dict[object, Style] = {}
        self._readout: tuple[tuple, Strip] | None = None  # (cache key and cursor x, readout strip)
        self.empty_text = empty_text
        self.set_reactive(LineChart.smoothing, self.validate_smoothing(smoothing))
        self.set_reactive(LineChart.log_y, log_y)
        self.set_reactive(LineChart.window, self.validate_window(window))
        self.set_reactive(LineChart.compact, compact)
        self.set_reactive(LineChart.clip_start, clip_start)
        self.set_reactive(LineChart.from_zero, from_zero)
        self.set_reactive(LineChart.y_title, y_title)
        self.set_class(compact, "-compact")

    # -- data

    @property
    def series_names(self) -> list[str]:
        return list(self._series)

    def series(self, name: str) -> Series:
        """The stored series called `name` (KeyError if there is none)."""
        return self._series[name]

    def add_series(self, name: str, colour: str | None = None, style: SeriesStyle = "line") -> str:
        """Declare a series (drawn as a "line" or as "points") and return its colour.

        Without `colour` it gets the next palette colour, or the one it had before under the same name. Pass
        a run's train-loss colour as the `colour` of its val loss to pair them.
        """
        if name in self._series:
            return self._series[name].colour
        if colour is None:
            colour = self._colours.get(name) or PALETTE[self._palette_used % len(PALETTE)]
            self._palette_used += name not in self._colours
        self._colours.setdefault(name, colour)
        self._series[name] = Series(name, colour, style)
        self._changed()
        return colour

    def append(self, name: str, steps: Iterable[float] | np.ndarray, values: Iterable[float] | np.ndarray) -> None:
        """Add new points to a series (creating it as a line if needed); NaN and inf are skipped."""
        self.add_series(name)
        if self._series[name].append(steps, values):
            self._changed()

    def set_series(self, name: str, steps: Iterable[float] | np.ndarray, values: Iterable[float] | np.ndarray) -> None:
        """Replace all the points of a series (creating it as a line if needed)."""
        self.add_series(name)
        self._series[name].clear()
        self._series[name].append(steps, values)
        self._changed()

    def set_max_steps(self, name: str, max_steps: float | None) -> None:
        """Say how long the run of series `name` is (its max_steps): the x unit when runs align by fraction."""
        series = self._series.get(name)
        if series is not None and series.max_steps != max_steps:
            series.max_steps = max_steps
            self._changed()

    def remove_series(self, name: str) -> None:
        if self._series.pop(name, None) is not None:
            self._changed()

    def clear(self) -> None:
        """Remove every series; names keep their colours should they come back."""
        self._series.clear()
        self._changed()

    def _changed(self) -> None:
        self._version += 1
        self.refresh()

    # -- view

    def validate_smoothing(self, value: float) -> float:
        value = min(max(float(value), 0.0), 0.999)
        return 0.0 if value < 1e-3 else value  # below that the EMA is indistinguishable from the raw series

    def validate_window(self, value: int | None) -> int | None:
        return None if value is None or value < 1 else int(value)

    def watch_compact(self, compact: bool) -> None:
        self.set_class(compact, "-compact")

    def watch_by_fraction(self) -> None:
        self.cursor_x = None  # its x was in the other unit; a pinned cursor starts again at the newest x

    def watch_crosshair(self, pinned: bool) -> None:
        if not pinned:
            self.cursor_x = None

    @property
    def view(self) -> ChartView:
        return ChartView(
            self.smoothing,
            self.log_y,
            self.window,
            self.compact,
            self.empty_text,
            self.clip_start,
            self.from_zero,
            self.by_fraction,
            self.y_title,
        )

    # -- cursor

    def cursor_at(self, plot: PlotArea) -> float | None:
        """Where the cursor stands in `plot`: its x kept inside the plot, the newest x while it is pinned
        without a place, or None when it is hidden."""
        if self.cursor_x is None:
            return plot.x1 if self.crosshair else None
        return min(max(self.cursor_x, plot.x0), plot.x1)

    def move_cursor(self, columns: int) -> None:
        """Move the cursor by `columns` plot columns, from the newest x if it has no place yet."""
        plot = self.current_frame().plot
        if plot is not None:
            here = self.cursor_at(plot)
            self.cursor_x = plot.x_of(plot.column_of(plot.x1 if here is None else here) + columns)

    def on_mouse_move(self, event: events.MouseMove) -> None:
        plot = self.current_frame().plot
        offset = event.get_content_offset(self)
        if plot is not None and offset is not None and offset.x >= plot.left:
            self.cursor_x = plot.x_of(offset.x - plot.left)
        elif not self.crosshair:
            self.cursor_x = None

    def on_leave(self, event: events.Leave) -> None:
        if not self.crosshair:
            self.cursor_x = None

    # -- rendering

    def notify_style_update(self) -> None:
        self._style_version += 1  # a new theme or CSS: colours of the cached frame are stale
        super().notify_style_update()

    def _key(self) -> tuple:
        return (self.size, self._version, self.view, self._style_version, self.app.theme)

    def current_frame(self) -> ChartFrame:
        """The frame on screen, built first if data, size, view or theme changed since (none before mounting)."""
        if not self.is_mounted:
            return self._frame
        key = self._key()
        if key != self._cache_key:
            self._cache = self.render_strips()
            self._cache_key = key
        return self._frame

    def render_line(self, y: int) -> Strip:
        frame = self.current_frame()
        strip = self._cache[y] if y < len(self._cache) else Strip.blank(self.size.width, self.rich_style)
        plot = frame.plot
        x = None if plot is None else self.cursor_at(plot)
        if x is None:
            return strip
        if y == frame.readout_row:
            return self._readout_strip(x)
        column = plot.left + plot.column_of(x)
        if plot.top <= y < plot.top + plot.height:
            return self._overlay(strip, column, "│", only_on_blank=True)
        if y == frame.axis_row:
            return self._overlay(strip, column, "┴")  # where the cursor line meets the step axis
        return strip

    def _overlay(self, strip: Strip, column: int, char: str, only_on_blank: bool = False) -> Strip:
        """`strip` with the cell at `column` replaced by `char` in the cursor's colour (data cells kept)."""
        before, cell, after = strip.divide([column, column + 1, strip.cell_length])
        if only_on_blank and cell.text != " ":
            return strip
        return Strip.join([before, Strip([Segment(char, self._styles["cursor"])], 1), after])

    def _readout_strip(self, x: float) -> Strip:
        key = (self._cache_key, x)
        if self._readout is None or self._readout[0] != key:
            view, frame = self.view, self._frame
            width = self.size.width
            self._readout = (key, self._strip(legend_row(list(self._series.values()), view, width, frame.notes, at=x)))
        return self._readout[1]

    def _strip(self, row: list[Run]) -> Strip:
        """One row of runs as a strip, in the styles of the last build (`render_strips`)."""
        return Strip([Segment(text, self._style_of(role)) for text, role in row])

    def _style_of(self, role: str | Ink) -> Style:
        if role not in self._styles:
            base = self._styles["blank"]
            background = Color.from_rich_color(base.bgcolor) if base.bgcolor else Color(0, 0, 0)
            colour = Color.parse(role.colour)
            self._styles[role] = base + Style(
                color=(colour.blend(background, 0.6) if role.faint else colour).rich_color
            )
        return self._styles[role]

    def render_strips(self) -> list[Strip]:
        """Build every line of the current frame (uncached)."""
        width, height = self.size
        self._styles = {"blank": self.rich_style}
        for role in self.ROLES:
            self._styles[role] = self.get_component_rich_style(f"line-chart--{role}")
        self._frame = build_frame(list(self._series.values()), width, height, self.view)
        return [self._strip(row) for row in self._frame.rows]
