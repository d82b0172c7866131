"""LineChart: downsampling, debiased EMA, ticks and frame layout as pure functions, then the widget in a pilot."""

from __future__ import annotations

import numpy as np
import pytest
from textual.app import App, ComposeResult

from smoltui.widgets.line_chart import (
    PALETTE,
    ChartView,
    Ink,
    LineChart,
    Series,
    braille_cells,
    build_frame,
    column_extents,
    ema_debiased,
    format_tick,
    log_ticks,
    nice_ticks,
    stroke_spans,
    x_range,
)


def slow_ema(values: np.ndarray, alpha: float) -> np.ndarray:
    """The definition, one point at a time: TensorBoard's debiased EMA."""
    out, biased = [], 0.0
    for t, x in enumerate(values, start=1):
        biased = alpha * biased + (1 - alpha) * x
        out.append(biased / (1 - alpha**t))
    return np.array(out)


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


# ---------------------------------------------------------------------------------------------- EMA


@pytest.mark.parametrize("alpha", [0.0, 0.001, 0.3, 0.6, 0.9, 0.99, 0.999])
def test_ema_matches_the_definition_and_starts_at_the_first_value(alpha):
    values = np.random.default_rng(1).normal(3.0, 1.0, 5_000) + np.linspace(4, 0, 5_000)
    smoothed, state = ema_debiased(values, alpha)
    assert smoothed[0] == pytest.approx(values[0], rel=1e-12)
    np.testing.assert_allclose(smoothed, slow_ema(values, alpha), rtol=1e-10)
    assert state.count == 5_000


def test_ema_has_no_start_up_bias_on_a_constant_series():
    smoothed, _ = ema_debiased(np.full(1_000, 2.5), 0.99)
    np.testing.assert_allclose(smoothed, 2.5, rtol=1e-12)


def test_ema_appended_in_pieces_equals_full_recompute():
    values = np.random.default_rng(2).normal(size=20_000)
    full, _ = ema_debiased(values, 0.95)
    parts, state = [], None
    for piece in np.array_split(values, [1, 2, 700, 701, 9_000, 15_000]):
        smoothed, state = ema_debiased(piece, 0.95, state)
        parts.append(smoothed)
    np.testing.assert_allclose(np.concatenate(parts), full, rtol=1e-12, atol=1e-12)


def test_ema_rejects_a_weight_of_one():
    with pytest.raises(ValueError, match="smoothing"):
        ema_debiased(np.ones(3), 1.0)


# ---------------------------------------------------------------------------------------------- storage


def test_series_storage_doubles_instead_of_copying_every_append():
    s = Series("loss", "#fff")
    capacities = set()
    for start in range(0, 100_000, 100):
        s.append(np.arange(start, start + 100), np.ones(100))
        capacities.add(s._steps.capacity)
    assert len(s) == 100_000
    assert len(capacities) <= 12  # log2(100_000 / 256) + 1 reallocations
    assert s._steps.capacity < 2 * len(s) + 256


def test_series_skips_nan_and_inf_and_merges_late_points():
    s = series("loss", [0, 1, 2, 3, np.nan], [1.0, np.nan, np.inf, 4.0, 5.0])
    assert s.steps.tolist() == [0, 3] and s.values.tolist() == [1.0, 4.0]
    s.append([2], [9.0])  # older than the newest point: merged in order
    assert s.steps.tolist() == [0, 2, 3] and s.values.tolist() == [1.0, 9.0, 4.0]
    with pytest.raises(ValueError, match="same length"):
        s.append([1, 2], [1.0])


def test_series_keeps_its_ema_running_on_append():
    values = np.random.default_rng(3).normal(size=3_000)
    s = series("loss", np.arange(1_000), values[:1_000])
    s.smoothed(0.9)
    s.append(np.arange(1_000, 3_000), values[1_000:])
    np.testing.assert_allclose(s.smoothed(0.9), slow_ema(values, 0.9), rtol=1e-10)


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


# ---------------------------------------------------------------------------------------------- widget


class ChartApp(App[None]):
    CSS = "#spark { height: 4; }"

    def compose(self) -> ComposeResult:
        yield LineChart(id="loss")
        yield LineChart(id="spark", compact=True)


def chart_lines(chart: LineChart) -> list[str]:
    return [chart.render_line(y).text for y in range(chart.size.height)]


async def test_chart_shows_points_axes_and_legend_in_an_app():
    app = ChartApp()
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.query_one("#loss", LineChart)
        await pilot.pause()
        assert "waiting for data…" in "\n".join(chart_lines(chart))
        steps = np.arange(0, 3_000)
        chart.append("train/loss", steps[:2_000], 1.5 + 3 * np.exp(-steps[:2_000] / 500))
        chart.append("train/loss", steps[2_000:], 1.5 + 3 * np.exp(-steps[2_000:] / 500))
        chart.add_series("val/loss", colour=chart.series("train/loss").colour, style="points")
        chart.append("val/loss", steps[::200], 1.6 + 3 * np.exp(-steps[::200] / 500))
        await pilot.pause()
        lines = chart_lines(chart)
        assert braille_count(lines) > 50
        assert lines[0].startswith("━ train/loss") and "• val/loss" in lines[0]
        assert "└" in lines[-2] and "1000" in lines[-1] and "2000" in lines[-1]
        assert {"2.0", "3.0", "4.0"} <= {line.split("┤")[0].strip() for line in lines if "┤" in line}
        screenshot = app.export_screenshot()
        assert any(0x2800 < ord(c) <= 0x28FF for c in screenshot)


async def test_view_reactives_rerender_and_the_frame_is_cached():
    app = ChartApp()
    async with app.run_test(size=(100, 24)) as pilot:
        chart = app.query_one("#loss", LineChart)
        chart.set_series("loss", np.arange(500), np.linspace(4, 1, 500))
        await pilot.pause()
        builds = []
        original = chart.render_strips
        chart.render_strips = lambda: builds.append(1) or original()
        chart_lines(chart)
        chart.refresh()
        await pilot.pause()
        assert builds == []  # nothing changed: lines come from the cache
        chart.smoothing, chart.log_y, chart.window = 0.6, True, 100
        await pilot.pause()
        assert len(builds) == 1
        assert "ema 0.6 · log · last 100 steps" in chart_lines(chart)[0]
        chart.smoothing, chart.window = 5.0, -3  # clamped and reset by validation
        assert chart.smoothing == 0.999 and chart.window is None


async def test_series_keep_their_colours_and_follow_the_theme():
    app = ChartApp()
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.query_one("#loss", LineChart)
        assert chart.add_series("run-a") == PALETTE[0]
        assert chart.add_series("run-b") == PALETTE[1]
        chart.clear()
        assert chart.add_series("run-b") == PALETTE[1] and chart.add_series("run-a") == PALETTE[0]
        assert chart.add_series("run-a val", colour=PALETTE[0], style="points") == PALETTE[0]
        assert chart.add_series("run-c") == PALETTE[2]  # a colour given by the caller uses no palette slot
        chart.append("run-a", [0, 1, 2], [1.0, 2.0, 3.0])
        app.theme = "textual-dark"
        await pilot.pause()
        dark_axis = chart.get_component_rich_style("line-chart--axis").color
        marker = chart.render_line(0)._segments[0]
        assert marker.text.startswith("━") and marker.style.color.name.lower() == PALETTE[0]
        app.theme = "textual-light"
        await pilot.pause()
        assert chart.get_component_rich_style("line-chart--axis").color != dark_axis
        assert chart.render_line(1).text.strip()


async def test_compact_chart_is_a_sparkline_with_its_range():
    app = ChartApp()
    async with app.run_test(size=(60, 24)) as pilot:
        spark = app.query_one("#spark", LineChart)
        spark.append("lr", np.arange(100), np.linspace(3e-4, 1e-5, 100))
        await pilot.pause()
        lines = chart_lines(spark)
        assert len(lines) == 4
        assert lines[0].startswith("3e-4") and lines[-1].lstrip().startswith("1e-5")
        assert "━" not in "".join(lines) and "└" not in "".join(lines)
        assert braille_count(lines) > 10
