"""Numbers and times read the same in the terminal and on the screens: one formatter each, used by both."""

from __future__ import annotations

import time

from typer.testing import CliRunner

from smoltui.cli import app as cli_app
from smoltui.engine.run_contract import STATUS_LOOKS, RunStatus
from smoltui.formatting import format_ago, status_markup


def test_how_long_ago_is_the_largest_whole_unit():
    now = 1_000_000.0
    assert format_ago(now - 6000, now) == "1h ago"  # 1 h 40 min
    assert [format_ago(now - s, now) for s in (5, 59, 60, 3599, 86400 * 2.9)] == [
        "5s ago",
        "59s ago",
        "1m ago",
        "59m ago",
        "2d ago",
    ]
    assert format_ago(None) == "-"


def test_every_status_has_one_look(workspace):
    assert set(STATUS_LOOKS) == set(RunStatus)
    assert status_markup("running") == "[green]running[/]" and status_markup("failed") == "[red]failed[/]"


def test_the_command_line_and_the_dashboard_say_the_same_age(workspace, write_run):
    write_run("20300101-000000-tiny", started=time.time() - 6000)
    result = CliRunner().invoke(cli_app, ["runs", "--workspace", str(workspace)], env={"COLUMNS": "120"})
    assert "1h ago" in result.stdout and "2h ago" not in result.stdout
