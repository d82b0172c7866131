"""The model session: one worker runs jobs in turn, streams their events, cancels between tokens, and a new model
cancels what ran on the old one."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from smoltui.engine.errors import UserError
from smoltui.engine.models import load_model
from smoltui.engine.session import (
    JobCancelled,
    JobFailed,
    JobFinished,
    JobProgressed,
    JobStarted,
    ModelChanged,
    ModelSession,
)


class Recorder:
    """Collects what the session says, from its worker thread."""

    def __init__(self) -> None:
        self.events: list = []
        self.lock = threading.Lock()

    def __call__(self, event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind) -> list:
        with self.lock:
            return [event for event in self.events if isinstance(event, kind)]


@pytest.fixture
def session():
    recorder = Recorder()
    session = ModelSession(recorder)
    session.recorder = recorder
    yield session
    session.close()


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return load_model("tiny", device="cpu")


def test_a_generation_streams_its_tokens_then_finishes(session, tiny):
    session.use(tiny)
    job = session.generate(prompt="The ", max_new_tokens=8, seed=1)
    finished = job.wait(timeout=60)
    assert finished.new_tokens == 8
    kinds = [type(event).__name__ for event in session.recorder.events if getattr(event, "job", None) is job]
    assert kinds[0] == "JobStarted" and kinds[-1] == "JobFinished"
    tokens = [e.event for e in session.recorder.of(JobProgressed) if type(e.event).__name__ == "TokenGenerated"]
    assert len(tokens) == 8 and "".join(t.text for t in tokens) == finished.text
    assert isinstance(session.recorder.events[0], ModelChanged)


def test_a_generation_can_decode_with_another_model_than_the_sessions(session, tiny, tiny_model_folder):
    other = load_model(str(tiny_model_folder), device="cpu")
    session.use(tiny)
    asked = []

    def model_b(context):
        asked.append(context.loaded)  # the session's model stays what it is
        return other

    through_b = session.generate(prompt="The ", max_new_tokens=8, using=model_b).wait(timeout=60)
    through_a = session.generate(prompt="The ", max_new_tokens=8).wait(timeout=60)
    assert asked == [tiny] and session.loaded is tiny
    assert through_b.text == greedy_text(other, "The ", 8) and through_a.text == greedy_text(tiny, "The ", 8)


def greedy_text(loaded, prompt: str, new_tokens: int) -> str:
    """What `decode` writes greedily after `prompt` on `loaded`, outside any session."""
    from smoltui.engine.decoder import DecodeFinished, decode

    ids = loaded.tokenizer(prompt)["input_ids"]
    events = decode(loaded.model, loaded.tokenizer, ids, max_new_tokens=new_tokens)
    return next(event for event in events if isinstance(event, DecodeFinished)).text


def test_cancel_stops_a_generation_between_tokens(session, tiny):
    session.use(tiny)
    job = session.generate(prompt="a", max_new_tokens=10_000, seed=1)
    while not any(isinstance(e, JobProgressed) for e in session.recorder.events):
        time.sleep(0.01)
    job.cancel()
    job.finished.wait(30)
    assert session.recorder.of(JobCancelled)[-1].job is job
    tokens = [e for e in session.recorder.of(JobProgressed) if e.job is job]
    assert len(tokens) < 10_000


def test_work_that_stops_by_raising_once_cancelled_ends_cancelled_and_the_next_job_runs(session):
    steps: list[int] = []
    started = threading.Event()

    def work(context):
        for step in range(1000):
            context.stop_if_cancelled()
            steps.append(step)
            started.set()
            time.sleep(0.01)
        return "all done"

    job = session.submit("surgery", work)
    assert started.wait(10)
    job.cancel()
    assert job.finished.wait(10)
    assert session.recorder.of(JobCancelled)[-1].job is job
    assert not session.recorder.of(JobFailed)
    assert job.error is None and job.result is None and len(steps) < 1000
    assert session.submit("surgery", lambda context: "next").wait(10) == "next"


def test_giving_way_holds_the_running_job_at_its_next_token_then_lets_it_go_on(session):
    session.use(load_model("tiny", device="cpu", overrides={"n_positions": 8192}))
    job = session.generate(prompt="a", max_new_tokens=8000, seed=1)

    def tokens() -> int:
        return sum(1 for event in session.recorder.of(JobProgressed) if event.job is job)

    while tokens() < 3:
        time.sleep(0.01)
    session.give_way(0.6)
    time.sleep(0.1)  # a token under way when the hold began may still come
    held = tokens()
    time.sleep(0.3)
    assert tokens() == held  # nothing while held
    time.sleep(0.5)
    assert tokens() > held  # and on it goes afterwards
    session.give_way(5.0)
    job.cancel()  # a held job still stops at once
    assert job.finished.wait(2.0)


def test_jobs_run_one_at_a_time_in_order(session, tiny):
    session.use(tiny)
    first = session.generate(prompt="x", max_new_tokens=20, seed=1)
    second = session.score("hello there")
    second.wait(timeout=60)
    starts = [e.job for e in session.recorder.of(JobStarted)]
    ends = [e.job for e in session.recorder.of(JobFinished)]
    assert starts == [first, second] and ends == [first, second]
    assert second.result.scored_tokens > 0


def test_a_new_model_cancels_what_runs_and_waits_on_the_old_one(session, tiny, tiny_model_folder):
    session.use(tiny)
    running = session.generate(prompt="a", max_new_tokens=10_000, seed=1)
    waiting = session.generate(prompt="b", max_new_tokens=5)
    while not session.recorder.of(JobStarted):
        time.sleep(0.01)
    load = session.load(str(tiny_model_folder), device="cpu")
    load.wait(timeout=60)
    cancelled = {event.job for event in session.recorder.of(JobCancelled)}
    assert {running, waiting} <= cancelled
    assert session.loaded.source == str(tiny_model_folder)
    assert session.recorder.of(ModelChanged)[-1].loaded is session.loaded
    progress = [e.event for e in session.recorder.of(JobProgressed) if e.job is load]
    assert any("loading weights" in str(line) for line in progress)  # the load's progress lines come as events


def test_a_mistake_fails_its_job_in_one_sentence_and_the_worker_goes_on(session, tiny):
    job = session.generate(prompt="a", max_new_tokens=4)  # no model yet
    with pytest.raises(UserError, match="no model is loaded"):
        job.wait(timeout=30)
    assert isinstance(session.recorder.of(JobFailed)[-1].error, UserError)
    session.use(tiny)
    bad = session.generate(prompt="a", max_new_tokens=0)
    with pytest.raises(UserError, match="max new tokens must be at least 1"):
        bad.wait(timeout=30)
    assert session.generate(prompt="a", max_new_tokens=2).wait(timeout=30).new_tokens == 2


def test_running_out_of_memory_is_a_sentence_with_the_fix_and_the_model_stays(session, tiny):
    session.use(tiny)
    greedy = session.submit("generate", lambda context: torch.empty(2**40), "a 4 TiB tensor")  # refused at once
    with pytest.raises(UserError, match="out of memory during a 4 TiB tensor: try a shorter prompt"):
        greedy.wait(timeout=30)
    assert session.generate(prompt="a", max_new_tokens=2).wait(timeout=30).new_tokens == 2


def test_a_chat_without_a_template_says_so_and_completes_plainly(session, tiny):
    session.use(tiny)
    job = session.generate(messages=[{"role": "user", "content": "hi"}], max_new_tokens=3)
    job.wait(timeout=30)
    notes = [e.event for e in session.recorder.of(JobProgressed) if type(e.event).__name__ == "ChatPrompt"]
    assert notes and "no chat template" in notes[0].note
