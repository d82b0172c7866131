"""The Model screen driven like a person: a failed load's reason stays on screen, enter takes the greyed
completion, a run's checkpoint names its run and step, a tied LM head says so."""

from __future__ import annotations

import pytest
from test_app import SIZE, make_app, settle, text_of
from textual.color import Color
from textual.widgets import Label, Static, Tree

from smoltui.engine import checkpoints


def flat(text: str) -> str:
    """Screen text with its line breaks and padding folded to single spaces (a panel wraps long values)."""
    return " ".join(text.split())


def save_gpt2(folder, **config_changes):
    """A 2-layer, 32-wide GPT-2 with the char tokenizer saved in `folder`; returns (model, tokenizer)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from smoltui.engine.tokenizers import char_tokenizer

    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=99, **config_changes)
    model, tokenizer = GPT2LMHeadModel(config), char_tokenizer()
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return model, tokenizer


def load_text(app) -> Label:
    return app.screen.query_one("#load-text", Label)


async def test_a_failed_load_keeps_its_reason_on_screen_in_the_error_colour_until_the_next_load(workspace):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "l", *"./no/such/model", "enter")
        await settle(pilot)
        await pilot.pause(11)  # longer than the notification lasts: the reason must outlive it
        said = flat(text_of(load_text(app)))
        assert "no such folder: ./no/such/model; check the path." in said, said
        error = Color.parse(app.theme_variables["text-error"])
        assert load_text(app).styles.color == error
        assert not any("no such folder" in str(n.message) for n in app._notifications)  # the toast is gone

        await pilot.press("4", "2")  # away and back: still there
        await pilot.pause()
        assert "no such folder" in flat(text_of(load_text(app)))

        await pilot.press("l", "ctrl+u", *"tiny", "enter")
        await settle(pilot)
        said = flat(text_of(load_text(app)))
        assert said.startswith("loaded tiny · preset (fresh weights)") and "no such folder" not in said
        assert load_text(app).styles.color != error


async def test_enter_loads_the_greyed_completion_not_only_what_was_typed(workspace, tmp_path, monkeypatch):
    save_gpt2(tmp_path / "tiny-gpt2")
    monkeypatch.chdir(tmp_path)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await settle(pilot)  # the folder scan finds tiny-gpt2
        await pilot.press("l", *"tiny-")
        await pilot.pause()
        assert "tiny-gpt2" in text_of(app.screen.query_one("#source"))  # "gpt2" shown greyed after the cursor
        await pilot.press("enter")
        await settle(pilot)
        assert app.session_model is not None and app.session_model.source == "tiny-gpt2"
        assert app.session_model.kind == "folder"

        # a source typed in full is loaded as typed, though a longer one starts with it
        await pilot.press("l", "ctrl+u", *"tiny")
        await pilot.pause()
        await pilot.press("enter")
        await settle(pilot)
        assert app.session_model.source == "tiny" and app.session_model.kind == "preset"


async def test_a_run_checkpoint_names_its_run_and_step(workspace, write_run):
    run_dir = write_run("20300101-000000-tiny")
    model, tokenizer = save_gpt2(workspace.parent / "source-model")
    for step in (5, 10):
        checkpoints.save_checkpoint(run_dir, step, model, tokenizer, {"step": step})
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "l", *"run:20300101-000000-tiny@5", "enter")
        await settle(pilot)
        summary = flat(text_of(app.screen.query_one("#summary", Static)))
        assert "run 20300101-000000-tiny" in summary and "checkpoint step 5" in summary, summary
        assert "· run 20300101-000000-tiny, checkpoint step 5 ·" in flat(text_of(load_text(app)))

        await pilot.press("l", "ctrl+u", *"run:latest", "enter")
        await settle(pilot)
        summary = flat(text_of(app.screen.query_one("#summary", Static)))
        assert "checkpoint step 10" in summary and "step 5" not in summary, summary


@pytest.mark.parametrize(("tied", "head_shows"), [(True, "tied to the embedding"), (False, "3,168")])
async def test_the_lm_head_says_when_it_is_tied_to_the_embedding(workspace, tmp_path, tied, head_shows):
    folder = tmp_path / "gpt2"
    save_gpt2(folder, tie_word_embeddings=tied)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "l", *str(folder), "enter")
        await settle(pilot)
        tree = app.screen.query_one("#modules", Tree)
        (head,) = [node for node in tree.root.children if node.data == "lm_head"]
        assert str(head.label).endswith(head_shows), str(head.label)
        assert str(head.label).endswith("  0") is False
        summary = flat(text_of(app.screen.query_one("#summary", Static)))
        assert f"LM head {head_shows}" in summary, summary


async def test_a_model_loaded_elsewhere_is_described_here_too(workspace):
    from conftest import FIXED_NOW

    from smoltui.app import SmolApp

    app = SmolApp(workspace, device="cpu", clock=lambda: FIXED_NOW, start_model="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await pilot.press("2")
        await settle(pilot)
        summary = flat(text_of(app.screen.query_one("#summary")))
        assert "GPT2LMHeadModel" in summary and "no model loaded yet" not in summary
