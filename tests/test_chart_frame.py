"""Chart frames: per-column downsampling, ticks and labels, and whole frames laid out as rows of runs."""

from __future__ import annotations

import numpy as np
import pytest

from smoltui.widgets.chart_data import Series
from smoltui.widgets.chart_frame import (
    ChartView,
    Ink,
    braille_cells,
    build_frame,
    column_extents,
    format_tick,
    log_ticks,
    nice_ticks,
    stroke_spans,
    x_range,
)


def frame_text(frame) -> list[str]:
    return ["".join(text for text, _ in row) for row in frame]


def braille_count(lines: list[str]) -> int:
    return sum(0x2800 < ord(c) <= 0x28FF for line in lines for c in line)


def series(name: str, steps, values, style="line", colour="#ff0000") -> Series:
    s = Series(name, colour, style)
    s.append(steps, values)
    return s


# ---------------------------------------------------------------------------------------------- downsampling


def test_column_extents_match_brute_force_and_keep_a_spike():
    rng = np.random.default_rng(0)
    steps = np.arange(10_000, dtype=float)
    values = rng.normal(1.0, 0.1, 10_000)
    values[6_543] = 50.0
    ext = column_extents(steps, values, 0, 9_999, 40)
    assert len(ext.columns) == 40
    assert ext.high.max() == 50.0
    spike_col = int(6_543 / (9_999 / 40))
    assert ext.high[spike_col] == 50.0
    column_of = np.minimum((steps / (9_999 / 40)).astype(int), 39)
    for col in (0, 17, spike_col, 39):
        inside = values[column_of == col]
        assert ext.low[col] == inside.min() and ext.high[col] == inside.max()
        assert ext.first[col] == inside[0] and ext.last[col] == inside[-1]


def test_column_extents_window_gaps_and_positive_only():
    steps = np.array([0.0, 1, 2, 50, 51, 99])
    values = np.array([1.0, -2, 3, 4, 0, 6])
    ext = column_extents(steps, values, 40, 99, 10)
    assert ext.columns.tolist() == [1, 9]  # only the points at and after step 40
    assert column_extents(steps, values, 100, 200, 10) is None
    positive = column_extents(steps, values, 0, 99, 10, positive_only=True)
    assert positive.low.min() > 0 and 0.0 not in positive.high


def test_stroke_spans_bridge_gaps_between_sparse_points():
    ext = column_extents(np.array([0.0, 10.0]), np.array([0.0, 20.0]), 0, 10, 11)
    cols, top, bottom = stroke_spans(ext)
    assert cols.tolist() == list(range(11))
    assert top[0] == 0 and bottom[-1] == 20
    assert np.all(top[1:] <= bottom[:-1])  # each column's stroke meets the previous one: no hole in the line


def test_braille_cells_pack_dots_in_unicode_order():
    dots = np.zeros((8, 4), dtype=bool)
    dots[0, 0] = dots[3, 1] = True  # first cell: dot 1 and dot 8
    dots[4:, 2:] = True  # fourth cell: all eight dots
    cells = braille_cells(dots)
    assert cells.tolist() == [[0x01 | 0x80, 0], [0, 0xFF]]


# ---------------------------------------------------------------------------------------------- view and ticks


def test_x_range_follows_the_newest_step_in_a_window():
    a, b = series("a", np.arange(0, 500), np.ones(500)), series("b", np.arange(100, 1_000), np.ones(900))
    assert x_range([a, b], None) == (0, 999)
    assert x_range([a, b], 100) == (899, 999)
    assert x_range([a, b], 10_000) == (0, 999)
    assert x_range([series("one", [7], [1.0])], None) == (6.5, 7.5)
    assert x_range([Series("empty", "#fff")], None) is None


def test_ticks_and_labels():
    ticks, step = nice_ticks(1.13, 4.87, 5)
    assert ticks.tolist() == pytest.approx([2.0, 3.0, 4.0]) and step == 1
    assert nice_ticks(0, 10_000, 5)[0].tolist() == [0, 2_000, 4_000, 6_000, 8_000, 10_000]
    assert log_ticks(0, 3, 6)[0].tolist() == [1, 10, 100, 1_000]
    cases = [(1500, 500), (12_500, 2_500), (2e6, 1e6), (1.5e-4, 5e-5), (1e-4, 5e-5), (2.5, 0.5), (0.75, 0.25)]
    assert [format_tick(value, step) for value, step in cases] == [
        "1500",
        "12.5k",
        "2M",
        "1.5e-4",
        "1.0e-4",
        "2.5",
        "0.75",
    ]


# ---------------------------------------------------------------------------------------------- frames


def test_empty_chart_says_it_is_waiting():
    lines = frame_text(build_frame([Series("loss", "#fff")], 40, 9, ChartView()))
    assert len(lines) == 9 and all(len(line) == 40 for line in lines)
    assert lines[4].strip() == "waiting for data…"
    assert braille_count(lines) == 0


@pytest.mark.parametrize("size", [(80, 24), (120, 40), (30, 6), (12, 3)])
def test_frame_rows_are_exactly_the_widget_width(size):
    width, height = size
    steps = np.arange(2_000)
    frame = build_frame([series("train", steps, 3 / np.log(steps + 2))], width, height, ChartView(smoothing=0.6))
    assert len(frame) == height
    assert all(sum(len(text) for text, _ in row) == width for row in frame)


def test_single_point_and_constant_series_draw_without_dividing_by_zero():
    with np.errstate(all="raise"):
        one = frame_text(build_frame([series("loss", [5], [2.0])], 40, 10, ChartView()))
        flat = frame_text(build_frame([series("loss", np.arange(100), np.full(100, 2.0))], 40, 10, ChartView()))
    assert braille_count(one) == 1
    assert braille_count(flat) >= 15
    assert any("2" in line[:6] for line in flat)


def test_nan_values_are_skipped_in_the_drawing():
    values = np.where(np.arange(200) % 7 == 0, np.nan, 1.0 + np.arange(200) / 100)
    lines = frame_text(build_frame([series("loss", np.arange(200), values)], 60, 12, ChartView()))
    assert braille_count(lines) > 20
    assert "nan" not in "".join(lines).lower()


def test_log_y_skips_non_positive_values_and_labels_decades():
    steps = np.arange(1_000)
    values = 10.0 ** (3 - 3 * steps / 999)
    values[5::10] = -1.0
    lines = frame_text(build_frame([series("loss", steps, values)], 60, 20, ChartView(log_y=True)))
    labels = [line.split("┤")[0].strip() for line in lines[1:-2] if "┤" in line]
    assert {"1", "10", "100", "1000"} <= set(labels)
    negative = frame_text(build_frame([series("loss", [0, 1], [-1.0, 0.0])], 60, 10, ChartView(log_y=True)))
    assert "no positive values" in "".join(negative)


def test_legend_says_how_many_series_did_not_fit():
    many = [series(f"run-{i} train/loss", [0, 1], [1.0, 2.0]) for i in range(6)]
    legend = frame_text(build_frame(many, 60, 10, ChartView(smoothing=0.5)))[0]
    assert legend.startswith("━ run-0 train/loss") and "+5" in legend and legend.endswith("ema 0.5")


def test_window_shows_only_the_last_steps():
    steps = np.arange(10_000)
    lines = frame_text(build_frame([series("loss", steps, np.ones(10_000))], 80, 12, ChartView(window=1_000)))
    assert "9000" in lines[-1] and "1000" not in lines[-1].replace("10k", "")
    assert "last 1000 steps" in lines[0]


def test_smoothing_draws_raw_faint_and_ema_bright_with_points_on_top():
    steps = np.arange(1_000)
    train = series("train", steps, 2 + np.random.default_rng(4).normal(0, 0.3, 1_000), colour="#112233")
    val = series("val", steps[::100], np.full(10, 2.0), style="points", colour="#112233")
    frame = build_frame([train, val], 80, 20, ChartView(smoothing=0.9))
    roles = {role for row in frame for _, role in row}
    assert {Ink("#112233", faint=True), Ink("#112233")} <= roles
    assert "•" in "".join(frame_text(frame)[1:])
    assert "ema 0.9" in frame_text(frame)[0]
