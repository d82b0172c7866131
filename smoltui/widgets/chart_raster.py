"""Chart rasterising: series reduced to screen columns (min, max, first, last) and drawn as braille strokes.

Plain numpy and no Textual. A layer's x unit may differ from its steps (runs aligned by fraction of their
length): it is bucketed in its own steps with the screen edges scaled into them, so nothing is divided per point.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np

POINT_MARKER = "•"
# Bit of each braille dot, indexed [dot row 0-3][dot column 0-1] (Unicode braille patterns, U+2800).
_BRAILLE_BITS = np.array([[0x01, 0x08], [0x02, 0x10], [0x04, 0x20], [0x40, 0x80]], dtype=np.uint32)


class Ink(NamedTuple):
    """How a run of plot cells is coloured: a series colour, faint for the raw series under its EMA."""

    colour: str
    faint: bool = False


class Layer(NamedTuple):
    """One thing to draw: a series' raw or smoothed values, as a line or as points, in one ink."""

    ink: Ink
    kind: Literal["line", "points"]
    steps: np.ndarray
    values: np.ndarray
    steps_per_x: float = 1.0  # 1 when x is the step; the run's length when runs are aligned by fraction

    def visible(self, x0: float, x1: float) -> tuple[np.ndarray, np.ndarray]:
        """Steps and values of the points with x0 <= x <= x1 (two binary searches, no copy)."""
        k = self.steps_per_x
        cut = slice(np.searchsorted(self.steps, x0 * k, side="left"), np.searchsorted(self.steps, x1 * k, side="right"))
        return self.steps[cut], self.values[cut]


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


# ---------------------------------------------------------------------------------------------- drawing


def rasterise(
    layers: list[Layer], xs: tuple[float, float], ys: tuple[float, float], size: tuple[int, int], log_y: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Draw `layers` (later ones on top) into a plot of `size` = (columns, rows) cells spanning x and y ranges
    `xs` and `ys` (log10 values when `log_y`). Values outside `ys` are drawn at the nearest edge.

    Returns the (rows, columns) character codes (space where nothing is drawn) and the index of the layer that
    owns each cell (-1 for none).
    """
    (x0, x1), (y0, y1), (plot_w, plot_h) = xs, ys, size
    dot_h = 4 * plot_h
    to_row = (dot_h - 1) / (y1 - y0)
    codes = np.full((plot_h, plot_w), 0x20, dtype=np.uint32)
    owner = np.full((plot_h, plot_w), -1, dtype=np.int32)
    for index, layer in enumerate(layers):
        k = layer.steps_per_x
        columns = 2 * plot_w if layer.kind == "line" else plot_w
        ext = column_extents(layer.steps, layer.values, x0 * k, x1 * k, columns, log_y)
        if ext is None:
            continue
        if log_y:
            ext = ColumnExtents(ext.columns, *(np.log10(a) for a in ext[1:]))
        ext = ColumnExtents(ext.columns, *((y1 - a) * to_row for a in ext[1:]))
        if layer.kind == "line":
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
    return codes, owner
