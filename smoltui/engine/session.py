"""The model session: the loaded model and its tokenizer, and one worker thread that runs every inference job on
it in turn (load, generate, score; later lens, attention and surgery), cancellable between tokens.

Why one worker (DESIGN, decision 7): a KV cache, an nnsight trace or a weight edit must not run concurrently on
one model, and on 2 cores two jobs only slow each other. Screens submit jobs and hear about them through the
`listener` callback, called on the worker thread with plain event objects (the app forwards them as Textual
messages with `post_message`, which never blocks the worker). A job's own events (a token, a progress line)
come as `JobProgressed`; every job ends with exactly one of `JobFinished`, `JobFailed` or `JobCancelled`.
A job that cannot return early (an operation in several phases) calls `context.stop_if_cancelled()` between its
steps: what it raises once the job is cancelled ends the job as cancelled, not failed.

Loading a model cancels what runs or waits on the old one: a job is bound to the model it was submitted for.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from smoltui.engine.errors import UserError

GIVE_WAY_S = 0.15  # how long a key press holds the running job: a screen switch takes ~30-60 ms on 2 cores

if TYPE_CHECKING:
    from smoltui.engine.models import LoadedModel
    from smoltui.engine.sampler_settings import SamplerSettings


@dataclass(eq=False)
class Job:
    """One piece of work for the session's worker; `cancel()` stops it between tokens (or before it starts)."""

    id: int
    kind: str  # "load", "generate", "score", …
    description: str
    model_generation: int  # the model it was submitted for; a later model cancels it
    tag: Any = None  # who asked for it, opaque to the session: a listener routes the job's events by it
    cancelled: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None

    def cancel(self) -> None:
        self.cancelled.set()

    def wait(self, timeout: float | None = None) -> Any:
        """Block until the job ends; its result, or the error it raised (for scripts and tests)."""
        if not self.finished.wait(timeout):
            raise TimeoutError(f"job {self.id} ({self.kind}) still running after {timeout} s")
        if self.error is not None:
            raise self.error
        return self.result


@dataclass(frozen=True)
class JobStarted:
    job: Job


@dataclass(frozen=True)
class JobProgressed:
    """Something a running job has to say: a decoder event, a scored text, a line of loading progress."""

    job: Job
    event: Any


@dataclass(frozen=True)
class JobFinished:
    job: Job
    result: Any


@dataclass(frozen=True)
class JobFailed:
    job: Job
    error: BaseException  # a UserError is the person's mistake; anything else is a bug


@dataclass(frozen=True)
class JobCancelled:
    job: Job


@dataclass(frozen=True)
class ModelChanged:
    """The session's model is now `loaded` (None: no model)."""

    loaded: LoadedModel | None


SessionEvent = JobStarted | JobProgressed | JobFinished | JobFailed | JobCancelled | ModelChanged


class JobStopped(Exception):
    """Raised by `JobContext.stop_if_cancelled` inside a cancelled job's work; the job ends as JobCancelled."""


@dataclass
class JobContext:
    """What a job's work function gets: the model it runs on, its cancel flag, and a way to speak."""

    job: Job
    loaded: LoadedModel | None
    emit: Callable[[Any], None]

    @property
    def cancelled(self) -> threading.Event:
        return self.job.cancelled

    def stop_if_cancelled(self) -> None:
        """Raise JobStopped when the job has been cancelled: for work that stops between its steps by raising."""
        if self.job.cancelled.is_set():
            raise JobStopped(f"job {self.job.id} ({self.job.kind}) was cancelled")

    def require_model(self) -> LoadedModel:
        if self.loaded is None:
            raise UserError("no model is loaded; load one on the Model screen (key 2) or pass a model source.")
        return self.loaded


class ModelSession:
    """One model, one worker thread, jobs in order. Thread-safe: submit and cancel from any thread."""

    def __init__(self, listener: Callable[[SessionEvent], None] | None = None) -> None:
        self.listener = listener or (lambda _event: None)
        self.loaded: LoadedModel | None = None
        self._generation = 0
        self._ids = itertools.count(1)
        self._queue: queue.Queue[tuple[Job, Callable[[JobContext], Any]] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._running: Job | None = None
        self._waiting: list[Job] = []
        self._held_until = 0.0  # the running job waits at its events until then (give_way)
        self._worker = threading.Thread(target=self._work, name="model-session", daemon=True)
        self._worker.start()

    # -- submitting ---------------------------------------------------------------------------------------

    def submit(self, kind: str, work: Callable[[JobContext], Any], description: str = "", *, tag: Any = None) -> Job:
        """Queue `work(context)` for the worker; its return value is the job's result."""
        with self._lock:
            job = Job(next(self._ids), kind, description or kind, self._generation, tag=tag)
            self._waiting.append(job)
        self._queue.put((job, work))
        return job

    def load(
        self, source: str, *, then: Callable[[LoadedModel], Any] | None = None, tag: Any = None, **options: Any
    ) -> Job:
        """Load `source` (any model source, see models.load_model) and make it the session's model.

        Everything running or waiting on the current model is cancelled first; the load's progress lines come
        as JobProgressed events, and ModelChanged comes before its JobFinished. The result is the LoadedModel,
        or what `then(loaded)` returns (computed on the worker: a module table, say, off the UI's loop).
        """
        self.cancel_all()

        def work(context: JobContext) -> Any:
            from transformers.utils import logging as transformers_logging

            from smoltui.engine.models import load_model

            transformers_logging.disable_progress_bar()  # its bars would write over a screen; steps come as events
            transformers_logging.set_verbosity_error()
            loaded = load_model(source, progress=context.emit, **options)
            result = loaded if then is None else then(loaded)
            self._become(loaded)
            return result

        return self.submit("load", work, f"load {source}", tag=tag)

    def use(self, loaded: LoadedModel | None) -> None:
        """Make an already loaded model the session's (cancelling what ran on the previous one)."""
        self.cancel_all()
        self._become(loaded)

    def generate(
        self,
        *,
        prompt: str | None = None,
        messages: Sequence[Mapping[str, str]] | None = None,
        system: str | None = None,
        sampling: SamplerSettings | None = None,
        max_new_tokens: int = 256,
        seed: int | None = None,
        stop_strings: Sequence[str] = (),
        json_schema: dict | str | Path | None = None,
        top_n: int = 20,
        using: Callable[[JobContext], LoadedModel] | None = None,
        tag: Any = None,
    ) -> Job:
        """Stream a completion of `prompt`, or the assistant's next turn of `messages` (chat), token by token.

        Each decoder event (PromptTruncated, TokenGenerated, DecodeFinished) comes as JobProgressed; a chat
        prompt to a model without a template comes with a first event, a ChatPrompt, whose `note` says so. The
        result is the DecodeFinished event. `using(context)`, called on the worker, gives another model to decode
        with than the session's (the Sample screen's model B, which the job loads once and keeps).
        """
        if (prompt is None) == (messages is None):
            raise ValueError("give a prompt or messages, not both")

        def work(context: JobContext):
            from smoltui.engine.decoder import decode

            loaded = context.require_model() if using is None else using(context)
            model, tokenizer = loaded.model, loaded.tokenizer
            ids = prompt_ids(tokenizer, prompt=prompt, messages=messages, system=system, emit=context.emit)
            constraint = schema_constraint(json_schema, tokenizer, model) if json_schema is not None else None
            finished = None
            for event in decode(
                model,
                tokenizer,
                ids,
                max_new_tokens=max_new_tokens,
                sampling=sampling,
                seed=seed,
                stop_strings=stop_strings,
                top_n=top_n,
                constraint=constraint,
                should_stop=context.cancelled,
            ):
                context.emit(event)
                finished = event
            return finished

        return self.submit("generate", work, "generate", tag=tag)

    def score(self, text: str, *, tag: Any = None) -> Job:
        """The log-probability of every token of `text` under the session's model (the result: a TextScore)."""

        def work(context: JobContext):
            from smoltui.engine.scoring import score_text

            loaded = context.require_model()
            return score_text(loaded.model, loaded.tokenizer, text)

        return self.submit("score", work, "score", tag=tag)

    # -- cancelling and closing ---------------------------------------------------------------------------

    def give_way(self, seconds: float = GIVE_WAY_S) -> None:
        """Hold the running job at its next event for `seconds` (from now; a later call extends it), so that the
        interface answers a key with the cores and the GIL to itself. A generation that went on meanwhile made a
        screen switch on 2 cores take up to 3x as long; a key press now costs the decoder a few tokens' time."""
        self._held_until = max(self._held_until, time.monotonic() + seconds)

    def cancel_all(self) -> None:
        """Cancel the running job and every waiting one."""
        with self._lock:
            for job in [*self._waiting, *([self._running] if self._running else [])]:
                job.cancel()

    @property
    def busy(self) -> bool:
        with self._lock:
            return self._running is not None or bool(self._waiting)

    def close(self, timeout: float | None = 5.0) -> None:
        """Cancel everything and stop the worker (it ends after the current token)."""
        self.cancel_all()
        self._queue.put(None)
        self._worker.join(timeout)

    # -- the worker ---------------------------------------------------------------------------------------

    def _become(self, loaded: LoadedModel | None) -> None:
        with self._lock:
            self.loaded = loaded
            self._generation += 1
        self.listener(ModelChanged(loaded))

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            job, work = item
            with self._lock:
                self._waiting.remove(job)
                stale = job.model_generation != self._generation and job.kind != "load"
                if stale:
                    job.cancel()  # submitted for a model that has been replaced since
                self._running = None if job.cancelled.is_set() else job
                loaded = self.loaded
            if self._running is None:
                self._end(job, JobCancelled(job))
                continue
            self.listener(JobStarted(job))
            try:
                job.result = work(JobContext(job, loaded, lambda event, job=job: self._progress(job, event)))
            except JobStopped:
                ended: SessionEvent = JobCancelled(job)
            except BaseException as error:  # reported, never lost: the worker must outlive any job
                job.error = out_of_memory(job, error) or error
                ended = JobFailed(job, job.error)
            else:
                ended = JobCancelled(job) if job.cancelled.is_set() else JobFinished(job, job.result)
            with self._lock:
                self._running = None
            self._end(job, ended)

    def _progress(self, job: Job, event: Any) -> None:
        """A job's event (a token, a step): passed on, after waiting while the interface has asked for the machine."""
        while not job.cancelled.is_set() and (delay := self._held_until - time.monotonic()) > 0:
            time.sleep(min(delay, 0.02))
        self.listener(JobProgressed(job, event))

    def _end(self, job: Job, event: SessionEvent) -> None:
        job.finished.set()
        self.listener(event)


def out_of_memory(job: Job, error: BaseException) -> UserError | None:
    """The sentence for a job that ran out of memory (the model stays loaded, the next job may fit), or None."""
    import torch

    cpu_refused = isinstance(error, RuntimeError) and "can't allocate memory" in str(error)  # torch's CPU allocator
    if not (cpu_refused or isinstance(error, MemoryError | torch.OutOfMemoryError)):
        return None
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # what the failed job held goes back to the device
    what = job.description or job.kind
    return UserError(
        f"out of memory during {what}: try a shorter prompt or fewer max tokens, close what else uses the memory, "
        "or load the model in a smaller dtype (bf16)."
    )


def prompt_ids(
    tokenizer,
    *,
    prompt: str | None,
    messages: Sequence[Mapping[str, str]] | None,
    system: str | None,
    emit: Callable[[Any], None],
) -> list[int]:
    """The token ids to decode from: a chat through the template (its note, if any, emitted first) or a prompt."""
    if messages is not None:
        from smoltui.engine.chat import chat_prompt

        chat = chat_prompt(tokenizer, messages, system=system)
        if chat.note:
            emit(chat)
        return chat.ids
    return list(tokenizer(prompt)["input_ids"])


def schema_constraint(schema: dict | str | Path, tokenizer, model):
    """The structured-output constraint for a JSON schema (a dict, JSON text, or a file)."""
    from smoltui.engine.structured import JsonSchemaConstraint

    vocab = model.get_input_embeddings().num_embeddings
    if isinstance(schema, Path):
        return JsonSchemaConstraint.from_file(schema, tokenizer, vocab_size=vocab)
    return JsonSchemaConstraint(schema, tokenizer, vocab_size=vocab)
