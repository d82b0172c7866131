"""The Lens screen driven like a person, on a tiny random Llama with a BPE tokenizer: the grid grows one column per
generated token and equals the engine's, play/pause and the step keys replay the stored columns, the cursor and a
click show a cell's top tokens, the mode key changes the legend, a run's checkpoints step by, a bad target or a
run without checkpoints is one sentence, and the view saves as an SVG picture."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import settle, type_at_once
from test_app import make_app, notifications, text_of
from textual.widgets import Input, Static
from tiny_lms import bpe_tokenizer, tiny_lm, tiny_lm_folder, write_checkpoints

from smoltui.engine.lens import LensGrown, lens_while_generating
from smoltui.engine.models import load_model
from smoltui.formatting import fit_text, visible
from smoltui.lens_look import CELL, LABEL, MARK
from smoltui.screens.lens import LensScreen
from smoltui.screens.lens_jobs import TOP_K

SIZE = (120, 40)
PROMPT = "The quick brown fox"
NEW_TOKENS = 6


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return load_model(str(tiny_lm_folder("llama", tmp_path_factory.mktemp("llama"))), device="cpu")


def expected_grid(loaded, prompt=PROMPT, new_tokens=NEW_TOKENS, target=None):
    """The engine's own grid after generating `new_tokens`, as the screen's job computes it."""
    grids = [
        event.grid
        for event in lens_while_generating(
            loaded.model, loaded.tokenizer, prompt, max_new_tokens=new_tokens, target=target, top_k=TOP_K
        )
        if isinstance(event, LensGrown)
    ]
    return grids[-1]


async def open_lens(pilot, loaded=None) -> LensScreen:
    if loaded is not None:
        pilot.app.session.use(loaded)
    await pilot.pause()
    await pilot.press("6")
    await pilot.pause()
    assert isinstance(pilot.app.screen, LensScreen)
    return pilot.app.screen


async def compute(pilot, screen, prompt=PROMPT, *, new_tokens=NEW_TOKENS, target="") -> None:
    screen.query_one("#generate", Input).value = str(new_tokens)
    screen.query_one("#target", Input).value = target
    field = screen.query_one("#prompt", Input)
    field.value = prompt
    field.focus()
    await pilot.press("enter")
    await settle(pilot)
    await pilot.press("escape")  # leave the field: the keys work again
    await pilot.pause()


def drawn(screen) -> list[str]:
    view = screen.grid_view
    return [view.render_line(y).text for y in range(view.content_size.height)]


def said(screen, selector: str) -> str:
    return " ".join(text_of(screen.query_one(selector, Static)).split())


def same_grid(shown, expected) -> None:
    for name in ("token_ids", "next_ids", "top_ids"):
        np.testing.assert_array_equal(getattr(shown, name), getattr(expected, name))
    np.testing.assert_allclose(shown.top_probs, expected.top_probs, rtol=1e-5)


async def test_enter_grows_the_grid_one_column_per_token_as_the_engine_computes_it(workspace, llama):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot, llama)
        await compute(pilot, screen)
        expected = expected_grid(llama)
        prompt_length = len(llama.tokenizer(PROMPT)["input_ids"])
        assert len(screen.film.frames) == NEW_TOKENS  # the prompt, then one more column per token after the first
        assert [frame.columns for frame in screen.film.frames] == list(range(prompt_length, prompt_length + 6))
        await pilot.press("end")
        await pilot.pause()
        same_grid(screen.shown_grid, expected)
        lines = drawn(screen)
        rows = expected.rows
        assert [line[:LABEL].strip() for line in lines[: rows + 2]] == [
            "next",
            *(expected.row_label(row) for row in reversed(range(rows))),
            "input",
        ]
        shown = screen.grid_view.columns_shown
        first = expected.positions - shown  # the cursor follows the newest column: the last ones are in sight
        for line, row in zip(lines[1 : rows + 1], reversed(range(rows)), strict=True):  # the final layer on top
            for column, position in enumerate(range(first, expected.positions)):
                cell = line[LABEL + column * CELL : LABEL + (column + 1) * CELL]
                top = expected.top_ids[row, position, 0]
                mark = MARK if top == expected.next_ids[position] else " "
                assert cell == fit_text(visible(expected.text(top)), CELL - 2).ljust(CELL - 2) + mark + " "
        assert f"positions {first}-{expected.positions - 1} of {expected.positions}" in screen.grid_view.border_subtitle
        assert f"{NEW_TOKENS}/{NEW_TOKENS}" in screen.grid_view.border_title


async def test_space_pauses_and_plays_and_the_step_keys_replay_the_stored_columns(workspace, llama):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot, llama)
        await compute(pilot, screen)
        generated = screen.film.generated
        await pilot.press("home")  # pauses on the first frame
        assert not screen.playing and screen.frame == 0
        await pilot.pause(0.4)
        assert screen.frame == 0
        await pilot.press("space")
        assert screen.playing
        await pilot.pause(0.5)  # 8 frames a second
        assert screen.frame > 0
        await pilot.press("space")
        assert not screen.playing
        await pilot.press("end", "comma", "comma")
        assert screen.frame == NEW_TOKENS - 3
        same_grid(screen.shown_grid, generated.columns(0, screen.film.frames[-3].columns))
        same_grid(screen.grid_view.grid, screen.shown_grid)  # the view draws that very frame
        await pilot.press("full_stop")
        same_grid(screen.grid_view.grid, generated.columns(0, screen.film.frames[-2].columns))
        assert screen.film.generated is generated  # nothing was computed again
        await pilot.press("plus", "plus")
        assert "32 frames/s" in said(screen, "#lens-status")


async def test_the_cursor_and_a_click_show_a_cells_top_tokens_in_the_side_panel(workspace, llama):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot, llama)
        await compute(pilot, screen, new_tokens=0)
        grid = screen.shown_grid
        view = screen.grid_view
        assert view.cursor == (grid.rows - 1, grid.positions - 1)  # the model's own prediction at the end
        await pilot.press("down", "left")
        assert view.cursor == (grid.rows - 2, grid.positions - 2)
        panel = said(screen, "#lens-cell")
        row, position = view.cursor
        assert f"{grid.row_label(row)} · position {position}" in panel
        for token, probability in zip(grid.top_ids[row, position, :3], grid.top_probs[row, position, :3], strict=True):
            assert f"{grid.text(token)!r}"[:11] in panel and f"{probability:.1%}" in panel
        assert f"entropy {grid.entropy[row, position]:.3f} nats" in panel
        await pilot.click(view, offset=(1 + LABEL + CELL * 1 + 2, 1 + 1 + grid.rows - 1))  # the embeddings' 2nd cell
        assert view.cursor == (0, 1)
        assert "embeddings · position 1" in said(screen, "#lens-cell")


async def test_the_mode_key_cycles_the_legend_and_a_target_colours_by_its_rank(workspace, llama):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot, llama)
        await compute(pilot, screen, new_tokens=0)
        assert "m probability:" in said(screen, "#lens-legend") and "≥80%" in said(screen, "#lens-legend")
        await pilot.press("m")
        assert "set a target token (t)" in said(screen, "#lens-legend")
        await pilot.press("m")
        assert "entropy (nats)" in said(screen, "#lens-legend")
        await pilot.press("m")
        assert "KL to final (nats)" in said(screen, "#lens-legend")
        await pilot.press("m", "m")  # around to target rank again
        await compute(pilot, screen, new_tokens=0, target=" brown")
        grid = screen.shown_grid
        assert grid.target_id == bpe_tokenizer()(" brown", add_special_tokens=False)["input_ids"][0]
        assert "target rank" in said(screen, "#lens-legend") and "≥10k" in said(screen, "#lens-legend")
        rank = int(grid.target_rank[grid.rows - 1, grid.positions - 1]) + 1
        assert f"target ' brown': rank {rank:,}" in said(screen, "#lens-cell")


async def test_a_target_of_two_tokens_says_how_it_splits(workspace, llama):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot, llama)
        await compute(pilot, screen, new_tokens=0, target="quick brown")
        note = said(screen, "#lens-note")
        assert "the target 'quick brown' is not one token of this tokenizer but" in note
        assert screen.film.frames == []  # nothing computed
        assert not any("Traceback" in message for message in notifications(app))


async def test_keys_typed_right_behind_a_field_key_go_into_that_field(workspace, llama):
    """t then "m" and ",": the target's text, not the mode key and a step back; escape then "m" is the mode key."""
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot, llama)
        mode = screen.mode
        await type_at_once(pilot, "t", "m", ",", "escape", "m")
        assert screen.query_one("#target", Input).value == "m,"
        assert screen.mode != mode  # the last m, after escape, cycled the colouring


async def test_a_prompt_longer_than_the_context_is_cut_with_the_engines_note(workspace, llama):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot, llama)
        await compute(pilot, screen, "fox " * 80, new_tokens=2)
        assert "but this model reads 64 at most" in said(screen, "#lens-note")
        assert screen.shown_grid.positions <= 64


async def test_without_a_model_the_screen_says_how_to_load_one(workspace):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot)
        assert "No model is loaded: load one on the Model screen (key 2)" in drawn(screen)[0]
        await compute(pilot, screen)
        assert "No model is loaded" in said(screen, "#lens-note")


async def test_stepping_through_a_runs_checkpoints(workspace, write_run, tmp_path):
    run_dir = write_run("20300101-000000-lens")
    write_checkpoints(run_dir, tiny_lm("llama", tmp_path / "llama"), bpe_tokenizer())
    write_run("20300101-000000-bare")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot)
        screen.query_one("#prompt", Input).value = PROMPT
        run = screen.query_one("#run", Input)
        run.value = "20300101-000000-lens"
        run.focus()
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("escape", "home")
        assert [frame.title for frame in screen.film.frames] == ["checkpoint step 10", "checkpoint step 20"]
        assert run.suggester is not None and await run.suggester.get_suggestion("20300101-000000-l") == run.value
        assert "run 20300101-000000-lens · 1/2 checkpoint step 10" in screen.grid_view.border_title
        first = screen.shown_grid
        await pilot.press("full_stop")
        assert "2/2 checkpoint step 20" in screen.grid_view.border_title
        assert not np.allclose(first.top_probs, screen.shown_grid.top_probs)  # two different models
        run.value = "20300101-000000-bare"
        run.focus()
        await pilot.press("enter")
        await settle(pilot)
        assert "run 20300101-000000-bare has no checkpoints yet" in said(screen, "#lens-note")


async def test_s_saves_the_view_as_an_svg_picture_in_the_workspace(workspace, llama):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_lens(pilot, llama)
        await compute(pilot, screen, new_tokens=0)
        await pilot.press("s")
        pictures = []
        for _ in range(100):  # a thread writes the file
            await pilot.pause(0.05)
            pictures = list((workspace / "screenshots").glob("*.svg"))
            if pictures:
                break
        assert len(pictures) == 1 and pictures[0].name.startswith("smoltui-lens-")
        assert "embeddings" in pictures[0].read_text()


async def test_the_cursor_scrolls_a_wide_grid_and_keeps_in_sight(workspace, llama):
    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_lens(pilot, llama)
        await compute(pilot, screen, "The quick brown fox jumps over the lazy dog", new_tokens=0)
        view = screen.grid_view
        positions, across = screen.shown_grid.positions, view.columns_shown
        assert positions > across and view.first_position == positions - across  # the newest columns in sight
        await pilot.press(*["left"] * (positions - 1))
        assert view.cursor[1] == 0 and view.first_position == 0
        assert view.border_subtitle == f"positions 0-{across - 1} of {positions}"
        await pilot.press("right")
        assert view.first_position == 0  # in sight already: no scroll


def test_the_probability_mode_colours_as_the_sample_screen_does():
    from smoltui.formatting import probability_colour
    from smoltui.lens_look import MODES_BY_NAME

    mode = MODES_BY_NAME["probability"]
    values = np.array([0.0, 0.005, 0.01, 0.049, 0.05, 0.2, 0.5, 0.79, 0.8, 1.0])
    assert [mode.colours[band] for band in mode.bands(values)] == [probability_colour(v) for v in values]
    ranks = MODES_BY_NAME["target rank"]
    assert [ranks.labels[band] for band in ranks.bands(np.array([0, 1, 9, 10, 99_999]))] == [
        "top", "<10", "<10", "<100", "≥10k"
    ]  # fmt: skip


async def test_a_deep_model_scrolls_its_layers_with_the_cursor(workspace, tmp_path):
    folder = tmp_path / "deep"
    tiny_lm("llama", folder, num_hidden_layers=24)
    bpe_tokenizer().save_pretrained(folder)
    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_lens(pilot, load_model(str(folder), device="cpu"))
        await compute(pilot, screen, "fox", new_tokens=0)
        view = screen.grid_view
        down = view.layers_shown
        assert screen.shown_grid.rows == 25 > down and view.first_line == 0
        assert f"layer {24 - down} to 23 of 25 rows" in view.border_subtitle
        assert drawn(screen)[1].startswith("layer 23")
        await pilot.press(*["down"] * 24)
        assert view.cursor[0] == 0 and view.first_line == 25 - down
        assert drawn(screen)[down].startswith("embeddings") and drawn(screen)[down + 1].startswith("input")
        assert f"embeddings to {down - 2} of 25 rows" in view.border_subtitle
