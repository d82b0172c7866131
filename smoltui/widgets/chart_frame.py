"""Chart frames: series laid out as rows of text runs (plot, ticks, axes with titles, legend) by plain functions.

Plain numpy and no Textual, so that the layout can be tested and benchmarked without an app. The frame also
says where its plot lies, so a cursor can be drawn over it and a mouse position read back as a step.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smoltui.widgets.chart_data import Series
from smoltui.widgets.chart_raster import POINT_MARKER, Ink, Layer, rasterise
from smoltui.widgets.chart_ticks import format_tick, format_value, log_ticks, nice_ticks

EMPTY_TEXT = "waiting for data…"
START_FRACTION = 0.02  # the start-up that `clip_start` may leave out of the y range: this share of the steps
STICKS_OUT = 0.25  # ...when its values stand above the rest by more than this share of the rest's range
CLIPPED_MARK = "▲"  # on the y axis, at the top edge, when values above the range are drawn clipped there


# ---------------------------------------------------------------------------------------------- view and ranges

# A frame is rows of (text, role) runs; a role is "axis", "label", "legend", "title", "empty", "blank" or an Ink.
Run = tuple[str, str | Ink]


@dataclass(frozen=True)
class ChartView:
    """What the chart shows of its data: the view reactives of LineChart, as a plain value."""

    smoothing: float = 0.0
    log_y: bool = False
    window: int | None = None
    compact: bool = False
    empty_text: str = EMPTY_TEXT
    clip_start: bool = True  # the y range may leave out the first steps' outliers (see `y_range`)
    from_zero: bool = False  # the y range reaches down (or up) to zero
    by_fraction: bool = False  # x is each run's fraction of its length (Series.max_steps), not the step
    y_title: str = ""  # what the values are and their unit, at the head of the legend


def steps_per_x(series: Series, view: ChartView) -> float:
    """How many of the series' steps one x unit spans: 1 by step; its run's length when aligned by fraction
    (its last step while that length is unknown)."""
    if not view.by_fraction:
        return 1.0
    return float(series.max_steps or series.steps[-1] or 1.0)


def _x_extent(series: Sequence[Series], view: ChartView) -> tuple[float, float, float] | None:
    """The first and last x of all the series, and the steps per x of the one that reaches furthest."""
    filled = [(s, steps_per_x(s, view)) for s in series if len(s)]
    if not filled:
        return None
    x1, k1 = max((float(s.steps[-1]) / k, k) for s, k in filled)
    return min(float(s.steps[0]) / k for s, k in filled), x1, k1


def x_range(series: Sequence[Series], view: ChartView) -> tuple[float, float] | None:
    """The x shown: all of it, or the last `view.window` steps of the run that reaches furthest."""
    extent = _x_extent(series, view)
    if extent is None:
        return None
    x0, x1, k1 = extent
    if view.window is not None:
        x0 = max(x0, x1 - view.window / k1)
    return (x0 - 0.5, x1 + 0.5) if x1 <= x0 else (x0, x1)


def chart_layers(series: Sequence[Series], view: ChartView) -> list[Layer]:
    """What to draw, bottom first: faint raw lines, then bright lines (EMA or raw), then points on top."""
    faint, bright, points = [], [], []
    for s in series:
        if not len(s):
            continue
        k = steps_per_x(s, view)
        if s.style == "points":
            points.append(Layer(Ink(s.colour), "points", s.steps, s.values, k))
        elif view.smoothing > 0:
            faint.append(Layer(Ink(s.colour, faint=True), "line", s.steps, s.values, k))
            bright.append(Layer(Ink(s.colour), "line", s.steps, s.smoothed(view.smoothing), k))
        else:
            bright.append(Layer(Ink(s.colour), "line", s.steps, s.values, k))
    return faint + bright + points


@dataclass(frozen=True)
class YRange:
    """The y values the plot spans (log10 of them on a log scale), and whether values above it are clipped."""

    lo: float
    hi: float
    clipped: bool = False


def y_range(layers: list[Layer], xs: tuple[float, float], start_until: float, view: ChartView) -> YRange | None:
    """The y range of the points shown, padded if flat, by these rules:

    - `clip_start`: the top is the highest value from x = `start_until` on (the end of the first 2% of the
      steps) when the values before stand above it by more than a quarter of the range: the outliers of the
      first steps (4.5 at step 1, a loss that is soon under 2.5) then do not squeeze the band where learning
      happens; they are drawn clipped at the top edge and the range says `clipped`;
    - `from_zero`: the range reaches zero, for rates that are read against it (throughput in a stall);
    - `log_y`: only positive values count, and the range is in log10 units.
    """
    lows, start_highs, rest_highs = [], [], []
    for layer in layers:
        steps, values = layer.visible(*xs)
        split = int(np.searchsorted(steps, start_until * layer.steps_per_x, side="left")) if view.clip_start else 0
        for part, highs in ((values[:split], start_highs), (values[split:], rest_highs)):
            if view.log_y:
                part = part[part > 0]
            if len(part):
                lows.append(part.min())
                highs.append(part.max())
    if not lows:
        return None
    scale = math.log10 if view.log_y else float
    lo, hi, clipped = scale(min(lows)), scale(max(start_highs + rest_highs)), False
    if start_highs and rest_highs:
        rest_hi = scale(max(rest_highs))
        if hi - rest_hi > STICKS_OUT * (rest_hi - lo):
            hi, clipped = rest_hi, True
    if view.from_zero and not view.log_y:
        lo, hi = min(lo, 0.0), max(hi, 0.0)
    if hi - lo <= 1e-12 * max(1.0, abs(lo)):
        pad = 0.1 if view.log_y else max(abs(lo) * 0.1, 1.0)
        lo, hi = lo - pad, hi + pad
    return YRange(lo, hi, clipped)


# ---------------------------------------------------------------------------------------------- legend


def _step_text(step: float) -> str:
    return str(int(step)) if float(step).is_integer() else format_value(step)


def _hidden_text(names: list[str], room: int) -> str:
    """What the legend had no room for, as fully as `room` allows: "+3 more: a, b, c", "+3 more: a, b, …",
    "+3 more: lon…", "+3 more" or "+3"."""
    count = f"+{len(names)}"
    prefix = f"{count} more: "
    for shown in range(len(names), 0, -1):
        text = prefix + ", ".join(names[:shown]) + ("" if shown == len(names) else ", …")
        if len(text) <= room:
            return text
    if room >= len(prefix) + 3:  # two letters of the first name and the ellipsis
        return (prefix + names[0])[: room - 1] + "…"
    return next((text for text in (f"{count} more", count) if len(text) <= room), "")


def _entry(s: Series, view: ChartView, at: float | None, at_step: float | None, with_raw: bool) -> list[Run]:
    """A series' marker, name and value: its latest, or with `at` its last at or before that x, as logged (and
    its smoothed value too, `with_raw`, when smoothing is on)."""
    marker = POINT_MARKER if s.style == "points" else "━"
    smoothed = view.smoothing > 0 and s.style == "line"
    index = len(s) - 1 if at is None else int(np.searchsorted(s.steps, at * steps_per_x(s, view), "right")) - 1
    head: list[Run] = [(f"{marker} ", Ink(s.colour)), (f"{s.name} ", "legend")]
    if index < 0:
        return [*head, ("–", "label")]
    text = format_value(s.values[index])  # the number the run's stats line shows too: the logged value
    if smoothed and with_raw:
        text += f" (ema {format_value(s.smoothed(view.smoothing)[index])})"
    if at is not None and s.steps[index] != at_step:
        text += f" @{_step_text(s.steps[index])}"
    return [*head, (text, "label")]


def _legend_entries(head: str, entries: list[list[Run]], names: list[str], room: int) -> tuple[list[Run], int, bool]:
    """`head`, then as many entries as fit in `room` and what did not fit: the runs, their width, and whether
    every entry fitted."""
    runs: list[Run] = [(head, "title")] if head else []
    used = len(head)
    for shown, entry in enumerate(entries):
        size = sum(len(text) for text, _ in entry) + (2 if used else 0)
        left_over = len(entries) - shown - 1
        if used + size + (len(f"  +{left_over} more") if left_over else 0) > room:
            text = _hidden_text(names[shown:], room - used - (2 if used else 0))
            if text:
                runs += [("  ", "blank"), (text, "label")] if used else [(text, "label")]
                used += len(text) + (2 if used else 0)
            return runs, used, False
        runs += [("  ", "blank"), *entry] if used else entry
        used += size
    return runs, used, True


def legend_row(series: Sequence[Series], view: ChartView, width: int, notes: str, at: float | None = None) -> list[Run]:
    """The legend: the y title, then each series' marker, name and latest value, then what did not fit, then
    `notes` (the view settings) on the right. Values are as logged (the run's stats line shows the same), with the
    smoothed value in parentheses when smoothing is on.

    With `at` (a cursor's x) it is the cursor's readout instead: the step there, then each series' value at its
    last point at or before it (and the point's own step after "@" where it differs, as it always does for runs
    aligned by fraction).

    Where room is short, the notes go first, then the smoothed values, then the series that do not fit.
    """
    filled = [s for s in series if len(s)]
    at_step = None
    if at is None:
        head = view.y_title
    elif view.by_fraction:
        head = f"{format_value(100 * at, 3)}% of run"
    else:
        found = [s.steps[i] for s in filled if (i := int(np.searchsorted(s.steps, at, "right")) - 1) >= 0]
        at_step = max(found) if found else None
        head = f"step {_step_text(at_step if found else math.floor(at))}"
    head = head[:width]
    names = [s.name for s in filled]
    for with_raw, with_notes in ((True, True), (True, False), (False, False)):  # every series first, then the rest
        entries = [_entry(s, view, at, at_step, with_raw) for s in filled]
        room = width - (len(notes) + 2 if notes and with_notes else 0)
        runs, used, everything = _legend_entries(head, entries, names, room)
        if everything:
            break
    if notes and len(notes) + 1 <= width - used:
        runs += [(" " * (width - used - len(notes)), "blank"), (notes, "label")]
    elif used < width:
        runs.append((" " * (width - used), "blank"))
    return runs


# ---------------------------------------------------------------------------------------------- frame layout


@dataclass(frozen=True)
class PlotArea:
    """Where a frame's plot lies (in cells) and the x range it spans: a column's x and back, for a cursor."""

    left: int
    top: int
    width: int
    height: int
    x0: float
    x1: float

    def x_of(self, column: int) -> float:
        """The x a column stands for: x0 in the first column, x1 in the last, evenly in between (each inside
        the span of steps that its column draws)."""
        column = min(max(column, 0), self.width - 1)
        return self.x0 + (self.x1 - self.x0) * column / max(1, self.width - 1)

    def column_of(self, x: float) -> int | None:
        """The plot column that draws x (None if x is outside the plot's range)."""
        if not self.x0 <= x <= self.x1:
            return None
        return min(self.width - 1, int((x - self.x0) / (self.x1 - self.x0) * self.width))


@dataclass(frozen=True)
class ChartFrame:
    """A laid-out chart: `rows` of runs, each exactly as wide as the chart; where its plot lies (None when
    nothing is drawn); the row a cursor's readout replaces and the row of the step axis line (None where there
    are none); the view notes of the legend (for that readout)."""

    rows: list[list[Run]]
    plot: PlotArea | None = None
    readout_row: int | None = None
    axis_row: int | None = None
    notes: str = ""


def _blank_frame(width: int, height: int, text: str) -> ChartFrame:
    rows: list[list[Run]] = [[(" " * width, "blank")] for _ in range(height)]
    if height and width:
        text = text[:width]
        left = (width - len(text)) // 2
        rows[height // 2] = [(" " * left, "blank"), (text, "empty"), (" " * (width - left - len(text)), "blank")]
    return ChartFrame(rows)


def _runs(codes: np.ndarray, owner: np.ndarray, inks: list[Ink]) -> list[Run]:
    """Split one plot row into runs of equal ink."""
    text = codes.astype("<u4").tobytes().decode("utf-32-le")
    cuts = [0, *(np.flatnonzero(owner[1:] != owner[:-1]) + 1).tolist(), len(owner)]
    return [(text[a:b], inks[owner[a]] if owner[a] >= 0 else "blank") for a, b in zip(cuts, cuts[1:], strict=False)]


def _view_notes(view: ChartView, clipped: bool) -> str:
    """The view settings the legend lists on its right."""
    notes = (
        (f"ema {view.smoothing:g}", view.smoothing > 0),
        ("log", view.log_y),
        (f"last {format_tick(view.window or 0, 1)} steps", view.window is not None),
        (f"{CLIPPED_MARK} start clipped", clipped),
    )
    return " · ".join(text for text, on in notes if on)


def _middle_tick(y0: float, y1: float) -> float:
    """The round value nearest the middle of [y0, y1], if one lies in its middle third (else the middle)."""
    middle = (y0 + y1) / 2
    ticks, _ = nice_ticks(y0, y1, 5)
    ticks = ticks[np.abs(ticks - middle) <= (y1 - y0) / 6]
    return float(ticks[np.argmin(np.abs(ticks - middle))]) if len(ticks) else middle


def _y_labels(ys: YRange, plot_h: int, view: ChartView, compact: bool) -> dict[int, str]:
    """Tick labels by plot row: round ticks, or the top, middle and bottom values of a compact chart."""
    y0, y1, dot_h = ys.lo, ys.hi, 4 * plot_h
    if compact:
        middle = (y0 + y1) / 2 if view.log_y else _middle_tick(y0, y1)
        ticks = np.array([y1, middle, y0] if plot_h >= 3 else [y1, y0][:plot_h])
        values, step = (10.0**ticks if view.log_y else ticks), 0.0
    else:
        values, step = (log_ticks if view.log_y else nice_ticks)(y0, y1, max(2, plot_h // 2))
        ticks = np.log10(values) if view.log_y else values
    rows = np.round((y1 - ticks) / (y1 - y0) * (dot_h - 1)).astype(int) // 4
    labels: dict[int, str] = {}
    for row, value in zip(rows.tolist(), values.tolist(), strict=True):
        text = format_value(value, 3) if compact or step == 0 else format_tick(value, step)
        labels.setdefault(row, text)
    return labels


def build_frame(series: Sequence[Series], width: int, height: int, view: ChartView) -> ChartFrame:
    """Lay out the whole chart as `height` rows of runs, each row exactly `width` cells wide.

    A full chart: the legend, the plot with its y ticks, the step axis and its labels. A compact one (or one
    under 5 rows): the plot with its top, middle and bottom values, and a row of step labels under it.
    """
    compact = view.compact or height < 5
    xs, extent = x_range(series, view), _x_extent(series, view)
    layers = chart_layers(series, view)
    ys = None
    if xs is not None and extent is not None:
        ys = y_range(layers, xs, extent[0] + START_FRACTION * (extent[1] - extent[0]), view)
    if xs is None or ys is None:
        text = view.empty_text if xs is None else "no positive values to show on a log scale"
        return _blank_frame(width, height, text)
    axis_rows = (1 if height >= 3 else 0) if compact else 2
    top = 0 if compact else 1
    plot_h = height - top - axis_rows
    labels = _y_labels(ys, plot_h, view, compact) if plot_h >= 1 else {}
    label_w = max(map(len, labels.values()), default=0)
    left = label_w + (1 if compact else 2)
    plot_w = width - left
    if plot_w < 2 or plot_h < 1:
        return _blank_frame(width, height, "")

    codes, owner = rasterise(layers, xs, (ys.lo, ys.hi), (plot_w, plot_h), view.log_y)
    inks = [layer.ink for layer in layers]
    notes = _view_notes(view, ys.clipped)
    rows: list[list[Run]] = [] if compact else [legend_row(series, view, width, notes)]
    for r in range(plot_h):
        label, clipped = labels.get(r, "").rjust(label_w), ys.clipped and r == 0
        if compact:
            gutter: list[Run] = [(label, "label"), (CLIPPED_MARK if clipped else " ", "axis")]
        else:
            gutter = [(label + " ", "label"), (CLIPPED_MARK if clipped else "┤" if r in labels else "│", "axis")]
        rows.append([*gutter, *_runs(codes[r], owner[r], inks)])
    rows += _x_axis(xs, left, plot_w, width, view, line=not compact)[-axis_rows:] if axis_rows else []
    plot = PlotArea(left, top, plot_w, plot_h, *xs)
    if compact:  # the readout replaces the step labels, if there are any
        return ChartFrame(rows, plot, readout_row=height - 1 if axis_rows else None, notes=notes)
    return ChartFrame(rows, plot, readout_row=0, axis_row=top + plot_h, notes=notes)


def _x_axis(
    xs: tuple[float, float], left: int, plot_w: int, width: int, view: ChartView, line: bool
) -> list[list[Run]]:
    """The axis line with a mark under each tick, then the tick labels centred under the marks and the axis
    title ("step", or "% of run" when runs are aligned by fraction): before the first label if it fits there,
    else after the last, else in place of the labels it covers."""
    x0, x1 = xs
    if view.by_fraction:
        ticks, step = nice_ticks(x0, x1, max(2, plot_w // 10))
        texts = [format_tick(100 * tick, 100 * step) + "%" for tick in ticks.tolist()]
    else:
        ticks, step = nice_ticks(x0, x1, max(2, plot_w // (10 if line else 8)), min_step=1.0)
        texts = [format_tick(tick, step) for tick in ticks.tolist()]
    axis = ["─"] * plot_w
    spans: list[tuple[int, str]] = []  # (first cell, text) of each label placed
    for tick, text in zip(ticks.tolist(), texts, strict=True):
        col = int(round((tick - x0) / (x1 - x0) * (2 * plot_w - 1))) // 2
        axis[col] = "┬"
        start = min(max(left + col - len(text) // 2, 0), width - len(text))
        if not spans or start > spans[-1][0] + len(spans[-1][1]):
            spans.append((start, text))
    title = ("% of run" if view.by_fraction else "step") if line and width > 12 else ""
    if title:
        first, last = (spans[0][0], spans[-1][0] + len(spans[-1][1])) if spans else (width, 0)
        at = 0 if len(title) < first or last + len(title) >= width else width - len(title)
        spans = [(start, text) for start, text in spans if start > at + len(title) or start + len(text) < at]
        spans.append((at, title))
    labels = [" "] * width
    for start, text in spans:
        labels[start : start + len(text)] = text
    return [[(" " * (left - 1) + "└" + "".join(axis), "axis")], [("".join(labels), "label")]]
