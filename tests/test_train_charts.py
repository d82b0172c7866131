"""The Train screen's charts driven by keys and mouse: titles and colours, the y range of the first steps,
runs aligned by fraction of their length, and the cursor that reads values off the loss chart.

Runs are written by hand into a run store (`write_run` of test_train_screen, or `write_curve` for a loss curve
and a length of one's choosing), finished, so each test reads them once.
"""

from __future__ import annotations

import numpy as np
from test_train_screen import TrainTestApp, open_run, wait_for_final_read, wait_until, write_run

from smoltui.engine.runstore import RunStore
from smoltui.widgets.chart_frame import CLIPPED_MARK
from smoltui.widgets.line_chart import LineChart


def write_curve(workspace, run_id: str, losses: np.ndarray, max_steps: int) -> None:
    """A finished run of `len(losses)` steps that planned `max_steps`, with only its train loss."""
    store = RunStore.create(workspace / "runs" / run_id, run_id, {"max_steps": max_steps, "model_source": "tiny"})
    store.update_status("running")
    for step, loss in enumerate(losses.tolist(), start=1):
        store.log_metrics(step, {"train/loss": loss})
    store.update_status("finished")
    store.close()


def chart_lines(chart: LineChart) -> list[str]:
    return [chart.render_line(y).text for y in range(chart.size.height)]


async def test_a_lone_run_has_a_loss_title_val_in_its_own_colour_and_small_charts_with_steps(workspace):
    write_run(workspace)
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(pilot, "latest")
        await wait_for_final_read(pilot, screen.dashboard)
        chart = screen.dashboard.loss_chart
        assert chart.series("val loss").colour != chart.series("train loss").colour
        legend = chart_lines(chart)[0]
        assert legend.startswith("loss (nats)  ━ train loss") and "• val loss" in legend
        assert chart_lines(chart)[-1].startswith("step")
        tokens = chart_lines(screen.query_one("#tokens_per_s-chart", LineChart))
        assert len(tokens) == 4 and tokens[2].split()[0] == "0"  # read against zero, with a middle tick
        assert tokens[3].split() == ["200", "400", "600"]


async def test_o_shows_the_first_steps_that_the_loss_range_leaves_out(workspace):
    steps = np.arange(1, 601)
    write_curve(workspace, "20250101-120000-spike", 1.5 + 0.8 * np.exp(-steps / 150) + 3 * (steps <= 3), 600)
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(pilot, "latest")
        await wait_for_final_read(pilot, screen.dashboard)
        chart = screen.dashboard.loss_chart
        lines = chart_lines(chart)
        assert "▲ start clipped" in lines[0] and CLIPPED_MARK in lines[1]
        await pilot.press("o")
        assert not any(c.clip_start for c in screen.query(LineChart))
        lines = chart_lines(chart)
        assert "clipped" not in lines[0] and any(line.lstrip().startswith("5.") for line in lines)
        await pilot.press("o")
        assert all(c.clip_start for c in screen.query(LineChart))


async def test_a_aligns_a_short_run_with_a_long_one_by_fraction_of_their_lengths(workspace):
    write_run(workspace, "20250101-120000-long")  # 600 of 600 steps
    write_curve(workspace, "20250101-130000-short", np.linspace(4, 2, 111), max_steps=111)
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(pilot, "20250101-120000-long", ["20250101-130000-short"])
        chart = screen.dashboard.loss_chart
        await wait_until(pilot, lambda: len(chart.series("130000-short")) == 111, "the overlaid run")
        assert chart.series("130000-short").max_steps == 111 and chart.series("120000-long").max_steps == 600
        assert chart_lines(chart)[-1].rstrip().endswith("600")
        await pilot.press("a")
        assert chart.by_fraction
        lines = chart_lines(chart)
        assert lines[-1].startswith("% of run") and lines[-1].rstrip().endswith("100%")
        await pilot.press("x")
        readout = chart_lines(chart)[0]
        assert readout.startswith("100% of run  ━ 120000-long ") and "@600  ━ 130000-short " in readout
        assert "@111" in readout  # each run at its own last step
        await pilot.press("a")  # a pinned cursor moves to the newest x in the new unit
        lines = chart_lines(chart)
        assert lines[-1].startswith("step") and lines[0].startswith("step 600")


async def test_x_pins_a_cursor_that_the_arrows_move_and_the_mouse_reads_too(workspace):
    write_run(workspace)
    app = TrainTestApp(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        screen = await open_run(pilot, "latest")
        await wait_for_final_read(pilot, screen.dashboard)
        chart = screen.dashboard.loss_chart
        await pilot.press("left")  # no cursor yet: the arrows do nothing
        assert chart.cursor_x is None
        await pilot.press("x")
        assert chart_lines(chart)[0].startswith("step 600  ━ train loss")
        await pilot.press("left", "shift+left")
        await pilot.pause()
        plot = chart.current_frame().plot
        assert chart.cursor_x == plot.x_of(plot.width - 12)
        readout = chart_lines(chart)[0]
        step = int(chart.cursor_x)
        assert readout.startswith(f"step {step}  ━ train loss") and "(ema " in readout
        assert "• val loss" in readout and f"@{step // 50 * 50}" in readout
        await pilot.press("right")
        assert chart.cursor_x == plot.x_of(plot.width - 11)
        await pilot.press("x")
        assert chart.cursor_x is None and chart_lines(chart)[0].startswith("loss (nats)")
        await pilot.hover(chart, offset=(plot.left + 10, 5))
        await pilot.pause()
        assert chart_lines(chart)[0].startswith(f"step {int(plot.x_of(10))}  ━ train loss")
