"""Chart frames: series laid out as rows of text runs, with braille plot, ticks, axes and legend, by plain functions.

Plain numpy and no Textual, so that the layout can be tested and benchmarked without an app.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from smoltui.widgets.chart_data import Series

POINT_MARKER = "•"
EMPTY_TEXT = "waiting for data…"
# Bit of each braille dot, indexed [dot row 0-3][dot column 0-1] (Unicode braille patterns, U+2800).
_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint32)


# ---------------------------------------------------------------------------------------------- downsampling


class ColumnExtents(NamedTuple):
    """Per non-empty screen column: its index and the min, max, first and last value of its points."""

    columns: np.ndarray
    low: np.ndarray
    high: np.ndarray
    first: np.ndarray
    last: np.ndarray


def column_extents(
    steps: np.ndarray, values: np.ndarray, x0: float, x1: float, columns: int, positive_only: bool = False
) -> ColumnExtents | None:
    """Bucket the points with x0 <= step <= x1 into `columns` equal columns and reduce each to its extents.

    O(log n) to find the column edges and one vectorised pass over the visible points; spikes survive because
    each column keeps its min and max. `positive_only` drops values <= 0 (for a log scale). None if no point.
    """
    visible = slice(np.searchsorted(steps, x0, side="left"), np.searchsorted(steps, x1, side="right"))
    s, v = steps[visible], values[visible]
    if positive_only and len(v) and not (keep := v > 0).all():
        s, v = s[keep], v[keep]
    if not len(s):
        return None
    edges = x0 + (x1 - x0) / columns * np.arange(1, columns)
    starts = np.concatenate([[0], np.searchsorted(s, edges, side="left")])
    ends = np.append(starts[1:], len(s))
    filled = ends > starts
    starts, ends = starts[filled], ends[filled]
    return ColumnExtents(
        np.flatnonzero(filled),
        np.minimum.reduceat(v, starts),
        np.maximum.reduceat(v, starts),
        v[starts],
        v[ends - 1],
    )


def stroke_spans(ext: ColumnExtents) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The vertical stroke [top, bottom] of every column from the first filled one to the last.

    A filled column covers its own min..max; each column also reaches halfway to its neighbours along the
    straight line from one filled column's last value to the next one's first value, so strokes connect and
    gaps between sparse points are bridged.
    """
    cols = ext.columns
    c0 = int(cols[0])
    top = np.full(int(cols[-1]) - c0 + 1, np.inf)
    bottom = np.full_like(top, -np.inf)
    top[cols - c0] = np.minimum(ext.low, ext.high)
    bottom[cols - c0] = np.maximum(ext.low, ext.high)
    if len(cols) > 1:
        half = np.arange(c0, cols[-1]) + 0.5
        seg = np.searchsorted(cols, half) - 1
        frac = (half - cols[seg]) / (cols[seg + 1] - cols[seg])
        mid = ext.last[seg] + (ext.first[seg + 1] - ext.last[seg]) * frac
        for part in (slice(1, None), slice(None, -1)):
            top[part] = np.minimum(top[part], mid)
            bottom[part] = np.maximum(bottom[part], mid)
    return np.arange(c0, cols[-1] + 1), top, bottom


def braille_cells(dots: np.ndarray) -> np.ndarray:
    """Pack a (4*rows, 2*cols) boolean dot grid into (rows, cols) braille bit patterns (0 = no dot)."""
    rows, cols = dots.shape[0] // 4, dots.shape[1] // 2
    grid = dots.reshape(rows, 4, cols, 2)
    return (grid * _BRAILLE_BITS[None, :, None, :]).sum(axis=(1, 3))


# ---------------------------------------------------------------------------------------------- ticks


def nice_ticks(lo: float, hi: float, max_ticks: int, min_step: float = 0.0) -> tuple[np.ndarray, float]:
    """Round tick values (1, 2 or 5 times a power of ten) inside [lo, hi], at most about `max_ticks` of them."""
    span = hi - lo
    raw = max(span / max(1, max_ticks), min_step, 1e-300)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9) * step
    count = int(math.floor((hi - first) / step + 1e-9)) + 1
    return first + step * np.arange(max(count, 0)), step


def log_ticks(lo: float, hi: float, max_ticks: int) -> tuple[np.ndarray, float]:
    """Ticks for a log axis between 10**lo and 10**hi, as values; the step is 0 when ticks are not evenly spaced."""
    best: list[float] = []
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = [
            m * 10.0**e
            for e in range(math.floor(lo), math.ceil(hi) + 1)
            for m in mantissas
            if lo - 1e-9 <= e + math.log10(m) <= hi + 1e-9
        ]
        if len(ticks) > max_ticks:
            break
        best = ticks
    if len(best) >= 2:
        return np.array(best), 0.0
    if not best and math.ceil(lo) < math.floor(hi):  # many decades: every k-th power of ten
        every = math.ceil((math.floor(hi) - math.ceil(lo) + 1) / max_ticks)
        powers = 10.0 ** np.arange(math.ceil(lo), math.floor(hi) + 1, every)
        return powers, 0.0
    return nice_ticks(10.0**lo, 10.0**hi, max_ticks)


def _tidy_exponent(text: str, strip_zeros: bool = False) -> str:
    """ "1.50e-04" -> "1.50e-4" (or "1.5e-4" with `strip_zeros`)."""
    mantissa, _, exponent = text.partition("e")
    if strip_zeros and "." in mantissa:
        mantissa = mantissa.rstrip("0").rstrip(".")
    return f"{mantissa}e{int(exponent)}" if exponent else text


def _decimals(step: float) -> int:
    """How many decimals it takes to write multiples of `step`: 0.25 -> 2, 2.5 -> 1, 500 -> 0."""
    return next((d for d in range(12) if abs(round(step, d) - step) <= step * 1e-6), 12)


def format_tick(value: float, step: float) -> str:
    """A short label for a tick: 1500 -> "1500", 12500 -> "12.5k", 0.00015 -> "1.5e-4", precise to `step`."""
    if value == 0 or abs(value) < step * 1e-6:
        return "0"
    size = abs(value)
    if size >= 1e4:
        unit, suffix = next((u, x) for u, x in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")) if size >= u)
        return f"{value / unit:.{_decimals(step / unit)}f}{suffix}"
    if size < 1e-3:
        return _tidy_exponent(f"{value:.{_decimals(step / 10 ** math.floor(math.log10(size)))}e}")
    return f"{value:.{_decimals(step)}f}"


def format_value(value: float, digits: int = 4) -> str:
    """A value to about `digits` significant digits, for the legend and the compact range labels."""
    size = abs(value)
    if size >= 1e4:
        return format_tick(value, 10 ** (math.floor(math.log10(size)) - digits + 1))
    if 0 < size < 1e-3:
        return _tidy_exponent(f"{value:.{digits - 1}e}", strip_zeros=True)
    text = f"{value:.{max(0, digits - 1 - math.floor(math.log10(size or 1)))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


# ---------------------------------------------------------------------------------------------- frame layout


class Ink(NamedTuple):
    """How a run of plot cells is coloured: a series colour, faint for the raw series under its EMA."""

    colour: str
    faint: bool = False


# A frame is rows of (text, role) runs; a role is "axis", "label", "legend", "empty", "blank" or an Ink.
Run = tuple[str, str | Ink]


@dataclass(frozen=True)
class ChartView:
    """What the chart shows of its data: the view reactives of LineChart, as a plain value."""

    smoothing: float = 0.0
    log_y: bool = False
    window: int | None = None
    compact: bool = False
    empty_text: str = EMPTY_TEXT


def x_range(series: Sequence[Series], window: int | None) -> tuple[float, float] | None:
    """Steps shown: all of them, or the last `window` steps up to the newest step of any series."""
    filled = [s for s in series if len(s)]
    if not filled:
        return None
    x0, x1 = min(float(s.steps[0]) for s in filled), max(float(s.steps[-1]) for s in filled)
    if window is not None:
        x0 = max(x0, x1 - window)
    return (x0 - 0.5, x1 + 0.5) if x1 <= x0 else (x0, x1)


def _layers(series: Sequence[Series], view: ChartView) -> list[tuple[Ink, str, np.ndarray, np.ndarray]]:
    """What to draw, bottom first: faint raw lines, then bright lines (EMA or raw), then points on top."""
    faint, bright, points = [], [], []
    for s in series:
        if not len(s):
            continue
        if s.style == "points":
            points.append((Ink(s.colour), "points", s.steps, s.values))
        elif view.smoothing > 0:
            faint.append((Ink(s.colour, faint=True), "line", s.steps, s.values))
            bright.append((Ink(s.colour), "line", s.steps, s.smoothed(view.smoothing)))
        else:
            bright.append((Ink(s.colour), "line", s.steps, s.values))
    return faint + bright + points


def _y_range(layers: list, x0: float, x1: float, log_y: bool) -> tuple[float, float] | None:
    """Min and max of the visible values (log10 of the positive ones on a log scale), padded if flat."""
    lows, highs = [], []
    for _, _, steps, values in layers:
        v = values[np.searchsorted(steps, x0, side="left") : np.searchsorted(steps, x1, side="right")]
        if log_y:
            v = v[v > 0]
        if len(v):
            lows.append(v.min())
            highs.append(v.max())
    if not lows:
        return None
    lo, hi = float(min(lows)), float(max(highs))
    if log_y:
        lo, hi = math.log10(lo), math.log10(hi)
    if hi - lo <= 1e-12 * max(1.0, abs(lo)):
        pad = 0.1 if log_y else max(abs(lo) * 0.1, 1.0)
        lo, hi = lo - pad, hi + pad
    return lo, hi


def _blank_frame(width: int, height: int, text: str) -> list[list[Run]]:
    rows: list[list[Run]] = [[(" " * width, "blank")] for _ in range(height)]
    if height and width:
        text = text[:width]
        left = (width - len(text)) // 2
        rows[height // 2] = [(" " * left, "blank"), (text, "empty"), (" " * (width - left - len(text)), "blank")]
    return rows


def _runs(codes: np.ndarray, owner: np.ndarray, inks: list[Ink]) -> list[Run]:
    """Split one plot row into runs of equal ink."""
    text = codes.astype("<u4").tobytes().decode("utf-32-le")
    cuts = [0, *(np.flatnonzero(owner[1:] != owner[:-1]) + 1).tolist(), len(owner)]
    return [(text[a:b], inks[owner[a]] if owner[a] >= 0 else "blank") for a, b in zip(cuts, cuts[1:], strict=False)]


def _legend(series: Sequence[Series], view: ChartView, width: int) -> list[Run]:
    """Colour marker, name and latest value of each series, then the view settings on the right."""
    info = " · ".join(
        text
        for text, on in (
            (f"ema {view.smoothing:g}", view.smoothing > 0),
            ("log", view.log_y),
            (f"last {format_tick(view.window or 0, 1)} steps", view.window is not None),
        )
        if on
    )
    room = width - (len(info) + 2 if info else 0)
    runs: list[Run] = []
    used = 0
    filled = [s for s in series if len(s)]
    for shown, s in enumerate(filled):
        more = ("  " if runs else "") + f"+{len(filled) - shown}"
        last = s.smoothed(view.smoothing)[-1] if view.smoothing > 0 and s.style == "line" else s.values[-1]
        marker = POINT_MARKER if s.style == "points" else "━"
        parts: list[Run] = [(f"{marker} ", Ink(s.colour)), (f"{s.name} ", "legend"), (format_value(last), "label")]
        size = sum(len(t) for t, _ in parts) + (2 if runs else 0)
        if used + size + (len(more) if shown < len(filled) - 1 else 0) > room:
            if used + len(more) <= room:
                runs.append((more, "label"))
                used += len(more)
            break
        runs += ([("  ", "blank")] if runs else []) + parts
        used += size
    if info and len(info) <= width - used:
        runs += [(" " * (width - used - len(info)), "blank"), (info, "label")]
    elif used < width:
        runs.append((" " * (width - used), "blank"))
    return runs


def build_frame(series: Sequence[Series], width: int, height: int, view: ChartView) -> list[list[Run]]:
    """Lay out the whole chart as `height` rows of runs, each row exactly `width` cells wide."""
    compact = view.compact or height < 5
    xs = x_range(series, view.window)
    layers = _layers(series, view)
    ys = None if xs is None else _y_range(layers, *xs, view.log_y)
    if xs is None or ys is None:
        text = view.empty_text if xs is None else "no positive values to show on a log scale"
        return _blank_frame(width, height, text)
    (x0, x1), (y0, y1) = xs, ys
    plot_h = height - (0 if compact else 3)
    dot_h = 4 * plot_h

    if compact:
        ticks, step = np.array([y1, y0][:plot_h]), (y1 - y0) / 100
        ticks_v = 10.0**ticks if view.log_y else ticks
    else:
        ticks_v, step = (log_ticks if view.log_y else nice_ticks)(y0, y1, max(2, plot_h // 2))
        ticks = np.log10(ticks_v) if view.log_y else ticks_v
    tick_rows = np.round((y1 - ticks) / (y1 - y0) * (dot_h - 1)).astype(int) // 4
    labels = {}
    for row, value in zip(tick_rows.tolist(), ticks_v.tolist(), strict=True):
        text = format_value(value, 3) if compact else format_tick(value, step) if step > 0 else format_value(value)
        labels.setdefault(row, text)
    label_w = max(map(len, labels.values()))
    left = label_w + (1 if compact else 2)
    plot_w = width - left
    if plot_w < 2 or plot_h < 1:
        return _blank_frame(width, height, "")

    codes = np.full((plot_h, plot_w), 0x20, dtype=np.uint32)
    owner = np.full((plot_h, plot_w), -1, dtype=np.int32)
    inks = []
    for index, (ink, kind, steps, values) in enumerate(layers):
        inks.append(ink)
        ext = column_extents(steps, values, x0, x1, 2 * plot_w if kind == "line" else plot_w, view.log_y)
        if ext is None:
            continue
        if view.log_y:
            ext = ColumnExtents(ext.columns, *(np.log10(a) for a in ext[1:]))
        to_row = (dot_h - 1) / (y1 - y0)
        ext = ColumnExtents(ext.columns, *((y1 - a) * to_row for a in ext[1:]))
        if kind == "line":
            cols, top, bottom = stroke_spans(ext)
            top, bottom = np.clip(np.round(top), 0, dot_h - 1), np.clip(np.round(bottom), 0, dot_h - 1)
            dots = np.zeros((dot_h, 2 * plot_w), dtype=bool)
            rows = np.arange(dot_h)[:, None]
            dots[:, cols] = (rows >= top) & (rows <= bottom)
            cells = braille_cells(dots)
            hit = cells > 0
            codes[hit] = 0x2800 + cells[hit]
        else:
            hit = np.zeros((plot_h, plot_w), dtype=bool)
            for part in (ext.low, ext.high):
                hit[np.clip(np.round(part), 0, dot_h - 1).astype(int) // 4, ext.columns] = True
            codes[hit] = ord(POINT_MARKER)
        owner[hit] = index

    rows_out: list[list[Run]] = [] if compact else [_legend(series, view, width)]
    for r in range(plot_h):
        label = labels.get(r, "").rjust(label_w)
        axis = [] if compact else [("┤" if r in labels else "│", "axis")]
        rows_out.append([(label + " ", "label"), *axis, *_runs(codes[r], owner[r], inks)])
    if not compact:
        rows_out += _x_axis(x0, x1, left, plot_w, width)
    return rows_out


def _x_axis(x0: float, x1: float, left: int, plot_w: int, width: int) -> list[list[Run]]:
    """The axis line with a mark under each step tick, and the step labels centred under the marks."""
    ticks, step = nice_ticks(x0, x1, max(2, plot_w // 10), min_step=1.0)
    line = ["─"] * plot_w
    labels = [" "] * width
    free_from = 0
    for tick in ticks.tolist():
        col = int(round((tick - x0) / (x1 - x0) * (2 * plot_w - 1))) // 2
        line[col] = "┬"
        text = format_tick(tick, step)
        start = min(max(left + col - len(text) // 2, 0), width - len(text))
        if start >= free_from:
            labels[start : start + len(text)] = text
            free_from = start + len(text) + 1
    return [
        [(" " * (left - 1) + "└" + "".join(line), "axis")],
        [("".join(labels), "label")],
    ]
