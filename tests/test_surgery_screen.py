"""The Surgery screen's weights viewer driven like a person, on a tiny random GPT-2 (tied embeddings) in the model
session: the table lists every tensor once with the engine's numbers, the selected tensor's heatmap, histogram and
singular values are the engine's, the keys sort, reverse, filter and switch the heatmap to signed means, a bad
filter is one sentence, weights edited in place show after refresh_weights, and with no model a sentence says how
to load one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import settle
from test_app import make_app, text_of
from textual.widgets import Input, Static
from tiny_lms import tiny_lm_folder

from smoltui.engine.models import load_model
from smoltui.engine.weights import downsample, find_tensor, tensor_table, top_singular_values
from smoltui.screens.surgery import SurgeryScreen
from smoltui.screens.weights_view import TOP_SINGULAR

SIZE = (120, 40)


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    return load_model(str(tiny_lm_folder("gpt2", tmp_path_factory.mktemp("gpt2"))), device="cpu")


async def settled(pilot) -> None:
    """Until the table and the selected tensor's views are computed and drawn."""
    await settle(pilot)
    while pilot.app.screen.weights_busy or pilot.app.session.busy:
        await pilot.pause(0.05)
    await pilot.pause()


async def open_surgery(pilot, loaded=None) -> SurgeryScreen:
    if loaded is not None:
        pilot.app.session.use(loaded)
    await pilot.pause()
    await pilot.press("8")
    await settled(pilot)
    assert isinstance(pilot.app.screen, SurgeryScreen)
    return pilot.app.screen


def listed(screen) -> list[str]:
    return [stats.name for stats in screen.weights_table.shown]


def said(screen, selector: str) -> str:
    return " ".join(text_of(screen.query_one(selector, Static)).split())


async def test_the_table_lists_every_tensor_once_with_the_engines_numbers(workspace, gpt2):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot, gpt2)
        expected = tensor_table(gpt2.model)
        assert screen.weights == expected
        table = screen.weights_table
        assert [str(key.value) for key in table.rows] == [stats.name for stats in expected]
        assert table.row_count == len(dict(gpt2.model.named_parameters()))  # the tied head is not a row of its own
        first = [str(getattr(cell, "plain", cell)) for cell in table.get_row_at(0)]
        assert first[0] == "transformer.wte.weight = lm_head.weight"
        assert first[1] == "{}×{}".format(*gpt2.model.transformer.wte.weight.shape)
        assert f"Tensors · {gpt2.source.split('/')[-1]} · {len(expected)}" in table.border_title


async def test_the_selected_tensor_shows_its_heatmap_histogram_and_singular_values(workspace, gpt2):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot, gpt2)
        for name in ("transformer.wte.weight", "transformer.wpe.weight"):
            assert screen.weights_table.selected.name == name
            tensor = find_tensor(gpt2.model, name)
            heatmap = screen.heatmap
            rows, cols = heatmap.cells_wanted
            np.testing.assert_allclose(heatmap.matrix, downsample(tensor, rows, cols, mode="abs"))
            assert heatmap.matrix.shape == (min(rows, tensor.shape[0]), min(cols, tensor.shape[1]))
            assert name in heatmap.border_title
            lines = [heatmap.render_line(y).text for y in range(heatmap.content_size.height)]
            drawn_lines = (heatmap.matrix.shape[0] + 1) // 2
            assert all(line[: heatmap.matrix.shape[1]] == "▀" * heatmap.matrix.shape[1] for line in lines[:drawn_lines])
            assert lines[drawn_lines].startswith("mean |w| per cell: 0 ")
            histogram = said(screen, "#weight-histogram")
            assert "█" in histogram and f"{tensor.numel():,} values" in histogram
            singular = said(screen, "#weight-singular")
            values = top_singular_values(tensor, TOP_SINGULAR)
            assert f"σ1 {values[0]:.4g}" in singular and "σ2" in singular
            await pilot.press("down")
            await settled(pilot)


async def test_a_vector_has_a_heatmap_line_and_no_singular_values(workspace, gpt2):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot, gpt2)
        await pilot.press("slash", *"ln_1.bias", "enter")
        await settled(pilot)
        assert listed(screen) == ["transformer.h.0.ln_1.bias", "transformer.h.1.ln_1.bias"]
        assert screen.heatmap.matrix.shape[0] == 1
        assert "a vector: no singular values" in said(screen, "#weight-singular")


async def test_keys_sort_reverse_filter_and_switch_to_signed_means(workspace, gpt2):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot, gpt2)
        stats = screen.weights
        await pilot.press("o")  # by name
        assert listed(screen) == sorted(row.name for row in stats)
        await pilot.press("o")  # by size, largest first
        assert [row.numel for row in screen.weights_table.shown] == sorted((row.numel for row in stats), reverse=True)
        assert "by size" in screen.weights_table.border_subtitle
        await pilot.press("r")
        assert [row.numel for row in screen.weights_table.shown] == sorted(row.numel for row in stats)
        assert "reversed" in screen.weights_table.border_subtitle

        await pilot.press("slash", *"H\\.1\\..*weight$")  # case-insensitive, the table follows each key
        assert all(name.startswith("transformer.h.1.") and name.endswith("weight") for name in listed(screen))
        assert listed(screen) and "of" in screen.weights_table.border_title
        await pilot.press("o")  # a letter typed into the filter, not a key of the screen
        assert screen.query_one("#weights-filter", Input).value.endswith("$o")
        assert listed(screen) == [] and "No tensor matches" in said(screen, "#weights-note")
        screen.query_one("#weights-filter", Input).value = "(h"
        await pilot.pause()
        assert "the filter is not a regular expression" in said(screen, "#weights-note")
        assert listed(screen) == []  # the last good filter stays
        screen.query_one("#weights-filter", Input).value = "c_fc.weight"
        await pilot.press("escape")  # leave the field: the keys work again
        await settled(pilot)
        assert listed(screen) == ["transformer.h.1.mlp.c_fc.weight", "transformer.h.0.mlp.c_fc.weight"]  # reversed

        await pilot.press("a")
        await settled(pilot)
        assert screen.heat_mode == "signed" and screen.heatmap.mode == "signed"
        tensor = find_tensor(gpt2.model, "transformer.h.1.mlp.c_fc.weight")
        np.testing.assert_allclose(
            screen.heatmap.matrix, downsample(tensor, *screen.heatmap.cells_wanted, mode="signed")
        )
        assert "signed w (a)" in screen.heatmap.border_subtitle
        assert (screen.heatmap.matrix < 0).any()  # signed means, not magnitudes


async def test_weights_edited_in_place_show_after_refresh(workspace, tmp_path):
    loaded = load_model(str(tiny_lm_folder("gpt2", tmp_path / "model")), device="cpu")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot, loaded)
        before = screen.views["transformer.wte.weight"].heatmaps
        assert before
        with torch.no_grad():
            loaded.model.transformer.wte.weight.zero_()
        screen.refresh_weights()
        await settled(pilot)
        embedding = screen.weights[0]
        assert embedding.name == "transformer.wte.weight" and embedding.sparsity == 1.0 and embedding.norm == 0.0
        assert float(np.abs(screen.heatmap.matrix).max()) == 0.0


async def test_without_a_model_a_sentence_says_how_to_load_one(workspace):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        assert screen.weights_table.row_count == 0
        assert "No model is loaded: load one on the Model screen (key 2)" in said(screen, "#weights-note")
        assert "No model is loaded" in screen.heatmap.render_line(0).text
        assert not screen.weights_busy


@pytest.mark.slow
async def test_b_loads_the_bundled_smollm2_and_lists_its_tensors(workspace):
    """The real model: b loads it, the table lists its 272 tensors with the embedding tied to the LM head, and the
    embedding's 49152×576 heatmap, histogram and singular values come (the Gram path on a tall matrix)."""
    from smoltui.engine.bundled import bundled_models

    if not any(model.name == "smollm2-135m-instruct" and model.available for model in bundled_models()):
        pytest.skip("the bundled SmolLM2 is not installed")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        await pilot.press("b")
        await settled(pilot)
        loaded = app.session_model
        assert loaded is not None
        assert len(screen.weights) == len({id(t) for t in loaded.model.state_dict(keep_vars=True).values()})
        embedding = screen.weights_table.selected
        assert embedding.name == "model.embed_tokens.weight" and embedding.also == ("lm_head.weight",)
        assert embedding.shape == (49152, 576)
        assert screen.heatmap.matrix.shape == screen.heatmap.cells_wanted
        assert "σ12" in said(screen, "#weight-singular") or "σ6" in said(screen, "#weight-singular")
        assert "█" in said(screen, "#weight-histogram")
