"""SVG snapshots of the Train screen: the new-run form and run dashboards, at 120x40 and 80x24.

Nothing in them depends on when or where they are taken: the runs are written by hand with fixed ids and times
(`write_run`), the form's cursor does not blink, and only times relative to a run's start are shown.
`uv run pytest tests/test_train_snapshots.py --snapshot-update` rewrites them after a deliberate change.
"""

from __future__ import annotations

import pytest
from test_train_screen import TrainTestApp, wait_for_final_read, wait_until, write_run
from textual.widgets import Input

SIZES = pytest.mark.parametrize("size", [(120, 40), (80, 24)], ids=["120x40", "80x24"])


@pytest.fixture(autouse=True)
def no_blink(monkeypatch):
    mounted = Input._on_mount

    def mount_without_blink(self, event):
        mounted(self, event)
        self.cursor_blink = False

    monkeypatch.setattr(Input, "_on_mount", mount_without_blink)


async def show_form(pilot) -> None:
    screen = pilot.app.screen
    screen.show_form()
    await wait_until(pilot, lambda: screen.form.ready, "the form")
    await pilot.pause()


def show_run(run_ref: str, overlay=(), theme: str | None = None):
    async def run_before(pilot) -> None:
        if theme:
            pilot.app.theme = theme
        screen = pilot.app.screen
        screen.show_run(run_ref, overlay)
        await wait_for_final_read(pilot, screen.dashboard)
        await pilot.pause(0.1)

    return run_before


@SIZES
def test_the_new_run_form(snap_compare, workspace, size):
    """The form: "New training run" with the Start run button on the first line and "Valid: ctrl+s …" under it,
    then the sections (Model and data, Optimizer, Hardware on the left; Batches and length, Evaluation and
    samples, Checkpoints and hooks on the right; one column at 80 wide) with every setting at its default
    (model nano-char selected, corpus builtin:pydocs, lr 3e-4, placeholders for the settings left to the model),
    and ^s Start run in the footer."""
    assert snap_compare(TrainTestApp(workspace), terminal_size=size, run_before=show_form)


def test_the_form_marks_a_negative_lr(snap_compare, workspace):
    """The form at 80x24 after typing -1 as lr: the line under the title says "✘ lr must be above 0, not -1.0."
    in the error colour, the lr field is tinted as invalid and the same sentence stands under it."""

    async def run_before(pilot) -> None:
        await show_form(pilot)
        pilot.app.screen.form.set_field("lr", "-1")
        await pilot.pause()

    assert snap_compare(TrainTestApp(workspace), terminal_size=(80, 24), run_before=run_before)


@SIZES
def test_a_finished_run(snap_compare, workspace, size):
    """The dashboard of a finished 600-step run. 120x40: the run id, model, corpus, device and parameters on
    top; "✓ finished", step 600 / 600, a full bar, 100% and "took 2m09s"; elapsed, tokens, tok/s, train, val
    and best val on the next line; the loss chart (faint raw train loss under its EMA 0.6, val loss as dots
    in the same blue, falling from 4 to about 1.5 over 600 steps); lr, grad norm and tokens/s as small charts
    beside it with a table of block 0 and 1 activation statistics; samples (step 50 to 600, the last in view)
    and events (start, checkpoints, a warning in the warning colour, finished) with times since the start
    at the bottom. 80x24: only the status line, the progress line, the loss chart and the keys."""
    app = TrainTestApp(workspace)
    write_run(workspace)
    assert snap_compare(app, terminal_size=size, run_before=show_run("latest"))


def test_a_finished_run_in_the_light_theme(snap_compare, workspace):
    """The same finished run at 120x40 in textual-light: every text, axis and status readable on white."""
    write_run(workspace)
    assert snap_compare(
        TrainTestApp(workspace), terminal_size=(120, 40), run_before=show_run("latest", theme="textual-light")
    )


def test_two_runs_overlaid(snap_compare, workspace):
    """Two finished runs on one loss chart at 120x40: 120000-tiny in blue and 130000-tiny in orange, each with
    its val dots in its colour; the legend names both; the title line ends with "vs 130000-tiny"."""
    write_run(workspace, "20250101-120000-tiny")
    write_run(workspace, "20250101-130000-tiny", seed=1, level=1.1)
    run_before = show_run("20250101-120000-tiny", ["20250101-130000-tiny"])
    assert snap_compare(TrainTestApp(workspace), terminal_size=(120, 40), run_before=run_before)


def test_a_failed_run_says_why(snap_compare, workspace):
    """A run that failed after 40 steps, at 80x24: "✘ failed" in the error colour, step 40 / 600, and under the
    progress line the error event's sentence (the corpus is shorter than one context window) in the error colour,
    above the loss chart of its 40 steps."""
    sentence = (
        "the corpus has 25 tokens for validation, fewer than one context window of 33; use a longer corpus or a "
        "shorter --context."
    )
    write_run(workspace, steps=40, status="failed", failure=sentence)
    assert snap_compare(TrainTestApp(workspace), terminal_size=(80, 24), run_before=show_run("latest"))
