"""How the weights viewer draws a tensor: its heatmap in half-block cells (the attention heatmap's, smoltui.heatmap,
for |w|; a diverging scale of its own for signed w), the scales' legends, the histogram in block characters, the
top singular values as bars, and the table's numbers. Plain rich and numpy, neither torch nor textual.

Both scales are square-root scales (signed: √|w| with w's sign), so the typical cells of a trained matrix, whose
block means differ little, still differ in colour beside a few outlying rows or columns.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from smoltui.heatmap import MASKED, PALETTE, half_block_rows, heat_levels, mix_colour

# The signed scale, for a dark terminal: blue for negative, dark grey at zero, red for positive.
SIGNED_STOPS = ((-1.0, (110, 170, 255)), (-0.5, (40, 90, 190)), (0.0, (38, 38, 38)), (0.5, (190, 60, 40)),
                (1.0, (255, 140, 90)))  # fmt: skip
SIGNED_LEVELS = 65  # odd, so that zero has a level of its own (the middle one)
BAR_EIGHTHS = " ▏▎▍▌▋▊▉█"  # horizontal bars, an eighth of a cell at a time
COLUMN_EIGHTHS = " ▁▂▃▄▅▆▇█"  # vertical bars
HISTOGRAM_STYLE = "#5fafd7"
ZERO_STYLE = "bold #ffaf5f"

SIGNED_PALETTE = tuple(mix_colour(SIGNED_STOPS, 2 * level / (SIGNED_LEVELS - 1) - 1) for level in range(SIGNED_LEVELS))


def signed_levels(matrix: np.ndarray, high: float) -> np.ndarray:
    """(R, C) signed values in -high..high as levels 0..SIGNED_LEVELS-1 (zero the middle) on the signed √ scale."""
    share = np.clip(matrix / max(high, 1e-30), -1.0, 1.0)  # (R, C)
    shaded = np.sign(share) * np.sqrt(np.abs(share))  # (R, C)
    return np.rint((shaded + 1) / 2 * (SIGNED_LEVELS - 1)).astype(np.int16)


@lru_cache(maxsize=SIGNED_LEVELS * (SIGNED_LEVELS + 1))
def _signed_cell(upper: int, lower: int) -> Segment:
    if lower == MASKED:
        return Segment("▀", Style(color=SIGNED_PALETTE[upper]))
    return Segment("▀", Style(color=SIGNED_PALETTE[upper], bgcolor=SIGNED_PALETTE[lower]))


def heat_rows(matrix: np.ndarray, mode: str) -> tuple[list[list[Segment]], float]:
    """A downsampled (R, C) matrix as ceil(R / 2) lines of C half-block cells, and the scale's top (the largest
    |value|): mode "abs" on the attention heatmap's scale from 0, "signed" on the diverging one around 0."""
    high = float(np.max(np.abs(matrix))) if matrix.size else 0.0
    if mode == "abs":
        return half_block_rows(heat_levels(matrix, high=high, causal=False)), high
    levels = signed_levels(matrix, high).tolist()
    if len(levels) % 2:
        levels.append([MASKED] * matrix.shape[1])
    lines = [[_signed_cell(upper, lower) for upper, lower in zip(levels[i], levels[i + 1], strict=True)]
             for i in range(0, len(levels), 2)]  # fmt: skip
    return lines, high


def heat_legend(mode: str, high: float, width: int = 60) -> Text:
    """The scale of a weights heatmap in at most `width` cells: what a cell is and the values its colours stand
    for (fewer colour swatches, then shorter words, where the room is short)."""
    low = "0" if mode == "abs" else short_number(-high)
    palette = PALETTE if mode == "abs" else SIGNED_PALETTE
    what = "|w|" if mode == "abs" else "w"
    wordings = (
        (f"mean {what} per cell: {low} ", f" {short_number(high)} (√ scale{'' if mode == 'abs' else ', 0 grey'})"),
        (f"{what}: {low} ", f" {short_number(high)} √"),
    )
    for prefix, suffix in wordings:
        swatches = min(16, width - len(prefix) - len(suffix))
        if swatches >= 6:
            break
    swatches = max(swatches, 2)
    legend = Text(prefix)
    for index in range(swatches):
        legend.append(" ", Style(bgcolor=palette[round(index / (swatches - 1) * (len(palette) - 1))]))
    legend.append(suffix)
    return legend


def fit_bins(counts: np.ndarray, width: int) -> np.ndarray:
    """A histogram's height on each of `width` columns: the mean count of the bins a column covers (neighbouring
    bins averaged when there are more bins than columns, so a column of three bins is not taller than one of
    two; a bin drawn over several columns when there are fewer)."""
    bins = len(counts)
    if width >= bins:
        return np.asarray(counts, dtype=np.float64)[np.arange(width) * bins // width]
    starts = np.arange(width) * bins // width
    sizes = np.diff(np.append(starts, bins))
    return np.add.reduceat(np.asarray(counts, dtype=np.float64), starts) / sizes


def histogram_text(edges: np.ndarray, counts: np.ndarray, width: int, height: int) -> Text:
    """A histogram as `height` lines of vertical bars (eighths of a cell) across `width` columns, with the
    range under it; the column that holds zero is drawn in another colour."""
    width, height = max(width, 8), max(height, 1)
    columns = fit_bins(np.asarray(counts, dtype=np.float64), width)
    top = float(columns.max()) if columns.size else 0.0
    eighths = np.zeros(width, dtype=np.int64) if top == 0 else np.ceil(columns / top * height * 8).astype(np.int64)
    low, high = float(edges[0]), float(edges[-1])
    zero_column = int((0.0 - low) / (high - low) * width) if low <= 0.0 < high else None
    text = Text()
    for line in range(height):
        floor = (height - 1 - line) * 8
        for column, filled in enumerate(eighths.tolist()):
            style = ZERO_STYLE if column == zero_column else HISTOGRAM_STYLE
            text.append(COLUMN_EIGHTHS[min(8, max(0, filled - floor))], style)
        text.append("\n")
    left, right = short_number(low), short_number(high)
    axis = left + right.rjust(width - len(left))
    if zero_column is not None and len(left) < zero_column < width - len(right) - 1:
        axis = axis[:zero_column] + "0" + axis[zero_column + 1 :]
    text.append(axis, "dim")
    return text


def singular_values_text(values: np.ndarray, width: int) -> Text:
    """The top singular values, one a line: its index, its value and a bar relative to the largest."""
    text = Text()
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return text
    largest = float(values[0]) or 1.0
    labels = [(f"σ{index + 1}", short_number(float(value))) for index, value in enumerate(values)]
    label_width = max(len(name) for name, _ in labels) + 1 + max(len(number) for _, number in labels) + 1
    room = max(width - label_width, 4)
    for (name, number), value in zip(labels, values.tolist(), strict=True):
        eighths = round(value / largest * room * 8)
        bar = "█" * (eighths // 8) + (BAR_EIGHTHS[eighths % 8] if eighths % 8 else "")
        line = f"{name} {number}".ljust(label_width - 1)
        text.append(line + " ", "dim" if value < largest * 1e-3 else "")
        text.append(bar, HISTOGRAM_STYLE)
        text.append("\n")
    text.rstrip()
    return text


def short_number(value: float) -> str:
    """A statistic in at most 9 characters: 0.01234 -> "0.01234", -0.000123 -> "-1.23e-04", 12345 -> "1.23e+04"."""
    if math.isnan(value):
        return "nan"
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        return f"{value:.4g}"
    return f"{value:.2e}"


def format_shape(shape: tuple[int, ...]) -> str:
    """(576, 1536) -> "576×1536"; a scalar's () -> "scalar"."""
    return "×".join(str(size) for size in shape) if shape else "scalar"
