"""The dashboard driven like a person would: keys, the Model input, the Runs table, help, palette, quitting."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from conftest import FIXED_NOW, settle
from textual.geometry import Region
from textual.widgets import DataTable, Input, Label, Static, Tree
from typer.testing import CliRunner

from smoltui.app import SmolApp, quit_message
from smoltui.cli import app as cli_app
from smoltui.engine.config import TrainConfig
from smoltui.screens.confirm import ConfirmDelete
from smoltui.screens.help import HelpScreen, declared_bindings
from smoltui.screens.home import HomeScreen
from smoltui.screens.model import ModelScreen
from smoltui.screens.runs import RunsScreen
from smoltui.screens.sample import SampleScreen
from smoltui.screens.train import TrainScreen
from smoltui.widgets.model_source import ModelSourceInput, find_model_folders

SIZE = (120, 40)


def make_app(workspace, **options) -> SmolApp:
    return SmolApp(workspace, device="cpu", clock=lambda: FIXED_NOW, **options)


def text_of(widget) -> str:
    """What a widget shows on screen, line by line, as plain text."""
    lines = widget.render_lines(Region(0, 0, *widget.outer_size))
    return "\n".join(line.text.rstrip() for line in lines)


def notifications(app) -> list[str]:
    return [notification.message for notification in app._notifications]


def cells(table: DataTable) -> list[list[str]]:
    return [[str(getattr(cell, "plain", cell)) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_number_keys_switch_screens(workspace, train_screen_stand_in):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, HomeScreen)
        for key, mode, screen_type in (
            ("2", "model", ModelScreen),
            ("4", "runs", RunsScreen),
            ("5", "sample", SampleScreen),
            ("1", "home", HomeScreen),
        ):
            await pilot.press(key)
            await pilot.pause()
            assert app.current_mode == mode
            assert isinstance(app.screen, screen_type)
        await pilot.press("3")
        await pilot.pause()
        assert app.current_mode == "train"


async def test_home_shows_workspace_and_recent_runs_and_opens_one(workspace, write_run, train_screen_stand_in):
    write_run("20300101-000000-tiny")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        facts = text_of(app.screen.query_one("#workspace-facts", Static))
        assert "auto" in facts and "notes.txt" in facts  # no torch yet: the device is "auto"
        table = app.screen.query_one("#recent-runs", DataTable)
        assert cells(table)[0][:2] == ["000000-tiny", "finished"]  # the date every run shares is left out
        assert cells(table)[0][-1] == "5m ago"
        table.focus()
        await pilot.press("enter")
        await pilot.pause()
        assert app.current_mode == "train"
        assert train_screen_stand_in == [("show_run", "20300101-000000-tiny", ())]
        await pilot.press("1", "t")
        await pilot.pause()
        assert train_screen_stand_in[-1] == ("show_form",)


async def test_load_a_model_folder_shows_its_summary_and_modules(workspace, tiny_model_folder):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "l")
        assert isinstance(app.focused, Input)
        await pilot.press(*str(tiny_model_folder), "enter")
        await settle(pilot)
        loaded = app.session_model
        assert loaded is not None and loaded.kind == "folder"
        summary = text_of(app.screen.query_one("#summary", Static))
        assert "GPT2LMHeadModel" in summary and "30,688" in summary and "99" in summary
        tree = app.screen.query_one("#modules", Tree)
        names = [node.data for node in tree.root.children]
        assert names == ["transformer", "lm_head"]
        assert any(child.data == "transformer.h" for child in tree.root.children[0].children)
        await pilot.press("e")
        await pilot.pause()
        assert tree.root.children[0].children[3].is_expanded  # transformer.h opened by "expand all"
        header = text_of(app.screen.query_one("#model-info", Label))
        assert header.strip() == "tiny-gpt2 · cpu fp32"
        assert str(tiny_model_folder) in app.recent_sources


@pytest.mark.parametrize(
    ("source", "words"),
    [("./no/such/model", "no such folder"), ("nano-chr", "unknown model"), ("", "no model given")],
)
async def test_a_bad_source_is_a_notification_and_the_app_keeps_running(workspace, source, words):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "l", *source, "enter")
        await settle(pilot)
        assert any(words in message for message in notifications(app)), notifications(app)
        assert app.session_model is None
        assert not app.screen.query_one("#load-spinner").display
        await pilot.press("4")  # still alive and answering keys
        await pilot.pause()
        assert app.current_mode == "runs"


async def test_an_unreachable_hub_and_corrupt_weights_are_notifications(
    workspace, tiny_model_folder, tmp_path, monkeypatch
):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))
    (tiny_model_folder / "model.safetensors").write_bytes(b"not a safetensors file")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "l", *"someone-unknown/no-such-model", "enter")
        await settle(pilot)
        source = app.screen.query_one("#source", Input)
        source.value = str(tiny_model_folder)
        source.focus()
        await pilot.press("enter")
        await settle(pilot)
        said = notifications(app)
        assert any("could not reach the Hugging Face Hub" in message for message in said), said
        assert any("is truncated or corrupt" in message for message in said), said
        assert app.session_model is None and app.is_running


async def test_an_unexpected_error_while_loading_is_a_notification(workspace, monkeypatch):
    import smoltui.engine.models as models

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(models, "load_model", broken)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "l", *"tiny", "enter")
        await settle(pilot)
        assert any("RuntimeError: disk on fire" in message for message in notifications(app))
        assert app.is_running


async def test_model_input_suggests_presets_runs_folders_and_the_current_step(
    workspace, write_run, tmp_path, monkeypatch
):
    from smoltui.engine.workbench import Workbench

    write_run("20300101-000000-tiny")
    (tmp_path / "models" / "mine").mkdir(parents=True)
    (tmp_path / "models" / "mine" / "config.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert find_model_folders(tmp_path) == ["models/mine"]
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)
        suggester = app.screen.query_one(ModelSourceInput).source_suggester
        assert await suggester.get_suggestion("nano") == "nano-char"
        assert await suggester.get_suggestion("run:2030") == "run:20300101-000000-tiny"
        assert await suggester.get_suggestion("models/") == "models/mine"
        assert await suggester.get_suggestion("step") is None  # no workbench history in this workspace yet
        with Workbench.open(workspace):
            pass  # from here on it has one: its current model is offered
        app.screen.query_one(ModelSourceInput).refresh_candidates()  # as when the field gains focus
        assert await suggester.get_suggestion("ste") == "step:current"


@pytest.mark.slow
async def test_a_real_finished_run_opens_from_the_runs_table(workspace, tmp_path, train_screen_stand_in):
    from smoltui.engine.runs import launch_run

    corpus = tmp_path / "notes.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog.\n" * 40)
    config = TrainConfig(
        model="tiny", corpus=str(corpus), context=32, batch_size=4, max_steps=5, warmup_steps=1,
        eval_every=5, eval_batches=2, sample_every=0, checkpoint_every=5,
    )  # fmt: skip
    handle = launch_run(config, workspace)
    assert handle.wait(timeout=120) == "finished"
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        row = cells(app.screen.query_one("#runs-table", DataTable))[0]
        assert row[1:5] == [handle.run_id[9:], "finished", "tiny", "5/5"]  # the date left out: the only run has it
        await pilot.press("enter")
        await pilot.pause()
        assert app.current_mode == "train"
        assert train_screen_stand_in == [("show_run", handle.run_id, ())]


async def test_marked_runs_open_overlaid(workspace, write_run, train_screen_stand_in):
    for index in range(3):
        write_run(f"2030010{index + 1}-000000-tiny", started=FIXED_NOW - 1000 + index)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        table = app.screen.query_one("#runs-table", DataTable)
        assert [row[1] for row in cells(table)] == [
            "20300103-000000-tiny",
            "20300102-000000-tiny",
            "20300101-000000-tiny",
        ]
        await pilot.press("down", "space", "up", "space", "down", "down", "space", "space")
        assert [row[0] for row in cells(table)] == ["●", "●", ""]
        await pilot.press("o")
        await pilot.pause()
        assert train_screen_stand_in == [("show_run", "20300102-000000-tiny", ("20300103-000000-tiny",))]


async def test_delete_asks_first_and_refuses_a_running_run(workspace, write_run):
    write_run("20300101-000000-tiny", started=FIXED_NOW - 100)
    write_run("20300102-000000-tiny", status="running", started=FIXED_NOW - 50)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("d")  # the cursor is on the newest run: the running one
        await settle(pilot)
        assert any("is running; stop it first" in message for message in notifications(app))
        assert (workspace / "runs" / "20300102-000000-tiny").is_dir()
        await pilot.press("down", "d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDelete)
        await pilot.press("n")
        await pilot.pause()
        assert (workspace / "runs" / "20300101-000000-tiny").is_dir()
        await pilot.press("d", "y")
        await settle(pilot)
        assert not (workspace / "runs" / "20300101-000000-tiny").exists()
        assert [row[1] for row in cells(app.screen.query_one("#runs-table", DataTable))] == ["000000-tiny"]


async def test_read_only_hides_delete(workspace, write_run):
    write_run("20300101-000000-tiny")
    app = make_app(workspace, read_only=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("d")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmDelete)
        assert (workspace / "runs" / "20300101-000000-tiny").is_dir()


async def test_help_lists_every_key_of_every_screen(workspace):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        shown = " ".join(text_of(app.screen.query_one("#help-keys Static", Static)).split())  # unwrapped
        for screen_class in (SmolApp, HomeScreen, ModelScreen, TrainScreen, RunsScreen, SampleScreen):
            for binding in declared_bindings(screen_class):
                assert (binding.tooltip or binding.description) in shown, binding
        for title in ("Home screen", "Model screen", "Train screen", "Runs screen", "Sample screen"):
            assert title in shown
        assert "+/- +/-" not in shown  # a key shown once, however many names it has
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


async def test_the_command_palette_finds_actions_by_name(workspace, write_run):
    write_run("20300101-000000-tiny")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Runs screen")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert app.current_mode == "runs"
        await settle(pilot)
        commands = [command.title for command in app.get_system_commands(app.screen)]
        assert len(commands) == len(set(commands))  # no action listed twice (Textual's "Keys" beside ours)
        for title in (
            "Home screen",
            "Model screen",
            "Keys of every screen",
            "Open",
            "Mark",
            "Compare",
            "Delete",
            "Refresh",
        ):
            assert title in commands
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"Delete")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmDelete)


async def test_the_command_palette_offers_the_real_train_screens_actions(workspace, write_run):
    write_run("20300101-000000-tiny")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        app.open_run("20300101-000000-tiny")
        await settle(pilot)
        assert isinstance(app.screen, TrainScreen)
        commands = [command.title for command in app.get_system_commands(app.screen)]
        for title in ("Log y", "Smooth", "Zoom", "New run"):
            assert title in commands
        assert "Pause" not in commands and "Stop" not in commands  # the run has finished: nothing to steer


async def test_the_header_follows_the_running_run(workspace, write_run):
    write_run("20300101-000000-tiny", status="running", losses=(4.0, 3.5, 3.25), max_steps=100)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.pause(0.3)
        header = text_of(app.screen.query_one("#run-info", Label))
        assert header.strip() == "running · step 3/100 · loss 3.2500 · 000000-tiny"


async def test_the_header_says_what_the_dashboard_says_and_nothing_before_it_knows(workspace, write_run):
    from smoltui.messages import RunProgressShown

    write_run("20300101-000000-tiny", status="running", losses=(4.0, 3.5, 3.25), max_steps=100)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        assert text_of(app.screen.query_one("#run-info", Label)).strip() == ""  # not "no run training" at first
        assert text_of(app.screen.query_one("#model-info", Label)).strip() == ""  # not "no model"
        await settle(pilot)
        await pilot.pause(0.3)
        app.post_message(RunProgressShown("20300101-000000-tiny", "running", 7, 100, 2.5))  # the dashboard, ahead
        await pilot.pause(0.3)
        header = text_of(app.screen.query_one("#run-info", Label)).strip()
        assert header == "running · step 7/100 · loss 2.5000 · 000000-tiny"  # a store read now is older
        await settle(pilot)
        assert any("7/100" in "".join(row) for row in cells(app.screen.query_one("#recent-runs")))


async def test_quitting_names_the_runs_that_keep_going(workspace, write_run):
    write_run("20300101-000000-tiny", status="running")
    assert "smoltui watch 20300101-000000-tiny" in quit_message(("20300101-000000-tiny",))
    assert quit_message(()) is None
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
    assert not app.is_running


def test_the_first_frame_needs_no_torch(workspace):
    """The app paints, lists runs and polls the header in a fresh interpreter without importing torch."""
    code = textwrap.dedent(
        """
        import asyncio, json, sys
        from smoltui.app import SmolApp

        async def main():
            app = SmolApp()
            async with app.run_test(size=(100, 30)) as pilot:
                await pilot.pause()
                await app.workers.wait_for_complete()
                await pilot.press("4")
                await app.workers.wait_for_complete()
                await pilot.pause()
            print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))))

        asyncio.run(main())
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_no_command_without_a_terminal_prints_the_help():
    result = CliRunner().invoke(cli_app, [])
    assert result.exit_code == 0
    assert "demo" in result.output and "watch" in result.output


def test_watch_of_a_missing_run_is_one_line_and_status_2(workspace):
    result = CliRunner().invoke(cli_app, ["watch", "nope"])
    assert result.exit_code == 2
    assert "no runs in" in result.output or "no run 'nope'" in result.output


async def test_a_run_opens_on_the_real_train_screen_under_the_same_status_line(workspace, write_run):
    """The contract with the Train screen: open_run switches to it and it shows the run, tabs and header on top."""
    from smoltui.screens.train import TrainScreen

    write_run("20300101-000000-tiny", losses=(4.0, 3.5, 3.0, 2.5, 2.25), val_loss=2.4)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TrainScreen)
        assert app.screen.view == "dashboard"
        tabs = [text_of(label).strip() for label in app.screen.query(".tab.-active")]
        assert tabs == ["3 Train"]
        await pilot.press("1")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


async def test_a_start_model_loads_into_the_session_after_the_first_frame(workspace):
    app = SmolApp(workspace, device="cpu", clock=lambda: FIXED_NOW, start_model="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "loading tiny" in text_of(app.screen.query_one("#model-info", Label)) or app.session_model
        await settle(pilot)
        assert app.session_model is not None and app.session.loaded is app.session_model
        assert text_of(app.screen.query_one("#model-info", Label)).strip() == "tiny · cpu fp32"
        assert app.recent_sources[0] == "tiny"


def test_every_screen_has_a_mode_and_a_number_key_of_its_own():
    from smoltui.screens import SCREENS

    assert len({entry.mode for entry in SCREENS}) == len(SCREENS)
    assert [entry.key for entry in SCREENS] == [str(number) for number in range(1, len(SCREENS) + 1)]
