"""SVG snapshots of the dashboard's screens at 120x40 and 80x24 (pytest-textual-snapshot).

Everything that would change between runs is fixed: the app's clock, the run ids and times (runs written
straight into the store), the workspace path (shown relative to the current folder), the device (cpu), the
cursor blink. The Train screen is the real one: the help panel lists its keys.
`uv run pytest tests/test_screens_snapshots.py --snapshot-update` rewrites them after a deliberate change.
"""

from __future__ import annotations

import pytest
from conftest import FIXED_NOW, settle
from textual.widgets import Input

from smoltui.app import SmolApp

SIZES = pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])


@pytest.fixture(autouse=True)
def steady_screen(monkeypatch, tmp_path, workspace):
    """No blinking cursor, and the workspace shown as ./ws whatever the temporary folder is called."""
    mounted = Input._on_mount

    def mount_without_blink(self, event):
        mounted(self, event)
        self.cursor_blink = False

    monkeypatch.setattr(Input, "_on_mount", mount_without_blink)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def two_runs(write_run):
    write_run("20300101-120000-tiny", losses=(4.31, 3.82, 3.4, 3.02, 2.87), val_loss=2.95, started=FIXED_NOW - 7200)
    write_run(
        "20300101-133000-nano-char",
        status="stopped",
        model="nano-char",
        losses=(4.5, 3.9, 3.3),
        val_loss=None,
        tokens_per_s=2048.0,
        started=FIXED_NOW - 420,
        max_steps=3000,
    )


def make_app(workspace) -> SmolApp:
    return SmolApp(workspace, device="cpu", clock=lambda: FIXED_NOW)


@SIZES
def test_home(snap_compare, workspace, two_runs, size):
    """Home: the tabs with Home lit and "no run training" on top; the workspace panel (path ./ws, no model
    loaded, device auto, corpus notes.txt, 2 runs); the four quick actions with their keys; the recent runs,
    the stopped nano-char run first (7m ago), then the finished tiny run (2h ago); the footer's keys."""
    assert snap_compare(make_app(workspace), terminal_size=size, run_before=settle)


@SIZES
def test_model_with_a_loaded_tiny_model(snap_compare, workspace, size):
    """Model after loading the `tiny` preset: "tiny · cpu fp32" on the right of the top line; the source input
    holding "tiny" and the line "loaded tiny · preset (fresh weights) · on cpu"; the summary (GPT2LMHeadModel,
    30,688 parameters, 2 layers, 2 heads, hidden 32, context 64, vocab 99, fp32, cpu, 119.9 KiB, the LM head
    tied to the embedding); the module tree open on transformer (wte, wpe, drop, h collapsed, ln_f) and lm_head
    "tied to the embedding"."""

    async def load_tiny(pilot):
        await pilot.press("2", "l", *"tiny", "enter")
        await settle(pilot)

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=load_tiny)


@SIZES
def test_runs_with_finished_runs(snap_compare, workspace, two_runs, size):
    """Runs: the table of both runs, newest first, with status (stopped, finished), model, step (3/3000, 5/5),
    train and val loss, tokens/s and how long ago each started; the cursor on the first row, which is marked
    (● in the first column); the hint saying o opens it; the footer's Open, Mark, Compare, Delete, Refresh."""

    async def mark_first(pilot):
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("space")
        await pilot.pause()

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=mark_first)


@SIZES
def test_help(snap_compare, workspace, size):
    """Help over Home: a framed "Keys" panel listing Everywhere (1-4 screens, ? keys, q quit, ^p palette),
    then the keys of the Home, Model, Train (pause and resume, stop, log y, +/- smoothing, zoom, new run,
    checkpoint, sample, start run, back to run) and Runs screens with what each does; "esc closes this panel"
    below (at 80x24 the panel scrolls)."""

    async def open_help(pilot):
        await settle(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(workspace), terminal_size=size, run_before=open_help)
