"""Shared fixtures: a private workspace per test and the path of the shared corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHAKESPEARE = REPO.parent / "shared" / "data" / "tinyshakespeare.txt"


@pytest.fixture
def workspace(tmp_path, monkeypatch) -> Path:
    """A fresh workspace folder, also exported as $SMOLTUI_WORKSPACE for code that reads it.

    Trainers a test leaves running (a failed assertion before its stop) are killed at teardown.
    """
    path = tmp_path / "ws"
    monkeypatch.setenv("SMOLTUI_WORKSPACE", str(path))
    yield path
    kill_trainers(path)


def kill_trainers(workspace: Path) -> None:
    import json
    import os
    import signal
    import sqlite3

    for db in workspace.glob("runs/*/run.db"):
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                row = conn.execute("SELECT value FROM meta WHERE key = 'pid'").fetchone()
        except sqlite3.Error:
            continue
        pid = json.loads(row[0]) if row else None
        if pid:
            try:
                os.killpg(pid, signal.SIGKILL)  # trainers start their own session: the group is theirs alone
            except (ProcessLookupError, PermissionError):
                pass


@pytest.fixture
def shakespeare() -> Path:
    if not SHAKESPEARE.exists():
        pytest.skip("../shared/data/tinyshakespeare.txt is absent")
    return SHAKESPEARE


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` run only where torch sees a CUDA device (never in CI)."""
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip)


# -- the dashboard's tests ---------------------------------------------------------------------------------

FIXED_NOW = 1_800_000_000.0


async def type_at_once(pilot, *keys: str) -> None:
    """Send `keys` as a paste or a person typing while the app is busy does: all of them queued before the first
    is handled (pilot.press waits for each), then wait for them to land."""
    from textual import events

    for key in keys:
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(pilot.app)
        pilot.app._driver.send_message(event)
    await pilot.pause()


async def settle(pilot) -> None:
    """Let the app's thread workers and its model session's jobs finish, their messages land, and the tables
    measure their new rows. A worker that fails is waited for too, not raised here: the screen reports it."""
    import asyncio

    await pilot.pause()
    await asyncio.gather(*(worker.wait() for worker in pilot.app.workers), return_exceptions=True)
    session = getattr(pilot.app, "session", None)
    while session is not None and session.busy:
        await pilot.pause(0.05)
    await pilot.pause(0.1)
    await pilot.pause()  # the clock the dashboard tests give the app, so "started 5m ago" never drifts


@pytest.fixture
def write_run(workspace):
    """Write a run straight into the workspace's store, without a trainer: fixed id, times and metrics.

    `write_run("20300101-000000-tiny", status="finished", losses=[4.0, 3.0])` returns the run folder. A
    "running" or "paused" run gets a sleeping stand-in process as its trainer (in its own session, so the
    workspace fixture's kill_trainers may kill its group) and a fresh heartbeat, so it reads as alive.
    """
    import socket
    import subprocess
    import sys
    import time

    from smoltui.engine.runstore import RunStore

    stand_ins: list[subprocess.Popen] = []

    def write(
        run_id: str,
        *,
        status: str = "finished",
        losses: tuple[float, ...] = (4.2, 3.6, 3.1, 2.9),
        val_loss: float | None = 3.05,
        tokens_per_s: float = 12_345.0,
        started: float = FIXED_NOW - 300,
        model: str = "tiny",
        max_steps: int | None = None,
    ) -> Path:
        run_dir = workspace / "runs" / run_id
        meta = {"model_source": model, "corpus": "notes.txt", "max_steps": max_steps or len(losses)}
        store = RunStore.create(run_dir, run_id, meta)
        try:
            for step, loss in enumerate(losses, start=1):
                store.log_metrics(step, {"train/loss": loss, "tokens_per_s": tokens_per_s})
            if val_loss is not None:
                store.log_metrics(len(losses), {"val/loss": val_loss})
            store.set_meta(created_at=started, started_at=started)
            alive = {}
            if status in ("running", "paused"):
                stand_in = subprocess.Popen(
                    [sys.executable, "-c", "import time; time.sleep(300)"], start_new_session=True
                )
                stand_ins.append(stand_in)
                alive = {"pid": stand_in.pid, "host": socket.gethostname(), "heartbeat": time.time()}
            store.set_meta(status=status, **alive)
        finally:
            store.close()
        return run_dir

    yield write
    for stand_in in stand_ins:
        stand_in.kill()
        stand_in.wait()


@pytest.fixture
def tiny_model_folder(tmp_path) -> Path:
    """A 2-layer, 32-wide GPT-2 saved by transformers with the char tokenizer, as a user's model folder."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from smoltui.engine.tokenizers import char_tokenizer

    folder = tmp_path / "tiny-gpt2"
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, n_positions=64, vocab_size=99)
    GPT2LMHeadModel(config).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return folder


@pytest.fixture
def train_screen_stand_in(monkeypatch):
    """Replace the Train screen with a recorder of what the app asks of it (show_run, show_form).

    Dashboard tests that only need to know the app hands a run to the Train screen use this, so they do
    not depend on the Train screen's own widgets; it returns the list of calls.
    """
    import sys
    import types

    from textual.screen import Screen
    from textual.widgets import Label

    from smoltui.app import SmolApp

    calls: list[tuple] = []

    class TrainScreen(Screen):
        def compose(self):
            yield Label("train screen stand-in")

        def show_run(self, run_ref, overlay=()):
            calls.append(("show_run", run_ref, tuple(overlay)))

        def show_form(self):
            calls.append(("show_form",))

    module = types.ModuleType("smoltui.screens.train")
    module.TrainScreen = TrainScreen
    monkeypatch.setitem(sys.modules, "smoltui.screens.train", module)
    monkeypatch.setitem(SmolApp.MODES, "train", TrainScreen)
    return calls
