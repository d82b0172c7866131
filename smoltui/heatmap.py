"""How an attention heatmap is drawn, in `smoltui attention` and on the Attention screen: the colour scale, its
legend, and half-block cells (two query rows per character: ▀ with the upper row as its colour and the lower as
its background). Plain rich, no textual: the CLI prints these, the screen's widgets wrap them in Strips.

Weights are shaded on a square-root scale (a weight of 1/T still shows on a long prompt), quantised to LEVELS
colours whose styles are made once, so a repaint of an 80×80 map costs list look-ups, not colour parsing.
Cells after the query (the causal mask) stay blank, so the empty upper triangle reads as "not looked at" rather
than as a weight of zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

# The colour scale over √weight: dark blue to yellow.
HEAT_STOPS = ((0.0, (20, 24, 82)), (0.35, (33, 120, 150)), (0.7, (94, 201, 98)), (1.0, (253, 231, 37)))
SHADES = " ░▒▓█"  # the heatmap without colour: one character per cell, darkest first
LEVELS = 64  # colours on the scale
MASKED = -1  # the level of a cell the query cannot see (a key after it)
BLANK = Segment(" ")


def mix_colour(stops: Sequence[tuple[float, tuple[int, int, int]]], value: float) -> str:
    """The colour of `value` on a scale of (value, (r, g, b)) stops in increasing order, linearly between the two
    around it, as rich's "#rrggbb"; `value` lies within the first and the last stop."""
    for (low, low_rgb), (high, high_rgb) in zip(stops, stops[1:], strict=False):
        if value <= high:
            share = (value - low) / (high - low)
            red, green, blue = (round(a + (b - a) * share) for a, b in zip(low_rgb, high_rgb, strict=True))
            return f"#{red:02x}{green:02x}{blue:02x}"
    raise AssertionError(f"unreachable: {value} is past the last stop, {stops[-1][0]}")


def heat_colour(value: float) -> str:
    """The colour of `value` in 0..1 on HEAT_STOPS, as rich's "#rrggbb"."""
    return mix_colour(HEAT_STOPS, min(1.0, max(0.0, value)))


PALETTE = tuple(heat_colour(level / (LEVELS - 1)) for level in range(LEVELS))


def heat_levels(weights: np.ndarray, *, high: float = 1.0, causal: bool = True) -> np.ndarray:
    """(R, K) weights in 0..`high` as colour levels (int, 0..LEVELS-1) on the square-root scale; with `causal`,
    the cells whose key comes after their query (row index) are MASKED."""
    share = np.clip(weights / max(high, 1e-12), 0.0, 1.0)  # (R, K)
    levels = np.rint(np.sqrt(share) * (LEVELS - 1)).astype(np.int16)  # (R, K)
    if causal:
        rows, keys = np.indices(levels.shape)
        levels[keys > rows] = MASKED
    return levels


@lru_cache(maxsize=LEVELS * (LEVELS + 2))
def _cell(upper: int, lower: int) -> Segment:
    if upper == MASKED and lower == MASKED:
        return BLANK
    if upper == MASKED:
        return Segment("▄", Style(color=PALETTE[lower]))
    if lower == MASKED:
        return Segment("▀", Style(color=PALETTE[upper]))
    return Segment("▀", Style(color=PALETTE[upper], bgcolor=PALETTE[lower]))


def half_block_rows(levels: np.ndarray) -> list[list[Segment]]:
    """(R, K) colour levels as ceil(R / 2) lines of K cells: rows 2i and 2i + 1 share line i (an odd last row has
    nothing below it)."""
    rows = levels.tolist()
    if len(rows) % 2:
        rows.append([MASKED] * levels.shape[1])
    return [[_cell(upper, lower) for upper, lower in zip(rows[i], rows[i + 1], strict=True)] for i in
            range(0, len(rows), 2)]  # fmt: skip


def shade_row(levels: np.ndarray) -> str:
    """One row of colour levels as shade characters (for a terminal without colour); masked cells blank."""
    return "".join(" " if level == MASKED else SHADES[min(len(SHADES) - 1, 1 + level * 4 // LEVELS)] for level in
                   levels.tolist())  # fmt: skip


def heat_legend(*, colour: bool, high: float = 1.0) -> Text:
    """The colour (or shade) scale from weight 0 to `high` (the largest drawn), on a square-root scale."""
    legend = Text("weight: 0 ")
    if colour:
        for index in range(16):
            legend.append(" ", f"on {heat_colour(index / 15)}")
    else:
        legend.append(SHADES[1:])
    legend.append(f" {high:.3g} · square-root scale (halfway is {high / 4:.3g})")
    return legend
