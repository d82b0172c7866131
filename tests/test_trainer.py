"""Real training runs in real subprocesses: what they write, exact resume, control, signals, kills, NaN, DDP."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smoltui.engine import checkpoints
from smoltui.engine.config import TrainConfig
from smoltui.engine.runs import attach, create_run, launch_run, list_runs, resume_run, start_trainer
from smoltui.engine.runstore import RunStore

WORDS = "the quick brown fox jumps over a lazy dog while seven small models learn to spell every word".split()


@pytest.fixture
def corpus(tmp_path) -> Path:
    """About 60 KB of deterministic word salad: enough for train and val windows of a tiny model."""
    rng = random.Random(0)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(1000)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def tiny_config(corpus: Path, **changes) -> TrainConfig:
    base = TrainConfig(
        model="tiny",
        corpus=str(corpus),
        context=32,
        batch_size=4,
        max_steps=20,
        warmup_steps=2,
        lr=3e-3,
        eval_every=10,
        eval_batches=2,
        sample_every=0,
        sample_length=16,
        checkpoint_every=10,
        dropout=0.1,
    )
    return base.replace(**changes)


def wait_for(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def losses(handle) -> list[tuple[int, float]]:
    return handle.metrics_since("train/loss", -1)


def last_step(handle) -> int:
    series = losses(handle)
    return series[-1][0] if series else 0


def test_a_run_writes_metrics_samples_events_and_checkpoints(workspace, corpus):
    config = tiny_config(
        corpus,
        max_steps=12,
        eval_every=4,
        sample_every=6,
        checkpoint_every=5,
        keep_last=2,
        hooks=["activation_stats:4"],
    )
    handle = launch_run(config, workspace)
    assert handle.wait(timeout=120) == "finished", handle.log_path().read_text()

    assert [step for step, _ in losses(handle)] == list(range(1, 13))
    assert [step for step, _ in handle.metrics_since("val/loss")] == [4, 8, 12]
    names = set(handle.store.metric_names())
    assert {
        "lr",
        "grad_norm",
        "tokens_per_s",
        "tokens_seen",
        "val/ppl",
        "act/block0/mean",
        "act/block1/absmax",
    } <= names
    assert handle.metrics_since("tokens_seen")[-1] == (12, 12 * 4 * 32)
    assert [sample.step for sample in handle.samples()] == [6, 12]
    assert all(sample.text for sample in handle.samples())
    kinds = [event.kind for event in handle.events()]
    assert kinds[0] == "start" and kinds[-1] == "finished" and "checkpoint" in kinds

    meta = handle.meta()
    assert meta["config_hash"] == config.config_hash()
    assert meta["hooks"] == ["activation_stats:4"]
    assert {"python", "torch", "transformers", "smoltui"} <= set(meta["versions"])
    assert "git_commit" in meta and meta["device"] == "cpu" and meta["precision"] == "fp32"
    # keep the last 2 plus the best by validation loss
    kept = [c.step for c in checkpoints.list_checkpoints(handle.run_dir)]
    assert kept[-2:] == [10, 12] and len(kept) <= 3
    assert checkpoints.latest_checkpoint(handle.run_dir).step == 12
    assert (handle.run_dir.stat().st_mode & 0o777) == 0o700
    assert (handle.log_path().stat().st_mode & 0o777) == 0o600
    assert "Writing model shards" not in handle.log_path().read_text()
    assert list_runs(workspace)[0].status == "finished"


def test_resume_gives_identical_losses(workspace, corpus):
    straight = launch_run(tiny_config(corpus), workspace)
    interrupted = launch_run(tiny_config(corpus), workspace, stop_at=10)
    assert straight.wait(timeout=120) == "finished"
    assert interrupted.wait(timeout=120) == "stopped"
    assert checkpoints.latest_checkpoint(interrupted.run_dir).step == 10
    resumed = resume_run(interrupted.run_id, workspace)
    assert resumed.wait(timeout=120) == "finished", resumed.log_path().read_text()
    assert losses(resumed) == losses(straight)  # exactly equal, dropout and all
    assert resumed.metrics_since("val/loss") == straight.metrics_since("val/loss")


def test_pause_resume_checkpoint_sample_and_stop_through_commands(workspace, corpus):
    handle = launch_run(tiny_config(corpus, max_steps=100_000, eval_every=1000, checkpoint_every=1000), workspace)
    wait_for(lambda: last_step(handle) > 0, what="the first step")

    handle.pause()
    wait_for(lambda: handle.status() == "paused", what="paused")
    paused_at = last_step(handle)
    time.sleep(1.5)
    assert last_step(handle) == paused_at

    handle.resume()
    wait_for(lambda: last_step(handle) > paused_at + 5, what="steps after resume")
    handle.sample_now()
    wait_for(lambda: handle.samples(), what="a sample")
    handle.checkpoint_now()
    wait_for(lambda: checkpoints.latest_checkpoint(handle.run_dir), what="a checkpoint")

    handle.stop()
    assert handle.wait(timeout=60) == "stopped"
    assert checkpoints.latest_checkpoint(handle.run_dir).step == last_step(handle)
    assert any(event.kind == "paused" for event in handle.events())


def test_sigterm_stops_cleanly_with_a_checkpoint(workspace, corpus):
    handle = launch_run(tiny_config(corpus, max_steps=100_000, checkpoint_every=1000), workspace)
    wait_for(lambda: last_step(handle) > 3, what="a few steps")
    os.kill(handle.process.pid, signal.SIGTERM)
    assert handle.wait(timeout=60) == "stopped"
    assert handle.process.returncode == 0
    assert checkpoints.latest_checkpoint(handle.run_dir).step == last_step(handle)
    assert "received SIGTERM" in handle.events()[-1].message


@pytest.mark.slow
def test_kill_9_at_random_moments_then_resume_from_the_last_complete_checkpoint(workspace, corpus):
    """Checkpoints every step, so many kills land inside a checkpoint write."""
    rng = random.Random(1)
    handle = launch_run(tiny_config(corpus, max_steps=100_000, checkpoint_every=1, keep_last=2), workspace)
    for attempt in range(4):
        wait_for(lambda run=handle: checkpoints.latest_checkpoint(run.run_dir), what="a first checkpoint")
        time.sleep(rng.uniform(0.0, 0.6))
        os.kill(handle.process.pid, signal.SIGKILL)
        handle.process.wait()
        assert handle.status() == "lost"
        latest = checkpoints.latest_checkpoint(handle.run_dir)
        state = checkpoints.load_trainer_state(latest)  # whole and loadable
        assert state["step"] == latest.step
        handle = resume_run(handle.run_id, workspace)
        after = latest.step
        wait_for(lambda run=handle, after=after: last_step(run) > after, what=f"progress after resume {attempt}")
    handle.stop()
    assert handle.wait(timeout=60) == "stopped"
    resumes = [event for event in handle.events() if event.kind == "resume"]
    assert len(resumes) == 4


def test_nan_loss_pauses_and_rolls_back_to_the_last_good_checkpoint(workspace, corpus):
    first = launch_run(tiny_config(corpus, max_steps=50, checkpoint_every=2), workspace, stop_at=2)
    assert first.wait(timeout=120) == "stopped"
    # an absurd learning rate blows the weights up within a step or two
    handle = resume_run(first.run_id, workspace, changes={"lr": 1e30, "grad_clip": 0.0, "warmup_steps": 0})
    wait_for(lambda: handle.status() == "paused", what="the pause after NaN")
    nan = next(event for event in handle.events() if event.kind == "nan")
    assert "became NaN or infinite at step" in nan.message and "(step 2)" in nan.message
    assert all(value == value for _, value in losses(handle))  # no NaN reached the store
    handle.stop()
    assert handle.wait(timeout=60) == "stopped"


def test_a_corpus_shorter_than_the_context_fails_the_run_with_one_sentence(workspace, tmp_path):
    short = tmp_path / "short.txt"
    short.write_text("too short for any window\n")
    handle = start_trainer(create_run(tiny_config(short), workspace), resume=False)  # past the launch checks
    assert handle.wait(timeout=60) == "failed"
    error = [event for event in handle.events() if event.level == "error"][-1]
    assert error.kind == "bad-config"
    assert "shorter --context" in error.message and "Traceback" not in error.message


def test_an_unknown_setting_in_the_store_fails_the_run_with_one_sentence(workspace, corpus):
    run_dir = create_run(tiny_config(corpus), workspace)
    with RunStore.open(run_dir, readonly=False) as store:
        store.set_meta(config={"model": "tiny", "corpus": str(corpus), "unknown_knob": 1})
    result = subprocess.run([sys.executable, "-m", "smoltui.engine.trainer", str(run_dir)], capture_output=True)
    assert result.returncode == 2
    handle = attach(run_dir)
    assert handle.status() == "failed"
    assert "unknown training setting 'unknown_knob'" in handle.events()[-1].message


def test_a_crash_fails_the_run_with_its_traceback_in_events_and_log(workspace, corpus):
    run_dir = create_run(tiny_config(corpus, max_steps=3, checkpoint_every=2), workspace)
    (run_dir / "checkpoints").write_text("a file where the checkpoint folder should be")
    handle = start_trainer(run_dir, resume=False)
    assert handle.wait(timeout=120) == "failed"
    crash = handle.events()[-1]
    assert crash.level == "error" and crash.kind == "crash"
    assert crash.message.startswith("Traceback") and "save_checkpoint" in crash.message
    assert "Traceback" in handle.log_path().read_text()
    assert handle.process.returncode == 1


def test_a_checkpoint_is_a_model_source(workspace, corpus):
    from smoltui.engine.models import load_model

    handle = launch_run(tiny_config(corpus, max_steps=10, checkpoint_every=5), workspace)
    assert handle.wait(timeout=120) == "finished"
    at_five = load_model(f"run:{handle.run_id}@5", device="cpu", workspace=workspace)
    latest = load_model("run:latest", device="cpu", workspace=workspace)
    assert at_five.kind == "run" and latest.summary.total_params == at_five.summary.total_params
    assert not all((a == b).all() for a, b in zip(at_five.model.parameters(), latest.model.parameters(), strict=True))
    with pytest.raises(Exception, match="no checkpoint at step 7; its checkpoints are at steps: 5, 10"):
        load_model(f"run:{handle.run_id}@7", device="cpu", workspace=workspace)


def process_state(pid: int) -> str | None:
    """The state letter /proc gives process `pid` (Z for a zombie), or None once the pid is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
@pytest.mark.parametrize("nproc", [1, pytest.param(2, marks=pytest.mark.slow, id="torchrun")])
def test_a_finished_trainer_is_reaped_while_its_launcher_lives_on(workspace, corpus, nproc):
    """Like the dashboard, this test launches a run and never waits on its process: the trainer (or torchrun
    around two ranks) must still not linger as a zombie once it ends."""
    config = tiny_config(corpus, max_steps=3, eval_every=3, checkpoint_every=3, nproc_per_node=nproc)
    handle = launch_run(config, workspace)
    pid = handle.process.pid
    wait_for(lambda: handle.status() == "finished", timeout=240, what="the run to finish")
    wait_for(lambda: process_state(pid) is None, timeout=60, what=f"pid {pid} reaped")
    assert handle.process.returncode == 0  # the reaper kept the exit status for whoever asks
    assert handle.wait(timeout=5) == "finished"


def test_a_killed_trainer_is_reaped_and_its_run_reads_lost(workspace, corpus):
    handle = launch_run(tiny_config(corpus, max_steps=100_000, checkpoint_every=1000), workspace)
    wait_for(lambda: last_step(handle) > 0, what="the first step")
    os.kill(handle.process.pid, signal.SIGKILL)
    wait_for(lambda: process_state(handle.process.pid) is None, timeout=30, what="the killed trainer reaped")
    assert handle.status() == "lost"
    assert handle.process.returncode == -signal.SIGKILL
    assert handle.wait(timeout=5) == "lost"


def run_under_torchrun(run_dir: Path, ranks: int = 2) -> None:
    """Train a created run with `ranks` CPU processes under torchrun, as a user would; fail with its output."""
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(ranks),
        "-m",
        "smoltui.engine.trainer",
        str(run_dir),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # torchrun and both ranks share this group
    assert process.returncode == 0, output.decode()


@pytest.mark.slow
def test_two_cpu_ranks_under_torchrun(workspace, corpus):
    run_dir = create_run(tiny_config(corpus, max_steps=6, eval_every=3, checkpoint_every=3), workspace)
    run_under_torchrun(run_dir)
    handle = attach(run_dir)
    assert handle.status() == "finished"
    assert handle.meta()["world_size"] == 2
    assert [step for step, _ in losses(handle)] == list(range(1, 7))
    assert handle.metrics_since("tokens_seen")[-1] == (6, 6 * 2 * 4 * 32)  # both ranks' tokens
    state = checkpoints.load_trainer_state(checkpoints.latest_checkpoint(run_dir))
    assert len(state["ranks"]) == 2


@pytest.mark.slow
def test_two_cpu_ranks_read_their_own_shares_of_sequential_windows(workspace, corpus):
    """Each step, rank 0 reads the first 4 of 8 consecutive windows and rank 1 the next 4, never the same ones."""
    config = tiny_config(corpus, batching="sequential", max_steps=3, eval_every=3, checkpoint_every=3)
    run_dir = create_run(config, workspace)
    run_under_torchrun(run_dir)
    state = checkpoints.load_trainer_state(checkpoints.latest_checkpoint(run_dir))
    next_windows = [(rank["batches"]["epoch"], rank["batches"]["position"]) for rank in state["ranks"]]
    # after 3 steps of 2 ranks x 4 windows, rank 0 has read windows 0-3, 8-11, 16-19 and rank 1 4-7, 12-15, 20-23
    assert next_windows == [(0, 24), (0, 28)]
    assert attach(run_dir).metrics_since("tokens_seen")[-1] == (3, 3 * 2 * 4 * 32)
