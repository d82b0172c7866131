"""The Attention screen driven like a person, on the tiny preset with four heads: enter computes the prompt's maps,
the layer and head keys change the drawn cells (read back from the strips and compared with attention_maps),
the head average, the head grid opens a head, the text view shades each token by the chosen token's weights,
keys stop at the edges with a sentence, and no model, a cut prompt or a failed job is a sentence too."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import settle
from rich.color import Color
from test_app import make_app, text_of
from textual.widgets import Input, Static

from smoltui.engine.attention import attention_maps
from smoltui.engine.models import load_model
from smoltui.heatmap import MASKED, PALETTE, heat_levels
from smoltui.screens.attention import AttentionScreen
from smoltui.widgets.attention_grid import AttentionHeadGrid
from smoltui.widgets.attention_heatmap import AttentionHeatmap
from smoltui.widgets.token_view import TokenView

SIZE = (120, 40)
PROMPT = "the cat sat on the mat."
LEVEL_OF = {Color.parse(colour).triplet.hex: level for level, colour in enumerate(PALETTE)}


@pytest.fixture(scope="module")
def tiny4():
    """The tiny preset (2 layers, weights from seed 0) with four heads and room for 128 characters."""
    return load_model("tiny", device="cpu", overrides={"n_head": 4, "n_positions": 128})


async def open_attention(pilot, loaded=None, prompt: str | None = PROMPT) -> AttentionScreen:
    app = pilot.app
    if loaded is not None:
        app.session.use(loaded)
    await pilot.pause()
    await pilot.press("7")
    await pilot.pause()
    screen = app.screen
    assert isinstance(screen, AttentionScreen)
    if prompt is not None:
        await pilot.press("i")
        screen.query_one("#attn-prompt", Input).value = prompt
        await pilot.press("enter")
        await settle(pilot)
    return screen


def lines_in_view(heatmap: AttentionHeatmap) -> int:
    rows = (len(heatmap.tokens) - heatmap.first_key) * heatmap.zoom  # half-lines of the whole map
    return min(heatmap.map_lines, -(-rows // 2) - heatmap.top)


def drawn_levels(heatmap: AttentionHeatmap) -> np.ndarray:
    """The colour levels the heatmap drew, read back from its strips: one row per half-line in view, one column per
    cell (a weight is `zoom` cells each way), MASKED where nothing is drawn."""
    keys = (len(heatmap.tokens) - heatmap.first_key) * heatmap.zoom
    rows = []
    for y in range(lines_in_view(heatmap)):
        cells = heatmap.render_line(y)._segments[1:]  # after the query labels
        upper, lower = [], []
        for segment in cells[:keys]:
            colour = segment.style.color.triplet.hex if segment.style.color else None
            back = segment.style.bgcolor.triplet.hex if segment.style.bgcolor else None
            if segment.text == "▀":
                upper.append(LEVEL_OF[colour])
                lower.append(LEVEL_OF.get(back, MASKED))
            elif segment.text == "▄":
                upper.append(MASKED)
                lower.append(LEVEL_OF[colour])
            else:
                upper.append(MASKED)
                lower.append(MASKED)
        rows += [upper, lower]
    return np.array(rows)


def expected_levels(heatmap: AttentionHeatmap, matrix: np.ndarray) -> np.ndarray:
    """What drawn_levels should read for `matrix` (T, T): its levels on the heatmap's scale, zoomed, in view."""
    first, zoom, top = heatmap.first_key, heatmap.zoom, heatmap.top
    levels = heat_levels(matrix[first:, first:], high=float(matrix[1:].max()))
    zoomed = levels.repeat(zoom, axis=0).repeat(zoom, axis=1)  # (K·zoom, K·zoom)
    if len(zoomed) % 2:  # an odd last row has nothing under it
        zoomed = np.vstack([zoomed, np.full((1, zoomed.shape[1]), MASKED, dtype=zoomed.dtype)])
    return zoomed[2 * top : 2 * (top + lines_in_view(heatmap))]


def status(screen) -> str:
    return str(screen.query_one("#attn-status", Static).render())


async def test_enter_computes_the_maps_and_the_norms_of_the_prompt(workspace, tiny4):
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, tiny4)
        expected = attention_maps(tiny4.model, tiny4.tokenizer, PROMPT)
        assert screen.maps is not None and screen.maps.tokens == expected.tokens
        np.testing.assert_allclose(screen.maps.weights, expected.weights, atol=1e-6)
        assert screen.inspection.activations is not None
        heatmap = screen.query_one(AttentionHeatmap)
        assert heatmap.zoom == 2  # 23 tokens fit twice as large: one query per line, two cells per key
        assert heatmap.border_title.startswith("Layer 0/1 · head 0/3")
        np.testing.assert_array_equal(drawn_levels(heatmap), expected_levels(heatmap, expected.weights[0, 0]))
        layers = text_of(screen.query_one("#attn-layers"))
        assert "entropy" in layers and "norm" in layers and " 0▶" in layers and " 1 " in layers


async def test_layer_and_head_keys_change_the_drawn_cells(workspace, tiny4):
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, tiny4)
        heatmap = screen.query_one(AttentionHeatmap)
        before = drawn_levels(heatmap)
        await pilot.press("right_square_bracket", "right_curly_bracket", "right_curly_bracket")
        await pilot.pause()
        assert (screen.layer_index, screen.head) == (1, 2)
        assert heatmap.border_title.startswith("Layer 1/1 · head 2/3")
        after = drawn_levels(heatmap)
        np.testing.assert_array_equal(after, expected_levels(heatmap, screen.maps.weights[1, 2]))
        assert not np.array_equal(before, after)
        assert "1▶" in text_of(screen.query_one("#attn-layers"))  # the side panel marks the layer shown
        await pilot.press("left_curly_bracket")
        await pilot.pause()
        np.testing.assert_array_equal(drawn_levels(heatmap), expected_levels(heatmap, screen.maps.weights[1, 1]))


async def test_a_toggles_the_head_average(workspace, tiny4):
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, tiny4)
        heatmap = screen.query_one(AttentionHeatmap)
        await pilot.press("a")
        await pilot.pause()
        assert screen.head is None and "average of heads" in heatmap.border_title
        average = screen.maps.head_average[0]
        np.testing.assert_array_equal(drawn_levels(heatmap), expected_levels(heatmap, average))
        await pilot.press("a")
        await pilot.pause()
        assert screen.head == 0


async def test_the_head_grid_shows_every_head_and_enter_opens_the_one_under_the_cursor(workspace, tiny4):
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, tiny4)
        await pilot.press("right_curly_bracket", "g")
        await pilot.pause()
        grid = screen.query_one(AttentionHeadGrid)
        assert grid.cursor == 1  # on the head the heatmap showed
        await pilot.press("left")
        shown = text_of(grid)
        entropy = screen.maps.head_entropy[0]
        for head in range(4):
            assert f"h{head} H {entropy[head]:.2f}" in shown
        assert "avg H" in shown
        await pilot.press("right", "right", "right", "right", "right")  # stops at the average, the last
        assert grid.cursor == 4
        await pilot.press("left", "left")
        await pilot.press("enter")
        await pilot.pause()
        assert screen.view == "map" and screen.head == 2
        heatmap = screen.query_one(AttentionHeatmap)
        np.testing.assert_array_equal(drawn_levels(heatmap), expected_levels(heatmap, screen.maps.weights[0, 2]))


async def test_the_text_view_shades_each_token_by_the_chosen_tokens_weights(workspace, tiny4):
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, tiny4)
        await pilot.press("right_curly_bracket", "t", "left", "left")
        await pilot.pause()
        view = screen.query_one("#attn-text", TokenView)
        count = len(PROMPT)
        assert screen.chosen_token == count - 3 and view.cursor == count - 3
        weights = screen.maps.weights[0, 1, count - 3]  # (T,) what token T-3 attends to, head 1
        levels = heat_levels(weights[None, :], causal=False)[0]
        for key in range(count):
            back = view.token_style(key).bgcolor
            if key > count - 3:
                assert back is None  # after the chosen token: not looked at
            else:
                assert back.triplet.hex == Color.parse(PALETTE[levels[key]]).triplet.hex
        await pilot.press(*["left"] * (count + 5))  # stops at the first token
        assert screen.chosen_token == 0
        await pilot.click(view, offset=(2 + 4, 1))  # the border and the padding, then "the cat": its "c"
        assert screen.chosen_token == 4 and view.cursor == 4


async def test_keys_stop_at_the_edges_with_a_sentence(workspace, tiny4):
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, tiny4)
        await pilot.press("left_square_bracket")
        await pilot.pause()
        assert screen.layer_index == 0
        assert status(screen) == "layer -1 does not exist; this model has layers 0 to 1."
        await pilot.press(*["right_square_bracket"] * 3)
        await pilot.pause()
        assert screen.layer_index == 1
        assert status(screen) == "layer 2 does not exist; this model has layers 0 to 1."
        await pilot.press(*["right_curly_bracket"] * 5)
        await pilot.pause()
        assert screen.head == 3 and status(screen) == "head 4 does not exist; this model has heads 0 to 3."


async def test_a_long_prompt_scrolls_its_queries_and_labels_both_axes(workspace, tiny4):
    prompt = "The quick brown fox jumps over the lazy dog. A stitch in time saves nine. Hello!"
    assert len(prompt) == 80
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, tiny4, prompt)
        heatmap = screen.query_one(AttentionHeatmap)
        first, end = heatmap.shown_queries
        assert heatmap.zoom == 1 and end == 80 and first > 0  # the last queries first: they see the whole prompt
        lines = text_of(heatmap).splitlines()
        ticks = next(index for index, line in enumerate(lines) if "keys ↓" in line)
        assert "70" in lines[ticks] and "lazy·dog." in lines[ticks + 1]  # the keys along the bottom, under ticks
        await pilot.press(*["up"] * 40)  # stops at the first queries
        assert heatmap.top == 0 and heatmap.shown_queries[0] == heatmap.first_key
        np.testing.assert_array_equal(drawn_levels(heatmap), expected_levels(heatmap, screen.maps.weights[0, 0]))


async def test_without_a_model_the_screen_says_how_to_load_one(workspace):
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, prompt=None)
        assert "No model is loaded: load one on the Model screen (key 2)" in text_of(screen.query_one("#attn-message"))
        await pilot.press("right_square_bracket", "g")  # nothing to move through
        assert screen.maps is None
        await pilot.press("i")
        await pilot.press(*"hello", "enter")
        await settle(pilot)
        assert status(screen).startswith("No model is loaded")


async def test_a_prompt_longer_than_the_context_is_cut_with_a_note(workspace):
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, load_model("tiny", device="cpu"), "ab" * 50)
        assert len(screen.maps.tokens) == 64
        assert "The prompt has 100 tokens but this model reads 64 at most" in status(screen)


async def test_a_prompt_past_the_screens_limit_keeps_its_last_tokens_with_a_note(workspace):
    from smoltui.screens.attention_jobs import MAX_TOKENS

    text = "".join(chr(ord("a") + i % 26) for i in range(MAX_TOKENS + 44))  # one token per character
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        roomy = load_model("tiny", device="cpu", overrides={"n_positions": 512})
        screen = await open_attention(pilot, roomy, text)
        assert "".join(screen.maps.tokens) == text[-MAX_TOKENS:]
        assert status(screen) == f"The prompt has {len(text)} tokens; the Attention screen reads its last {MAX_TOKENS}."


async def test_a_failed_job_is_a_sentence_in_the_status_line(workspace, tiny4):
    """An empty prompt with a tokenizer that has no start token fails in the job (an architecture the adapter does
    not know never gets this far: load_model refuses it, and the Model screen says so)."""
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, tiny4, "")
        assert screen.maps is None
        assert status(screen) == "the prompt is empty and this tokenizer has no start token; type a prompt."
        await pilot.press("i")
        await pilot.press(*"ab", "enter")  # the next prompt clears the sentence
        await settle(pilot)
        assert screen.maps is not None and status(screen) == ""


async def test_s_and_the_palette_save_the_screen_as_svg(workspace, tiny4):
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, tiny4)
        titles = [command.title for command in pilot.app.get_system_commands(screen)]
        assert "Save SVG" in titles
        await pilot.press("s")
        saved: list = []
        for _ in range(100):  # a thread writes the file
            await pilot.pause(0.05)
            saved = list((workspace / "screenshots").glob("*.svg"))
            if saved:
                break
        assert len(saved) == 1 and "Attention" in saved[0].read_text()


@pytest.mark.slow
async def test_b_loads_the_bundled_smollm2_and_enter_shows_its_attention(workspace):
    """The bundled SmolLM2-135M-Instruct (30 layers, 9 query heads sharing 3 key-value heads), loaded by b."""
    async with make_app(workspace).run_test(size=SIZE) as pilot:
        screen = await open_attention(pilot, prompt=None)
        await pilot.press("b")
        await settle(pilot)
        assert pilot.app.session_model is not None
        await pilot.press("i")
        screen.query_one("#attn-prompt", Input).value = "The capital of France is"
        await pilot.press("enter")
        await settle(pilot)
        maps = screen.maps
        assert maps.weights.shape[:2] == (30, 9)
        np.testing.assert_allclose(maps.weights.sum(-1), 1.0, atol=1e-4)  # every query row
        await pilot.press("g")
        await pilot.pause()
        assert text_of(screen.query_one(AttentionHeadGrid)).count(" H ") == 10  # nine heads and the average
        layers = text_of(screen.query_one("#attn-layers"))
        assert "\n29 " in layers and screen.inspection.activations.residual_norm.shape[0] == 31
