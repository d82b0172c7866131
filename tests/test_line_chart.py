"""LineChart in an app: points, axes and legend on screen, view reactives, the frame cache, colours and themes."""

from __future__ import annotations

import numpy as np
from textual.app import App, ComposeResult

from smoltui.widgets.line_chart import PALETTE, LineChart


def braille_count(lines: list[str]) -> int:
    return sum(0x2800 < ord(c) <= 0x28FF for line in lines for c in line)


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


async def test_compact_chart_is_a_sparkline_with_its_range_and_steps():
    app = ChartApp()
    async with app.run_test(size=(60, 24)) as pilot:
        spark = app.query_one("#spark", LineChart)
        spark.append("lr", np.arange(100), np.linspace(3e-4, 1e-5, 100))
        await pilot.pause()
        lines = chart_lines(spark)
        assert len(lines) == 4
        assert [line.split()[0] for line in lines[:3]] == ["3e-4", "2e-4", "1e-5"]
        assert lines[3].split() == ["0", "20", "40", "60", "80"]
        assert "━" not in "".join(lines) and "└" not in "".join(lines)
        assert braille_count(lines) > 10


# -- the cursor


def cursor_column(lines: list[str]) -> list[int]:
    """The columns where the cursor line is drawn in the plot rows."""
    return sorted({col for line in lines[1:-2] for col, char in enumerate(line) if char == "│" and col > 5})


async def test_hovering_shows_the_step_and_values_under_the_mouse_without_rebuilding_the_frame():
    app = ChartApp()
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.query_one("#loss", LineChart)
        steps = np.arange(1, 601)
        chart.smoothing = 0.6
        chart.append("train loss", steps, 4 - steps / 200)
        chart.add_series("val loss", style="points")
        chart.append("val loss", steps[49::50], 4.1 - steps[49::50] / 200)
        await pilot.pause()
        plot = chart.current_frame().plot
        builds = []
        original = chart.render_strips
        chart.render_strips = lambda: builds.append(1) or original()
        column = next(c for c in range(plot.width // 2, plot.width) if int(plot.x_of(c)) % 50)  # not a val step
        await pilot.hover(chart, offset=(plot.left + column, 8))
        await pilot.pause()
        lines = chart_lines(chart)
        step = int(plot.x_of(column))
        smoothed = chart.series("train loss").smoothed(0.6)[step - 1]
        assert lines[0].startswith(f"step {step}  ━ train loss {4 - step / 200:.4g} (ema {smoothed:.4g})")
        assert f"• val loss {4.1 - step // 50 * 50 / 200:.4g} @{step // 50 * 50}" in lines[0]
        assert cursor_column(lines) == [plot.left + column] and lines[-2][plot.left + column] == "┴"
        await pilot.hover(chart, offset=(plot.left + 3, 8))
        await pilot.pause()
        assert cursor_column(chart_lines(chart)) == [plot.left + 3]
        assert builds == []  # the cursor is laid over the cached frame
        await pilot.hover("#spark", offset=(1, 1))
        await pilot.pause()
        lines = chart_lines(chart)
        assert lines[0].startswith("━ train loss") and cursor_column(lines) == []


async def test_a_pinned_cursor_starts_at_the_newest_step_and_moves_by_columns():
    app = ChartApp()
    async with app.run_test(size=(80, 24)) as pilot:
        chart = app.query_one("#loss", LineChart)
        chart.append("loss", np.arange(0, 1_001), np.linspace(4, 1, 1_001))
        await pilot.pause()
        chart.crosshair = True
        await pilot.pause()
        plot = chart.current_frame().plot
        assert chart_lines(chart)[0].startswith("step 1000  ━ loss 1")
        chart.move_cursor(-1)
        chart.move_cursor(-10)
        await pilot.pause()
        assert chart.cursor_x == plot.x_of(plot.width - 12)
        assert cursor_column(chart_lines(chart)) == [plot.left + plot.width - 12]
        chart.move_cursor(-1_000)
        assert chart.cursor_x == 0
        chart.move_cursor(1)
        assert chart.cursor_x == plot.x_of(1)
        chart.move_cursor(-1)
        await pilot.hover("#spark", offset=(1, 1))  # the mouse leaving does not unpin it
        assert chart.cursor_x == 0
        chart.crosshair = False
        assert chart.cursor_x is None
