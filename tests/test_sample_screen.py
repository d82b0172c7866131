"""The Sample screen driven like a person, on tiny models: tokens stream in coloured by probability, escape stops
them, a cursor shows a token's alternatives, a bad sampler value is refused at its field, A/B runs two models with
one seed, the surprise diff shades each token by how the models differ, JSON output parses, and bad input is a
sentence on screen, never a traceback."""

from __future__ import annotations

import json
import math

import jsonschema
import pytest
from conftest import settle, type_at_once
from rich.style import Style
from test_app import make_app, notifications, text_of
from textual.widgets import Input, Static

from smoltui.engine.chat import NO_TEMPLATE_NOTE
from smoltui.engine.decoder import TokenGenerated, decode
from smoltui.engine.models import load_model
from smoltui.engine.sampler_settings import PRESETS
from smoltui.engine.scoring import score_text
from smoltui.formatting import PROBABILITY_BANDS, probability_colour
from smoltui.screens.base import KeyBar
from smoltui.screens.sample import SampleScreen
from smoltui.widgets.line_chart import LineChart
from smoltui.widgets.sampler_form import SamplerForm, join_list, split_list
from smoltui.widgets.token_details import diff_colour
from smoltui.widgets.token_view import TokenView

SIZE = (120, 40)
SCHEMA = {
    "type": "object",
    "properties": {"answer": {"enum": ["yes", "no", "maybe"]}, "sure": {"type": "boolean"}},
    "required": ["answer", "sure"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def tiny():
    return load_model("tiny", device="cpu")


@pytest.fixture(scope="module")
def long_tiny():
    """The tiny preset with room for thousands of tokens: a generation long enough to stop half-way."""
    return load_model("tiny", device="cpu", overrides={"n_positions": 2048})


async def open_sample(pilot, loaded=None) -> SampleScreen:
    app = pilot.app
    if loaded is not None:
        app.session.use(loaded)
    await pilot.pause()
    await pilot.press("5")
    await pilot.pause()
    assert isinstance(app.screen, SampleScreen)
    return app.screen


def form_of(screen) -> SamplerForm:
    return screen.query_one(SamplerForm)


async def fill(pilot, screen, **fields: str) -> None:
    for name, text in fields.items():
        form_of(screen).set_field(name, text)
    await pilot.pause()


async def send(pilot, text: str) -> None:
    """Type `text` into the prompt (replacing what is there) and press enter."""
    prompt = pilot.app.screen.query_one("#prompt", Input)
    prompt.value = text
    prompt.focus()
    await pilot.press("enter")


def headless(loaded, prompt: str, **options) -> list[TokenGenerated]:
    ids = loaded.tokenizer(prompt)["input_ids"]
    return [
        event for event in decode(loaded.model, loaded.tokenizer, ids, **options) if isinstance(event, TokenGenerated)
    ]


def footer(screen) -> str:
    return text_of(screen.query_one(KeyBar).query_one("#keys"))


def said(widget) -> str:
    """What a widget shows, its wrapped lines joined by single spaces."""
    return " ".join(text_of(widget).split())


def inside(view: TokenView) -> str:
    """What a token view shows inside its border, lines joined by single spaces."""
    return " ".join(" ".join(view.render_line(y).text for y in range(view.size.height)).split())


def colour_of(view: TokenView, token: int) -> str:
    return view.token_style(token).color.name  # a hex colour keeps its "#rrggbb" name


async def test_tokens_stream_in_each_coloured_by_its_probability_under_the_legend(workspace, tiny):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await pilot.press("c")  # completion
        form_of(screen).apply_preset("greedy")
        await fill(pilot, screen, max_new_tokens="24")
        await send(pilot, "Once upon")
        await settle(pilot)
        view = screen.query_one("#single", TokenView)
        expected = headless(tiny, "Once upon", max_new_tokens=24, sampling=PRESETS["greedy"])
        assert view.token_count == 24
        assert view.text == "Once upon" + "".join(token.text for token in expected)
        assert [colour_of(view, i) for i in range(24)] == [probability_colour(t.probability) for t in expected]
        legend = text_of(screen.query_one("#sample-legend", Static))
        assert all(label in legend for _, _, label in PROBABILITY_BANDS), legend
        assert view.border_subtitle.startswith("24 tokens · max tokens")
        chart = screen.query_one("#sparkline", LineChart)
        assert list(chart.series("A").values) == pytest.approx([t.entropy for t in expected], rel=1e-5)
        await pilot.press("escape", "e")  # the sparkline shows each token's surprise instead
        assert list(chart.series("A").values) == pytest.approx([-math.log(t.probability) for t in expected], rel=1e-5)


async def test_escape_stops_a_generation_half_way_and_the_stop_key_leaves_the_footer(workspace, long_tiny):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, long_tiny)
        await pilot.press("c")
        await fill(pilot, screen, max_new_tokens="1500")
        await send(pilot, "A")
        view = screen.query_one("#single", TokenView)
        while view.token_count == 0:  # the first tokens are on screen while the job still runs
            await pilot.pause(0.02)
        assert screen.generating and "esc Stop" in footer(screen)
        job = screen.column("single").job
        await pilot.press("escape")
        await settle(pilot)
        assert job.cancelled.is_set() and job.finished.is_set()
        assert 0 < view.token_count < 1500
        assert not screen.generating and "Stop" not in footer(screen)
        assert view.border_subtitle.endswith("· stopped")


async def test_the_token_cursor_lists_the_top_alternatives_with_the_chosen_one_marked(workspace, tiny):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await pilot.press("c")
        await fill(pilot, screen, max_new_tokens="12", temperature="1.5", seed="3")
        await send(pilot, "Hello")
        await settle(pilot)
        expected = headless(tiny, "Hello", max_new_tokens=12, sampling=PRESETS["balanced"].replace(temperature=1.5),
                            seed=3)  # fmt: skip
        await pilot.press("escape", "t", "left", "left")  # from the last token (11) to token 9
        await pilot.pause()
        details = text_of(screen.query_one("#token-details", Static))
        token = expected[9]
        assert "token 10" in details and f"entropy {token.entropy:.2f} nats" in details, details
        rows = [line.split() for line in details.splitlines() if line.strip().startswith(("▶", *"0123456789"))]
        marked = [line for line in details.splitlines() if line.strip().startswith("▶")]
        assert len(marked) == 1 and marked[0].split()[1] == token.text.replace(" ", "␣"), details
        shown = [line.split()[-3] for line in details.splitlines() if line.rstrip().endswith("%") and "·" not in line]
        assert len(shown) == len(token.top_raw) == 20 and rows

        view = screen.query_one("#single", TokenView)
        await pilot.click(view, offset=(2 + len("Hello") + 2, 1))  # a click on the third generated token
        await pilot.pause()
        assert view.cursor == 2
        assert "token 3" in text_of(screen.query_one("#token-details", Static))


async def test_a_sampler_value_out_of_range_is_marked_at_its_field_and_nothing_is_generated(workspace, tiny):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await fill(pilot, screen, top_p="1.5", top_k="many")
        error = said(screen.query_one("#error-top_k", Static))
        assert "top_k (--top-k) must be a whole number, not 'many'." in error, error
        assert screen.query_one("#field-top_k", Input).has_class("-invalid")
        await fill(pilot, screen, top_k="0")
        assert "top_p (--top-p) must be between 0 and 1, not 1.5." in said(screen.query_one("#error-top_p"))
        assert not screen.query_one("#field-top_k", Input).has_class("-invalid")
        await send(pilot, "Hi")
        await settle(pilot)
        assert screen.column("single").job is None and screen.query_one("#single", TokenView).text == ""
        assert any("top_p" in message for message in notifications(app))
        await fill(pilot, screen, top_p="0.9", order="top_p, warmth")
        assert "order names an unknown sampler 'warmth'" in said(screen.query_one("#error-order"))


async def test_a_b_streams_both_models_with_the_same_settings_and_seed(workspace, tiny, tiny_model_folder):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await pilot.press("c", "a")
        await fill(pilot, screen, max_new_tokens="16", seed="7")
        screen.query_one("#b-source", Input).value = str(tiny_model_folder)
        await send(pilot, "Once")
        await settle(pilot)
        settings = {"max_new_tokens": 16, "sampling": PRESETS["balanced"], "seed": 7}
        other = load_model(str(tiny_model_folder), device="cpu")
        for view_id, loaded in (("#column-a", tiny), ("#column-b", other)):
            view = screen.query_one(view_id, TokenView)
            expected = headless(loaded, "Once", **settings)
            assert view.text == "Once" + "".join(token.text for token in expected), view_id
            assert [colour_of(view, i) for i in range(16)] == [probability_colour(t.probability) for t in expected]
        assert screen.query_one("#column-b", TokenView).border_title == f"B · {tiny_model_folder}"
        assert "seed 7" in text_of(screen.query_one("#sample-status"))

        kept = screen.model_b.loaded
        await send(pilot, "Twice")  # model B is kept for the next run, not loaded again
        await settle(pilot)
        assert screen.model_b.loaded is kept
        assert screen.query_one("#column-b", TokenView).text.startswith("Twice")


async def test_a_model_b_that_cannot_load_is_a_sentence_and_a_sticks_to_its_answer(workspace, tiny):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await pilot.press("c", "a")
        await fill(pilot, screen, max_new_tokens="6")
        screen.query_one("#b-source", Input).value = "./no/such/model"
        await send(pilot, "Once")
        await settle(pilot)
        assert any("no such folder: ./no/such/model" in message for message in notifications(app))
        assert screen.column("column-a").view.token_count == 6
        assert screen.column("column-b").outcome == "failed" and not screen.generating
        assert "failed: no such folder" in said(screen.query_one("#sample-note", Static))


async def test_the_surprise_diff_shades_each_token_by_how_much_likelier_b_finds_it(workspace, tiny, tiny_model_folder):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await pilot.press("c")
        form_of(screen).apply_preset("greedy")
        await fill(pilot, screen, max_new_tokens="20")
        await send(pilot, "The")
        await settle(pilot)
        answer = screen.column("single").answer_text
        await pilot.press("escape", "d")
        await pilot.pause()
        screen.query_one("#b-source", Input).value = str(tiny_model_folder)
        screen.query_one("#b-source", Input).focus()
        await pilot.press("enter")  # B named: the answer is scored under both
        await settle(pilot)
        view = screen.query_one("#diff", TokenView)
        other = load_model(str(tiny_model_folder), device="cpu")
        a, b = score_text(tiny.model, tiny.tokenizer, answer), score_text(other.model, other.tokenizer, answer)
        deltas = [None if x.logprob is None else y.logprob - x.logprob for x, y in zip(a.tokens, b.tokens, strict=True)]
        assert view.text == answer and view.token_count == len(deltas) == 20
        assert deltas[0] is None  # the char tokenizer has no start token to condition the first one on
        for index, delta in enumerate(deltas):
            colour = diff_colour(delta)
            assert view.token_style(index) == (Style.parse(colour) if colour else Style()), index
        assert view.border_subtitle == f"perplexity A {a.perplexity:.2f} · B {b.perplexity:.2f}"

        await pilot.press("escape", "t")  # the cursor starts on the last token
        details = said(screen.query_one("#token-details", Static))
        assert f"{deltas[-1]:+.2f} nats: B finds it" in details, details


async def test_the_diff_of_models_with_different_tokenizers_says_it_needs_a_shared_one(workspace, tiny, tmp_path):
    bpe = load_model("tiny", device="cpu", tokenizer="bpe:300")
    bpe.model.save_pretrained(tmp_path / "bpe-tiny")
    bpe.tokenizer.save_pretrained(tmp_path / "bpe-tiny")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await pilot.press("d")
        screen.query_one("#b-source", Input).value = str(tmp_path / "bpe-tiny")
        await send(pilot, "the cat sat on the mat")
        await settle(pilot)
        said = inside(screen.query_one("#diff", TokenView))
        assert "the two models tokenize this text differently; compare models that share a tokenizer." in said
        assert app.is_running


async def test_json_output_with_a_schema_file_gives_parseable_json(workspace, tiny, tmp_path):
    schema_file = tmp_path / "answer.json"
    schema_file.write_text(json.dumps(SCHEMA))
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await pilot.press("c", "j")
        assert "type the path of a JSON schema file" in said(screen.query_one("#error-json_schema"))
        await fill(pilot, screen, json_schema=str(schema_file), temperature="1", seed="5")
        await send(pilot, "Q")
        await settle(pilot)
        answer = screen.column("single").answer_text
        jsonschema.validate(json.loads(answer), SCHEMA)
        assert "JSON" in text_of(screen.query_one("#sample-status"))

        await pilot.press("escape", "t", "home")
        screen.query_one("#single", TokenView).cursor = 1  # '{' and the first key are the schema's, not the model's
        screen.action_move_cursor(0)
        await pilot.pause()
        assert "forced by the JSON schema" in text_of(screen.query_one("#token-details", Static))

        schema_file.write_text(json.dumps({"type": "nope"}))  # JSON, but no schema llguidance takes
        await pilot.press("t")
        await send(pilot, "Q")
        await settle(pilot)
        error = text_of(screen.query_one("#error-json_schema", Static))
        assert "the JSON schema is not valid or not supported (Invalid type: nope)" in " ".join(error.split())


async def test_without_a_model_the_screen_says_how_to_load_one(workspace):
    from smoltui.engine.bundled import bundled_models

    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot)
        said = inside(screen.query_one("#single", TokenView))
        assert said.startswith("No model is loaded: load one on the Model screen (key 2)")
        if any(model.name == "smollm2-135m-instruct" and model.available for model in bundled_models()):
            assert "press b to load the bundled smollm2-135m-instruct here" in said
            assert "b Load SmolLM2" in footer(screen)
        await send(pilot, "Hi")
        await pilot.pause()
        assert any("No model is loaded" in message for message in notifications(app))


async def test_keys_typed_right_behind_i_go_into_the_prompt_not_to_the_screen(workspace, tiny):
    """A paste, or typing while the app is busy, queues the keys behind i: they are text, not A/B (a) or diff (d)."""
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await type_at_once(pilot, "i", "a", "d", "j")
        assert screen.query_one("#prompt", Input).value == "adj"
        assert screen.view == "single" and not form_of(screen).json_output


async def test_chat_keeps_the_conversation_notes_a_missing_template_and_starts_anew(workspace, tiny):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        form_of(screen).apply_preset("greedy")
        await fill(pilot, screen, max_new_tokens="5")
        await send(pilot, "Hi")
        await settle(pilot)
        assert said(screen.query_one("#sample-note", Static)) == NO_TEMPLATE_NOTE
        await send(pilot, "Again")
        await settle(pilot)
        view = screen.query_one("#single", TokenView)
        assert view.text.count("You: ") == 2 and view.token_count == 10
        assert [turn["role"] for turn in screen.conversation] == ["user", "assistant", "user", "assistant"]
        await pilot.press("escape", "n")
        assert view.text == "" and screen.conversation == ()


async def test_a_prompt_longer_than_the_context_is_cut_with_a_note_and_generation_goes_on(workspace, tiny):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, tiny)
        await pilot.press("c")
        await fill(pilot, screen, max_new_tokens="8")
        screen.query_one("#prompt", Input).value = "word " * 40
        await pilot.press("i", "enter")
        await settle(pilot)
        note = " ".join(text_of(screen.query_one("#sample-note", Static)).split())
        assert note.startswith("The prompt has 200 tokens but this model reads 64 at most"), note
        assert screen.query_one("#single", TokenView).token_count == 8


async def test_a_new_model_while_generating_cancels_with_a_sentence(workspace, long_tiny, tiny):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, long_tiny)
        await pilot.press("c")
        await fill(pilot, screen, max_new_tokens="1500")
        await send(pilot, "A")
        while screen.query_one("#single", TokenView).token_count == 0:
            await pilot.pause(0.02)
        app.session.use(tiny)
        await settle(pilot)
        assert text_of(screen.query_one("#sample-note", Static)).strip() == "cancelled: the model changed"
        assert not screen.generating and app.is_running


async def test_every_key_is_in_the_palette_and_lists_split_as_typed(workspace, tiny):
    assert split_list(r"\n, :, \,, \s, a\\b") == ("\n", ":", ",", " ", "a\\b")
    assert split_list(join_list(["\n", " x", ","])) == ("\n", " x", ",")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        await open_sample(pilot, tiny)
        commands = [command.title for command in app.get_system_commands(app.screen)]
        for title in ("Generate", "Chat/text", "New chat", "Preset", "A/B", "Diff", "JSON", "Token", "Type"):
            assert title in commands, title
        assert "Stop" not in commands  # nothing to stop
