"""Chart frames: per-column downsampling, ticks and labels, and whole frames laid out as rows of runs."""

from __future__ import annotations

import numpy as np
import pytest

from smoltui.widgets.chart_data import Series
from smoltui.widgets.chart_frame import CLIPPED_MARK, ChartView, PlotArea, build_frame, legend_row, x_range
from smoltui.widgets.chart_raster import Ink, braille_cells, column_extents, stroke_spans
from smoltui.widgets.chart_ticks import format_tick, log_ticks, nice_ticks


def frame_text(frame) -> list[str]:
    return ["".join(text for text, _ in row) for row in frame.rows]


def braille_count(lines: list[str]) -> int:
    return sum(0x2800 < ord(c) <= 0x28FF for line in lines for c in line)


def series(name: str, steps, values, style="line", colour="#ff0000", max_steps=None) -> Series:
    s = Series(name, colour, style, max_steps)
    s.append(steps, values)
    return s


def y_labels(lines: list[str]) -> list[str]:
    return [line.split("┤")[0].strip() for line in lines if "┤" in line]


def learning_curve(steps: int = 3_000) -> tuple[np.ndarray, np.ndarray]:
    """A loss that starts at 4.5 and is under 2.5 within a few steps, then learns slowly towards 1.5."""
    x = np.arange(1, steps + 1)
    return x, 1.5 + 0.8 * np.exp(-x / 600) + 2.2 * np.exp(-(x - 1) / 3)


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
    assert x_range([a, b], ChartView()) == (0, 999)
    assert x_range([a, b], ChartView(window=100)) == (899, 999)
    assert x_range([a, b], ChartView(window=10_000)) == (0, 999)
    assert x_range([series("one", [7], [1.0])], ChartView()) == (6.5, 7.5)
    assert x_range([Series("empty", "#fff")], ChartView()) is None


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
    assert len(frame.rows) == height
    assert all(sum(len(text) for text, _ in row) == width for row in frame.rows)


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


def test_legend_names_what_did_not_fit_and_puts_series_before_the_view_notes():
    many = [series(f"run-{i}", [0, 1], [1.0, 2.0]) for i in range(6)]

    def legend(width: int, view: ChartView | None = None) -> str:
        return frame_text(build_frame(many, width, 10, view or ChartView()))[0].rstrip()

    assert legend(64) == "━ run-0 2  ━ run-1 2  ━ run-2 2  ━ run-3 2  ━ run-4 2  ━ run-5 2"
    assert legend(61) == "━ run-0 2  ━ run-1 2  ━ run-2 2  ━ run-3 2  +2 more: run-4, …"
    assert legend(48, ChartView(y_title="loss")) == "loss  ━ run-0 2  ━ run-1 2  ━ run-2 2  +3 more"
    two = [series("train", [0, 1], [1.0, 2.0]), series("a longer name", [0, 1], [1.0, 2.0])]
    assert frame_text(build_frame(two, 26, 10, ChartView()))[0] == "━ train 2  +1 more: a lon…"
    assert legend(50) == "━ run-0 2  ━ run-1 2  ━ run-2 2  +3 more: run-3, …"
    assert legend(20) == "━ run-0 2  +5 more"
    assert "ema 0.5" not in legend(70, ChartView(smoothing=0.5))  # the series come first
    assert frame_text(build_frame(many[:2], 60, 10, ChartView(smoothing=0.5)))[0].endswith("ema 0.5")


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
    roles = {role for row in frame.rows for _, role in row}
    assert {Ink("#112233", faint=True), Ink("#112233")} <= roles
    assert "•" in "".join(frame_text(frame)[1:])
    assert "ema 0.9" in frame_text(frame)[0]


# ---------------------------------------------------------------------------------------------- titles, small charts


def test_axes_have_titles_the_metric_with_its_unit_and_the_step():
    steps = np.arange(1, 601)
    frame = build_frame([series("train loss", steps, 4 - steps / 300)], 80, 16, ChartView(y_title="loss (nats)"))
    assert frame.rows[0][0] == ("loss (nats)", "title")
    lines = frame_text(frame)
    assert lines[0].startswith("loss (nats)  ━ train loss 2")
    assert lines[-1].startswith("step") and "600" in lines[-1]
    windowed = frame_text(
        build_frame([series("loss", np.arange(10_000), np.ones(10_000))], 80, 8, ChartView(window=1_000))
    )
    assert windowed[-1].lstrip().startswith("9000") and windowed[-1].rstrip().endswith("step")  # the first tick stays


def test_compact_chart_has_a_step_axis_and_a_middle_tick():
    lr = 3e-3 * np.minimum(1.0, np.arange(600) / 20)
    lines = frame_text(build_frame([series("lr", np.arange(600), lr)], 38, 4, ChartView(compact=True)))
    assert [line.split()[0] for line in lines[:3]] == ["0.003", "0.001", "0"]  # top, a round middle, bottom
    assert lines[3].split() == ["0", "200", "400"]
    assert braille_count(lines[:3]) > 20 and braille_count(lines[3:]) == 0


# ---------------------------------------------------------------------------------------------- y range rules


def test_the_first_steps_outliers_are_clipped_and_marked_unless_all_is_asked_for():
    steps, loss = learning_curve()
    clipped = frame_text(build_frame([series("loss", steps, loss)], 80, 20, ChartView()))
    assert max(map(float, y_labels(clipped))) <= 2.4  # the band where learning happens fills the plot
    assert clipped[1][4] == CLIPPED_MARK and "▲ start clipped" in clipped[0]
    assert clipped[1][5] != " "  # step 1's 4.5 is drawn at the top edge
    everything = frame_text(build_frame([series("loss", steps, loss)], 80, 20, ChartView(clip_start=False)))
    assert max(map(float, y_labels(everything))) >= 4.0 and CLIPPED_MARK not in "".join(everything)


def test_a_start_that_barely_sticks_out_is_not_clipped():
    decay = np.linspace(3e-4, 1e-5, 1_000)  # an lr that decays from step 0: its top is in the first 2%
    lines = frame_text(build_frame([series("lr", np.arange(1_000), decay)], 60, 12, ChartView()))
    assert CLIPPED_MARK not in "".join(lines) and "3e-4" in y_labels(lines)


def test_a_rate_read_from_zero_keeps_a_steady_axis_through_a_stall():
    rate = 9_000 + np.random.default_rng(5).normal(0, 300, 600)
    rate[300:310] = 48.7  # an eval pause
    stalled = [series("tokens_per_s", np.arange(600), rate)]
    lines = frame_text(build_frame(stalled, 38, 4, ChartView(compact=True, from_zero=True)))
    assert lines[2].split()[0] == "0" and lines[1].split()[0] == "4000"
    assert "48.7" not in "".join(lines)
    assert frame_text(build_frame(stalled, 38, 4, ChartView(compact=True)))[2].split()[0] == "48.7"


# ---------------------------------------------------------------------------------------------- runs aligned


def test_runs_line_up_by_fraction_of_their_length():
    long = series("long", np.arange(1, 3_001), np.linspace(4, 1, 3_000), max_steps=3_000)
    short = series("short", np.arange(1, 112), np.linspace(4, 2, 111), colour="#00ff00", max_steps=111)
    by_step = build_frame([long, short], 80, 12, ChartView())
    by_fraction = build_frame([long, short], 80, 12, ChartView(by_fraction=True))
    assert x_range([long, short], ChartView(by_fraction=True)) == (pytest.approx(1 / 3_000), 1.0)

    def last_column_of(frame, colour: str) -> int:
        return max(
            sum(len(t) for t, _ in row[: row.index(run)]) + len(run[0]) - 1
            for row in frame.rows[1:]  # not the legend
            for run in row
            if isinstance(run[1], Ink) and run[1].colour == colour
        )

    assert last_column_of(by_step, "#00ff00") < by_step.plot.left + 0.1 * by_step.plot.width
    assert last_column_of(by_fraction, "#00ff00") == 79  # the short run ends where the long one does
    lines = frame_text(by_fraction)
    assert lines[-1].startswith("% of run") and lines[-1].rstrip().endswith("100%")
    assert x_range([long, short], ChartView(by_fraction=True, window=300))[0] == pytest.approx(0.9)


# ---------------------------------------------------------------------------------------------- cursor


def test_plot_columns_map_to_x_and_back():
    plot = PlotArea(left=5, top=1, width=75, height=10, x0=1.0, x1=3_000.0)
    assert plot.x_of(0) == 1.0 and plot.x_of(74) == 3_000.0 and plot.x_of(99) == 3_000.0
    assert [plot.column_of(plot.x_of(c)) for c in range(75)] == list(range(75))
    assert plot.column_of(0.5) is None and plot.column_of(3_000.5) is None


def test_readout_gives_each_series_value_at_or_before_the_cursor():
    steps = np.arange(1, 601)
    train = series("train loss", steps, 4 - steps / 200)
    val = series("val loss", steps[49::50], 4.1 - steps[49::50] / 200, style="points", colour="#00ff00")
    raw = legend_row([train, val], ChartView(), 100, "", at=275.6)
    assert "".join(t for t, _ in raw).split("  ")[:3] == ["step 275", "━ train loss 2.625", "• val loss 2.85 @250"]
    view = ChartView(smoothing=0.6)
    smoothed = "".join(t for t, _ in legend_row([train, val], view, 100, "ema 0.6", at=275.6))
    ema = train.smoothed(0.6)[274]
    assert smoothed.startswith(f"step 275  ━ train loss 2.625 (ema {ema:.4g})") and smoothed.endswith("ema 0.6")
    narrow = "".join(t for t, _ in legend_row([train, val], view, 56, "ema 0.6", at=275.6))
    assert narrow.rstrip() == "step 275  ━ train loss 2.625  • val loss 2.85 @250"  # smoothed values go first
    before = "".join(t for t, _ in legend_row([train, val], view, 100, "", at=10))
    assert "val loss –" in before
    long = series("long", np.arange(1, 3_001), np.linspace(4, 1, 3_000), max_steps=3_000)
    short = series("short", np.arange(1, 112), np.linspace(4, 2, 111), max_steps=111)
    aligned = "".join(t for t, _ in legend_row([long, short], ChartView(by_fraction=True), 120, "", at=0.5))
    assert aligned.startswith("50% of run  ━ long 2.501 @1500  ━ short 3.018 @55")
