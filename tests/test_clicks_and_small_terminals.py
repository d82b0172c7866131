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
