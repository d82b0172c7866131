"""LineChart: the Textual widget of live braille line charts of numeric series against training step.

It holds its series as chart_data.Series and draws the frame that chart_frame lays out; all it adds is colours,
the view reactives and turning that frame into strips.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.color import Color
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

from smoltui.widgets.chart_data import Series, SeriesStyle
from smoltui.widgets.chart_frame import EMPTY_TEXT, ChartView, Ink, build_frame

# Mid-tone colours that read on dark and light backgrounds alike; a series keeps the colour it was first given.
PALETTE = ("#4c9be8", "#f28e2b", "#3fb37f", "#e5484d", "#a578e8", "#14b8c4", "#d4a017", "#e46fb0")


class LineChart(Widget):
    """Live line chart of series against training step: braille plot, y and step axes, one-line legend.

    Data goes in with `append` (only new points), `set_series` or `clear`; the view follows the reactives
    `smoothing`, `log_y`, `window` and `compact`. The frame is built once per change of data, size, view or
    theme and served line by line from a cache.
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
    }
    LineChart.-compact {
        height: 4;
        min-height: 1;
    }
    """

    COMPONENT_CLASSES = {"line-chart--axis", "line-chart--label", "line-chart--legend", "line-chart--empty"}

    smoothing: reactive[float] = reactive(0.0)
    """EMA weight in [0, 0.999]: 0 draws the raw series; above 0 the raw series is faint under its debiased EMA."""
    log_y: reactive[bool] = reactive(False)
    """Logarithmic y axis; values <= 0 are left out while it is on."""
    window: reactive[int | None] = reactive(None)
    """Show only the last this many steps, up to the newest step (None: all steps)."""
    compact: reactive[bool] = reactive(False)
    """Sparkline look: no legend and no step axis, the y range only as two labels."""

    def __init__(
        self,
        *,
        smoothing: float = 0.0,
        log_y: bool = False,
        window: int | None = None,
        compact: bool = False,
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
        self.empty_text = empty_text
        self.set_reactive(LineChart.smoothing, self.validate_smoothing(smoothing))
        self.set_reactive(LineChart.log_y, log_y)
        self.set_reactive(LineChart.window, self.validate_window(window))
        self.set_reactive(LineChart.compact, compact)
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

    @property
    def view(self) -> ChartView:
        return ChartView(self.smoothing, self.log_y, self.window, self.compact, self.empty_text)

    # -- rendering

    def notify_style_update(self) -> None:
        self._style_version += 1  # a new theme or CSS: colours of the cached frame are stale
        super().notify_style_update()

    def render_line(self, y: int) -> Strip:
        key = (self.size, self._version, self.view, self._style_version, self.app.theme)
        if key != self._cache_key:
            self._cache = self.render_strips()
            self._cache_key = key
        return self._cache[y] if y < len(self._cache) else Strip.blank(self.size.width, self.rich_style)

    def render_strips(self) -> list[Strip]:
        """Build every line of the current frame (uncached)."""
        width, height = self.size
        base = self.rich_style
        background = Color.from_rich_color(base.bgcolor) if base.bgcolor else Color(0, 0, 0)
        styles: dict[object, Style] = {"blank": base}
        for role in ("axis", "label", "legend", "empty"):
            styles[role] = self.get_component_rich_style(f"line-chart--{role}")

        def style_of(role: str | Ink) -> Style:
            if role not in styles:
                colour = Color.parse(role.colour)
                styles[role] = base + Style(color=(colour.blend(background, 0.6) if role.faint else colour).rich_color)
            return styles[role]

        frame = build_frame(list(self._series.values()), width, height, self.view)
        return [
            Strip([Segment(text, style_of(role)) for text, role in row]).adjust_cell_length(width, base)
            for row in frame
        ]
