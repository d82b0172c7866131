"""The dashboard by mouse, and in a small terminal: tabs, footer keys and quick actions answer clicks; at 80
columns the footer keeps ? and q."""

from __future__ import annotations

from conftest import FIXED_NOW

from smoltui.app import SmolApp
from smoltui.screens.base import KeyBar, ModeTab
from smoltui.screens.runs import RunsScreen


def make_app(workspace) -> SmolApp:
    return SmolApp(workspace, device="cpu", clock=lambda: FIXED_NOW)


def footer(app) -> str:
    return str(app.screen.query_one(KeyBar).query_one("#keys").render())


async def test_a_click_on_a_tab_shows_its_screen(workspace):
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        runs_tab = next(tab for tab in app.screen.query(ModeTab) if tab.mode == "runs")
        await pilot.click(runs_tab)
        await pilot.pause()
        assert app.current_mode == "runs"


async def test_a_click_on_a_footer_key_presses_it(workspace, write_run):
    write_run("20300101-000000-tiny")
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("4")
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        keys = footer(app)
        refresh = keys.index("r Refresh")
        assert isinstance(app.screen, RunsScreen)
        await pilot.click(app.screen.query_one(KeyBar).query_one("#keys"), offset=(keys.index("? Keys") + 1, 0))
        await pilot.pause()
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.pause()
        assert refresh > 0


async def test_a_click_on_a_quick_action_runs_it(workspace):
    app = make_app(workspace)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        actions = app.screen.query_one("#quick-actions")
        await pilot.click(actions, offset=(4, 1))  # the first option: n, a new model from a preset
        await pilot.pause(0.3)
        assert app.current_mode == "model"


async def test_a_narrow_footer_keeps_help_and_quit(workspace, write_run):
    write_run("20300101-000000-tiny")
    app = make_app(workspace)
    async with app.run_test(size=(60, 24)) as pilot:
        await pilot.press("4")
        await pilot.pause(0.5)
        keys = footer(app)
        assert "? Keys" in keys and "q Quit" in keys
        assert "⏎ Open" in keys  # the screen's first keys stay; its last ones gave way
        assert "r Refresh" not in keys


async def test_at_80_columns_the_runs_table_shows_whole_columns_and_ids_without_their_shared_date(workspace, write_run):
    write_run("20300101-120000-tiny", started=FIXED_NOW - 7200)
    write_run("20300101-133000-nano-char", model="nano-char", started=FIXED_NOW - 420)
    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("4")
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        await pilot.pause(0.3)
        table = app.screen.query_one("#runs-table")
        used = sum(column.get_render_width(table) for column in table.ordered_columns)
        assert used <= table.size.width  # nothing runs off the right edge, cut in half
        ids = [str(table.get_row_at(i)[1]) for i in range(table.row_count)]
        assert ids == ["133000-nano-char", "120000-tiny"]
        assert [column.label.plain for column in table.ordered_columns][:5] == ["", "run", "status", "model", "step"]


async def test_at_80x24_the_dashboard_keeps_the_run_the_numbers_and_the_latest_sample_and_event(workspace, write_run):
    from smoltui.engine.runstore import RunStore

    with RunStore.open(write_run("20300101-120000-tiny"), readonly=False) as store:
        store.log_sample(4, "\n", "def spam():\n    return 1")
        store.log_event("info", "finished", "reached max_steps 4; final checkpoint at step 4.")
    app = SmolApp(workspace, device="cpu", clock=lambda: FIXED_NOW, start_mode="train", start_run="latest")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        await pilot.pause(0.5)
        dashboard = app.screen.dashboard
        for selector in ("#run-title", "#run-details", "#latest-sample", "#latest-event", "#loss-chart"):
            widget = dashboard.query_one(selector)
            assert widget.display and widget.region.height >= 1, selector
        assert "20300101-120000-tiny" in str(dashboard.query_one("#run-title").render())
        assert "reached max_steps 4" in str(dashboard.query_one("#latest-event").render())
        assert "def spam(): ↵" in str(dashboard.query_one("#latest-sample").render())
