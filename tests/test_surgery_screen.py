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
from textual.widgets import Input, Select, Static
from tiny_lms import tiny_lm_folder

from smoltui.engine.models import load_model
from smoltui.engine.weights import downsample, find_tensor, tensor_table, top_singular_values
from smoltui.screens.surgery import SurgeryScreen
from smoltui.screens.surgery_history import short_metric
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
            assert lines[drawn_lines].startswith(("mean |w| per cell: 0 ", "|w|: 0 "))  # short beside the pane
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


# -- the workbench pane: history, the operation form, the effect ---------------------------------------------

CORPUS = "".join(f"Line {n}: the quick brown fox jumps over the lazy dog, {n % 7} times.\n" for n in range(300))


@pytest.fixture
def imported(workspace, tmp_path):
    """A workbench with a tiny Llama imported as step 1 and a tiny dataset, as `smoltui import` leaves it."""
    from smoltui.engine.operations import run_operation
    from smoltui.engine.workbench import Workbench

    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS)
    folder = tiny_lm_folder("llama", tmp_path / "llama")
    with Workbench.open(workspace) as bench:
        bench.set("dataset", str(corpus))
        bench.set("eval_tokens", "100")
        bench.set("sample_tokens", "4")
        bench.set("prompt", "The quick")
        step = run_operation(bench, "import", {"source": str(folder)})
    return step


def history_rows(screen) -> list[list[str]]:
    table = screen.query_one("#surgery-steps")
    return [[str(getattr(cell, "plain", cell)) for cell in table.get_row_at(row)] for row in range(table.row_count)]


async def wait_operation(pilot) -> None:
    while pilot.app.screen.operation_job is not None:
        await pilot.pause(0.05)
    await settled(pilot)


async def test_the_pane_lists_the_history_and_the_state(workspace, imported):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        rows = history_rows(screen)
        assert len(rows) == 1 and rows[0][:2] == ["*", "1"] and rows[0][2].endswith("…")  # cut: the numbers show
        assert f"import source={imported.params['source']}".startswith(rows[0][2][:-1])
        table = screen.query_one("#surgery-steps")
        assert sum(column.get_render_width(table) for column in table.columns.values()) <= table.size.width
        assert rows[0][3] == short_metric("perplexity", imported.effect["after"]["perplexity"])
        assert "current: step 1 · import" in said(screen, "#surgery-state")
        assert screen.query_one("#surgery-dataset", Input).value.endswith("corpus.txt")


async def test_the_dataset_field_sets_the_dataset_and_a_missing_file_is_refused(workspace, imported, tmp_path):
    from smoltui.engine.workbench import Workbench

    other = tmp_path / "other.txt"
    other.write_text(CORPUS)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        field = screen.query_one("#surgery-dataset", Input)
        before = field.value
        await pilot.press("d")  # the field has the keyboard
        assert screen.focused is field
        field.value = str(tmp_path / "missing.txt")
        await pilot.press("enter")
        await settled(pilot)
        assert field.has_class("-invalid") and "no such file or folder" in said(screen, "#surgery-progress")
        with Workbench.open(workspace) as bench:
            assert bench.get("dataset") == before
        field.value = str(other)
        await pilot.press("enter")
        await settled(pilot)
        assert not field.has_class("-invalid")
        assert f"dataset:{other}" in said(screen, "#surgery-progress").replace(" ", "")  # wrapped in the pane
        assert field.value == str(other)  # outside the current folder: the path in full
        with Workbench.open(workspace) as bench:
            assert bench.get("dataset") == str(other)


async def test_escape_stops_a_running_operation_and_nothing_changes(workspace, imported):
    from smoltui.engine.workbench import Workbench

    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        screen.query_one("#surgery-field-pattern", Input).value = "mlp"
        screen.query_one("#surgery-field-zero").value = True
        screen.query_one("#surgery-steps").focus()
        app.session.give_way(3.0)  # holds the job at its first line: the stop surely comes while it runs
        await pilot.press("ctrl+r")
        assert screen.operation_job is not None
        await pilot.press("escape")
        await wait_operation(pilot)
        assert "cancelled; nothing changed" in said(screen, "#surgery-progress")
        with Workbench.open(workspace) as bench:
            assert [step.step for step in bench.history()] == [1] and bench.current_step == 1
            assert sorted(path.name for path in (workspace / "workbench" / "models").iterdir()) == ["step_0001"]
        assert len(history_rows(screen)) == 1


async def test_m_imports_the_loaded_model_as_it_is_in_memory(workspace, imported):
    from smoltui.engine.workbench import Workbench

    preset = load_model("tiny", device="cpu", seed=7)
    weights = {name: tensor.clone() for name, tensor in preset.model.state_dict().items()}
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot, preset)
        await pilot.press("m")
        await wait_operation(pilot)
        with Workbench.open(workspace) as bench:
            step = bench.current()
        assert (step.step, step.operation, step.params) == (2, "import", {"source": "tiny"})
        assert history_rows(screen)[-1][:2] == ["*", "2"] and history_rows(screen)[-1][2].startswith("import sour")
        assert app.session_model.source == str(step.folder)  # the step's model, loaded back
        loaded = app.session_model.model.state_dict()
        assert all(torch.equal(loaded[name], tensor) for name, tensor in weights.items())
        assert not screen.check_action("import_loaded", ())  # the loaded model is step 2 itself: nothing to add
        await pilot.press("m")
        await wait_operation(pilot)
        assert len(history_rows(screen)) == 2


async def test_a_narrow_screen_shows_one_pane_and_w_switches(workspace, imported):
    app = make_app(workspace)
    async with app.run_test(size=(80, 24)) as pilot:
        screen = await open_surgery(pilot)
        viewer, pane = screen.query_one("#weights-viewer"), screen.query_one("#surgery-history")
        assert viewer.display and not pane.display
        await pilot.press("w")
        await settled(pilot)
        assert pane.display and not viewer.display and pane.size.width >= 70
        assert screen.focused is screen.query_one("#surgery-steps")
        await pilot.press("w")
        await settled(pilot)
        assert viewer.display and not pane.display and screen.focused is screen.weights_table


async def test_an_edit_from_the_form_makes_a_step_shows_its_effect_and_loads_its_model(workspace, imported):
    from smoltui.engine.workbench import Workbench

    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        screen.query_one("#surgery-field-pattern", Input).value = "mlp"
        screen.query_one("#surgery-field-scale", Input).value = "0.5"
        screen.query_one("#surgery-field-scale", Input).focus()
        await pilot.press("ctrl+r")
        await wait_operation(pilot)
        with Workbench.open(workspace) as bench:
            steps = bench.history()
        assert [step.operation for step in steps] == ["import", "edit"] and bench is not None
        made = steps[-1]
        assert made.params["scale"] == 0.5
        rows = history_rows(screen)
        assert rows[-1][:2] == ["*", "2"] and "edit pattern=mlp scale=0.5".startswith(rows[-1][2].rstrip("…"))
        assert rows[0][0] == ""
        assert "step 2 made; loading its model…" in said(screen, "#surgery-progress")
        effect = said(screen, "#surgery-effect")
        ppl = short_metric("perplexity", made.effect["after"]["perplexity"])
        assert "Effect of step 2" in effect and "step 2 · edit" in effect and ppl in effect
        assert "before" in effect and "tokens/s" in effect
        assert made.effect["after"]["sample"].split()[0] in effect  # the samples side by side
        loaded = app.session_model
        assert loaded is not None and loaded.source == str(made.folder)
        original = load_model(str(imported.folder), device="cpu").model.state_dict()
        for name, tensor in loaded.model.state_dict().items():
            expected = original[name] * 0.5 if "mlp" in name else original[name]
            torch.testing.assert_close(tensor, expected)


async def test_enter_on_step_one_checks_it_out_and_u_undoes(workspace, imported):
    from smoltui.engine.operations import run_operation
    from smoltui.engine.workbench import Workbench

    with Workbench.open(workspace) as bench:
        run_operation(bench, "edit", {"pattern": "mlp", "zero": True}, evaluate=False)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        assert history_rows(screen)[1][0] == "*"
        screen.query_one("#surgery-steps").focus()
        await pilot.press("up", "enter")
        await settled(pilot)
        assert history_rows(screen)[0][0] == "*" and "current: step 1" in said(screen, "#surgery-state")
        assert "Effect of step 1" in said(screen, "#surgery-effect")
        original = load_model(str(imported.folder), device="cpu").model.state_dict()
        loaded = app.session_model.model.state_dict()
        assert all(torch.equal(loaded[name], tensor) for name, tensor in original.items())
        await pilot.press("u")  # step 1 started from nothing: one sentence, nothing changes
        await settled(pilot)
        assert "nothing to undo" in said(screen, "#surgery-progress")
        assert history_rows(screen)[0][0] == "*"
        await pilot.press("down", "enter")  # step 2 again, then u: its parent, step 1
        await settled(pilot)
        assert history_rows(screen)[1][0] == "*"
        assert not app.session_model.model.state_dict()["model.layers.0.mlp.up_proj.weight"].any()  # zeroed
        await pilot.press("u")
        await settled(pilot)
        assert history_rows(screen)[0][0] == "*" and app.session_model.source == str(imported.folder)


async def test_the_cursor_shows_each_steps_effect_and_c_compares_the_current_model_with_it(workspace, imported):
    from smoltui.engine.operations import run_operation
    from smoltui.engine.workbench import Workbench

    with Workbench.open(workspace) as bench:
        run_operation(bench, "edit", {"pattern": "mlp", "scale": 0.5})
        third = run_operation(bench, "edit", {"pattern": "attn", "zero": True})
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        assert "Effect of step 3" in said(screen, "#surgery-effect")
        await pilot.press("c")  # the cursor is on the current step: nothing to compare
        await settled(pilot)
        assert "put the history's cursor on another step first" in said(screen, "#surgery-progress")
        screen.query_one("#surgery-steps").focus()
        await pilot.press("up", "up")
        await settled(pilot)
        effect = said(screen, "#surgery-effect")
        assert "Effect of step 1" in effect and "step 1 · import" in effect
        await pilot.press("c")
        await settled(pilot)
        compared = said(screen, "#surgery-effect")
        assert "Step 3 (current) against step 1" in compared
        assert "before: step 1 · import" in compared and "after: step 3 · edit" in compared
        first, last = imported.effect["after"]["perplexity"], third.effect["after"]["perplexity"]
        for shown in (first, last, last - first):
            assert short_metric("perplexity", shown, signed=shown == last - first) in compared
        assert "compare with care" not in compared  # measured alike


async def test_a_bad_field_is_marked_with_its_sentence_and_nothing_runs(workspace, imported):
    from smoltui.engine.workbench import Workbench

    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        screen.query_one("#surgery-field-pattern", Input).value = "mlp"
        scale = screen.query_one("#surgery-field-scale", Input)
        scale.value = "half"
        scale.focus()
        await pilot.press("enter")
        await settled(pilot)
        assert scale.has_class("-invalid")
        assert "--scale takes a number such as 0.5, not 'half'." in said(screen, "#surgery-form-error")
        assert screen.operation_job is None
        with Workbench.open(workspace) as bench:
            assert len(bench.history()) == 1


async def test_choosing_prune_makes_its_fields_and_an_amount_past_one_is_refused(workspace, imported):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        screen.query_one("#surgery-operation", Select).value = "prune"
        await settled(pilot)
        fields = [widget.id for widget in screen.query_one("#surgery-fields").children]
        assert fields == ["surgery-field-amount", "surgery-field-kind", "surgery-field-where"]
        amount = screen.query_one("#surgery-field-amount", Input)
        amount.value = "1.5"
        amount.focus()
        await pilot.press("ctrl+r")
        await settled(pilot)
        assert amount.has_class("-invalid") and screen.operation_job is None
        assert "--amount must be at most 1, not 1.5; pass a smaller value." in said(screen, "#surgery-form-error")
        assert len(history_rows(screen)) == 1


@pytest.mark.slow
async def test_a_tool_runs_from_the_form_through_uv_and_a_failing_one_changes_nothing(workspace, imported, monkeypatch):
    import shutil
    import sys

    from safetensors.torch import load_file
    from test_workbench_cli import ZERO_TOOL

    from smoltui.engine.workbench import Workbench

    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    monkeypatch.setenv("UV_OFFLINE", "1")  # a tool that declares no dependencies needs no network
    monkeypatch.setenv("UV_PYTHON", sys.executable)
    (workspace / "tools").mkdir()
    (workspace / "tools" / "zero_tool.py").write_text(ZERO_TOOL)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_surgery(pilot)
        screen.query_one("#surgery-operation", Select).value = "tool"
        await settled(pilot)
        script = screen.query_one("#surgery-field-script", Input)
        assert [widget.id for widget in screen.query_one("#surgery-fields").children] == [
            "surgery-field-script",
            "surgery-field-args",
        ]
        script.focus()
        await pilot.press(*"zero")
        assert script.value == "zero" and script._suggestion == "zero_tool"  # the workspace's tools complete
        await pilot.press("right")
        screen.query_one("#surgery-field-args", Input).value = "--name mlp"
        await pilot.press("ctrl+r")
        await wait_operation(pilot)
        with Workbench.open(workspace) as bench:
            made = bench.current()
        assert (made.step, made.operation, made.params["args"]) == (2, "tool:zero_tool", ["--name", "mlp"])
        zeroed = load_file(made.folder / "model.safetensors")
        assert all(not tensor.any() for name, tensor in zeroed.items() if "mlp" in name)
        assert history_rows(screen)[-1][:2] == ["*", "2"] and "Effect of step 2" in said(screen, "#surgery-effect")

        screen.query_one("#surgery-field-args", Input).value = "--fail"
        await pilot.press("ctrl+r")
        await wait_operation(pilot)
        progress = said(screen, "#surgery-progress")
        assert "nothing changed" in progress and "failed with exit status 1" in progress
        rows = history_rows(screen)
        assert rows[-1][1] == "3" and rows[-1][2].startswith("✗ tool:zero") and rows[1][0] == "*"
        with Workbench.open(workspace) as bench:
            assert bench.current_step == 2
