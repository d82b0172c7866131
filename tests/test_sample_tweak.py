"""The Sample screen's A/B against model A tweaked ("tweak: PATTERN=DELTA …" as model B's source), on a tiny
Llama: B decodes under the tweak with A's seed, a zero tweak gives A's tokens, the surprise diff scores under the
tweak, a bad tweak is a sentence, a new model A frees the tweaked copy, and A's weights never change."""

from __future__ import annotations

import pytest
import torch
from conftest import settle
from test_app import make_app, notifications
from test_sample_screen import SIZE, fill, headless, open_sample, said, send
from textual.widgets import Input, Static
from tiny_lms import tiny_lm_folder

from smoltui.engine.models import load_model
from smoltui.engine.sampler_settings import PRESETS
from smoltui.engine.scoring import score_text
from smoltui.engine.tweaks import tweaked
from smoltui.screens.sample_jobs import tweak_specs
from smoltui.widgets.sampler_form import SamplerForm
from smoltui.widgets.token_view import TokenView

SETTINGS = {"max_new_tokens": 12, "sampling": PRESETS["balanced"], "seed": 7}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    """A tiny random Llama with a byte-level BPE, loaded from its folder as a user's model would be."""
    folder = tiny_lm_folder("llama", tmp_path_factory.mktemp("llama") / "llama")
    return load_model(str(folder), device="cpu")


def weights_of(loaded) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in loaded.model.state_dict().items()}


def assert_unchanged(loaded, before: dict[str, torch.Tensor]) -> None:
    after = loaded.model.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


def decoded(loaded, prompt: str = "Once") -> list[int]:
    """The token ids `loaded` decodes from `prompt` with SETTINGS, outside the dashboard."""
    return [token.token_id for token in headless(loaded, prompt, **SETTINGS)]


def under_tweak(loaded, deltas: dict[str, float], prompt: str = "Once") -> list[int]:
    """What the engine's own `tweaked` block decodes: column B's tokens to expect."""
    with tweaked(loaded.model, deltas):
        return decoded(loaded, prompt)


async def a_b(pilot, source_b: str, prompt: str = "Once") -> tuple[list[int], list[int]]:
    """Run the A/B of `prompt` against model B `source_b`: the token ids of column A and of column B."""
    screen = pilot.app.screen
    screen.query_one("#b-source", Input).value = source_b
    await send(pilot, prompt)
    await settle(pilot)
    return tuple([token.token_id for token in screen.column(key).answer] for key in ("column-a", "column-b"))


def test_a_tweak_source_reads_as_a_person_types_it():
    assert tweak_specs("tweak: mlp.down_proj=0.01 layers.1.self_attn=-0.002") == [
        "mlp.down_proj=0.01",
        "layers.1.self_attn=-0.002",
    ]
    assert tweak_specs("  Tweak mlp = 0.01  ") == ["mlp=0.01"]
    assert tweak_specs("tweak:") == []  # a tweak with nothing in it: its check says what to write
    for source in ("tiny", "tweak", "tweaks/model", "run:tweak", "./tweak: x"):
        assert tweak_specs(source) is None, source


async def test_b_is_a_decoded_under_the_tweak_with_the_same_seed_and_a_stays_as_it_was(workspace, llama):
    before = weights_of(llama)
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, llama)
        await pilot.press("c", "a")
        await fill(pilot, screen, max_new_tokens="12", seed="7")

        ids_a, ids_b = await a_b(pilot, "tweak: embed=1.0")
        assert ids_a == decoded(llama) and len(ids_a) == 12
        assert ids_b == under_tweak(llama, {"embed": 1.0})
        assert ids_b != ids_a  # the tweak moves the embeddings far enough to change the tokens drawn
        title = screen.query_one("#column-b", TokenView).border_title
        assert title == "B · A tweaked: embed +1 (1 param)"
        assert_unchanged(llama, before)

        kept = screen.model_b.loaded
        await a_b(pilot, "tweak: embed=1.0", "Twice")  # the same tweak: B is kept, not copied again
        assert screen.model_b.loaded is kept

        ids_a, ids_b = await a_b(pilot, "tweak mlp = 0")  # another tweak: B is made again; a zero one is A
        assert screen.model_b.loaded is not kept
        assert ids_b == ids_a
        title = screen.query_one("#column-b", TokenView).border_title
        assert title == "B · A tweaked: mlp +0 (6 params)"
        assert screen.model_b.loaded.model.model.embed_tokens.weight is llama.model.model.embed_tokens.weight
    assert_unchanged(llama, before)


async def test_the_surprise_diff_scores_the_text_under_the_tweak(workspace, llama):
    text = "The quick brown fox"
    deltas = {"layers.1.mlp.down_proj": 0.05, "model.norm": -0.5}
    with tweaked(llama.model, deltas):
        expected = score_text(llama.model, llama.tokenizer, text).perplexity
    untouched = score_text(llama.model, llama.tokenizer, text).perplexity
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, llama)
        await pilot.press("d")
        screen.query_one("#b-source", Input).value = "tweak: layers.1.mlp.down_proj=0.05 model.norm=-0.5"
        await send(pilot, text)
        await settle(pilot)
        view = screen.query_one("#diff", TokenView)
        assert view.text == text
        assert view.border_subtitle == f"perplexity A {untouched:.2f} · B {expected:.2f}"
        assert f"{untouched:.2f}" != f"{expected:.2f}"


@pytest.mark.parametrize(
    ("source", "sentence"),
    [
        ("tweak: mlp", "the tweak 'mlp' is not PARAM=DELTA; write e.g. mlp.down_proj=0.01."),
        ("tweak: mlp=lots", "the delta in 'mlp=lots' is not a number; write e.g. mlp=0.01."),
        ("tweak: wte=1", "the pattern 'wte' matches no parameter (they are named like model.embed_tokens.weight"),
        ("tweak:", "no tweak given; write one or more PARAM=DELTA, e.g. mlp.down_proj=0.01."),
    ],
)
async def test_a_bad_tweak_is_one_sentence_and_a_keeps_its_answer(workspace, llama, source, sentence):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, llama)
        await pilot.press("c", "a")
        await fill(pilot, screen, max_new_tokens="6")
        await a_b(pilot, source)
        assert any(message.startswith(sentence) for message in notifications(app)), notifications(app)
        assert f"failed: {sentence}" in said(screen.query_one("#sample-note", Static))
        assert screen.column("column-a").view.token_count == 6
        assert screen.column("column-b").outcome == "failed" and not screen.generating
        assert screen.query_one(SamplerForm).errors == {}  # the samplers are not what is wrong
        assert screen.model_b.loaded is None


async def test_a_new_model_a_frees_the_tweaked_b_and_the_next_run_tweaks_the_new_one(workspace, llama, tmp_path):
    other = load_model(str(tiny_lm_folder("llama", tmp_path / "other", seed=1)), device="cpu")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sample(pilot, llama)
        await pilot.press("c", "a")
        await fill(pilot, screen, max_new_tokens="12", seed="7")
        await a_b(pilot, "tweak: embed=1.0")
        assert screen.model_b.is_tweak

        app.session.use(other)
        await settle(pilot)
        assert screen.model_b.loaded is None and not screen.model_b.is_tweak  # llama's tensors are not held

        ids_a, ids_b = await a_b(pilot, "tweak: embed=1.0")
        assert ids_a == decoded(other) and ids_b == under_tweak(other, {"embed": 1.0})
