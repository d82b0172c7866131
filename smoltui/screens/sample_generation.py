"""What the Sample screen asks of the model session (generate, stop, the surprise diff) and how the answers come
back: the session's events arrive as SessionUpdated messages, one per token, and are only queued here; they are
put on screen in batches at STREAM_FPS, and the subtitles and the sparkline at the app's refresh rate, so that the
screen never slows the decoder that shares its cores (bench/bench_sample_app.py).
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING

from textual.widgets import Input

from smoltui.engine.chat import ChatPrompt
from smoltui.engine.decode_events import DecodeFinished, PromptTruncated, TokenGenerated
from smoltui.engine.errors import UserError
from smoltui.engine.session import Job, JobCancelled, JobFailed, JobFinished, JobProgressed, JobStarted
from smoltui.messages import SessionUpdated
from smoltui.screens.sample_jobs import SecondModel, SecondModelReady, SurpriseDiff, surprise_diff_work
from smoltui.screens.sample_stream import Column, StreamBuffer, measure_of
from smoltui.widgets.line_chart import LineChart
from smoltui.widgets.sampler_form import FIELD_NAMES, SamplerForm
from smoltui.widgets.token_details import diff_colour
from smoltui.widgets.token_view import TokenView
from smoltui.widgets.worker_errors import describe_error, report_error

if TYPE_CHECKING:
    from textual.timer import Timer

STREAM_FPS = 10  # how often streamed tokens are put on screen: smooth enough to read, one repaint per batch


class SampleJobs:
    """The Sample screen's jobs and their events (a part of SampleScreen, kept apart for its size)."""

    # What SampleScreen provides (see sample.py; _load_job and load_event are BundledModelOffer's).
    chat: bool
    view: str
    cursor_on: bool
    measure: str
    generating: bool
    _columns: dict[str, Column]
    _second: SecondModel
    _stream_timer: Timer
    _selected: TokenView | None
    _load_job: Job | None

    def _init_jobs(self) -> None:
        self._history: list[dict[str, str]] = []  # the conversation so far, as the chat template takes it
        self._pending_turn: dict[str, str] | None = None  # the message being answered
        self._buffer = StreamBuffer()
        self._diff_job: Job | None = None
        self._diff: SurpriseDiff | None = None
        self._diff_text = ""  # the text of the last diff asked for
        self._stop_requested = False
        self._stats_shown_at = 0.0
        self._seed: int | None = None

    # -- generating ------------------------------------------------------------------------------------------

    def action_generate(self) -> None:
        prompt = self.query_one("#prompt", Input)
        if self.view == "diff":
            self._score_diff(prompt.value)
            return
        if self.generating:
            self.notify("Still generating: escape stops it.", timeout=3)
            return
        settings = self.query_one(SamplerForm).read()
        if settings is None:
            form = self.query_one(SamplerForm)
            self.cursor_on = False  # the form shows the mistake beside its field
            self.notify(next(iter(form.errors.values())), title="Nothing generated", severity="error")
            return
        loaded = self.smol.session_model
        if loaded is None:
            self.notify(self.no_model_hint(), severity="warning")
            return
        text = prompt.value
        if self.chat and not text.strip():
            self.notify("Type a message first.", timeout=3)
            return
        source_b = self.query_one("#b-source", Input).value.strip()
        if self.view == "ab" and not source_b:
            self.notify("Type model B's source first (a preset, a folder, run:<id>…).", severity="warning")
            self.query_one("#b-source", Input).focus()
            return
        if settings.sampling.greedy:
            self._seed = None  # nothing is drawn
        else:  # drawn here when not given, so that A and B share it
            self._seed = settings.seed if settings.seed is not None else secrets.randbits(31)
        options = {
            "sampling": settings.sampling,
            "max_new_tokens": settings.max_new_tokens,
            "seed": self._seed,
            "stop_strings": settings.stop_strings,
            "json_schema": settings.json_schema,
            "tag": self,
        }
        system = self.query_one("#system-prompt", Input).value.strip() or None
        self._stop_requested = False
        self._say("")
        self.query_one("#sparkline", LineChart).clear()
        if self.view == "ab":
            turn = [{"role": "user", "content": text}] if self.chat else None
            for key, using in (("column-a", None), ("column-b", self._second.provider(source_b))):
                column = self._columns[key]
                column.clear()
                self._show_prompt(column, text)
                job = self._submit(turn, text, system, options, using)
                column.start_answer(job, self._eos_ids(loaded) if using is None else frozenset())
        else:
            column = self._columns["single"]
            if self.chat:
                self._pending_turn = {"role": "user", "content": text}
                self._show_turn(column, text)
                job = self._submit([*self._history, self._pending_turn], text, system, options, None)
                prompt.value = ""
            else:
                column.clear()
                self._show_prompt(column, text)
                job = self._submit(None, text, system, options, None)
            column.start_answer(job, self._eos_ids(loaded))
        self.generating = True
        self._stream_timer.resume()
        self._titles()
        self._status()
        if self.cursor_on:
            self._show_details()  # the token it showed has gone

    def _submit(self, messages, text, system, options, using) -> Job:
        session = self.smol.session
        if messages is not None:
            return session.generate(messages=messages, system=system, using=using, **options)
        return session.generate(prompt=text, using=using, **options)

    @staticmethod
    def _eos_ids(loaded) -> frozenset[int]:
        from smoltui.engine.decoder import eos_token_ids

        return frozenset(eos_token_ids(loaded.model, loaded.tokenizer))

    def _show_turn(self, column: Column, text: str) -> None:
        column.view.append(
            [*([("\n\n", "", False)] if column.view.text else []), ("You: ", "bold", False), (text, "", False),
             ("\nModel: ", "bold", False)]
        )  # fmt: skip

    def _show_prompt(self, column: Column, text: str) -> None:
        if self.chat:
            column.view.append([("You: ", "bold", False), (text, "", False), ("\nModel: ", "bold", False)])
        else:
            column.view.append([(text, "dim", False)])

    def action_stop(self) -> None:
        self._stop_requested = True
        for column in self._columns.values():
            if column.job is not None:
                column.job.cancel()

    def on_session_updated(self, message: SessionUpdated) -> None:
        message.stop()
        event = message.event
        job = getattr(event, "job", None)
        if job is None or isinstance(event, JobStarted):
            return
        if job is self._load_job:
            self.load_event(event)
        elif job is self._diff_job:
            self._diff_event(event)
        else:
            column = next((c for c in self._columns.values() if c.job is job), None)
            if column is None:
                return
            inner = event.event if isinstance(event, JobProgressed) else event
            self._buffer.add(column, inner)
            if not isinstance(inner, TokenGenerated):
                self._show_pending()  # the end of a job, a note: at once, not at the next frame

    def _show_pending(self) -> None:
        if self._buffer:
            self._buffer.take(self._show_tokens, self._column_event)
        now = time.monotonic()
        if not self.generating or now - self._stats_shown_at >= 1 / self.smol.refresh_fps:
            self._stats_shown_at = now
            self._show_stats()
        if not self.generating:
            self._stream_timer.pause()

    def _show_tokens(self, column: Column, tokens: list[TokenGenerated]) -> None:
        column.show_tokens(tokens, self.smol.clock())

    def _show_stats(self) -> None:
        """The columns' subtitles and the sparkline, at the app's refresh rate: each repaints a whole widget."""
        chart = self.query_one("#sparkline", LineChart)
        for column in self._columns.values():
            charted, answer = column.charted, column.answer
            if len(answer) > charted:
                values = [measure_of(token, self.measure) for token in answer[charted:]]
                chart.append(column.name, range(charted, len(answer)), values)
                column.charted = len(answer)
            summary = column.summary()
            if summary and summary != column.view.border_subtitle:
                column.view.border_subtitle = summary

    def _column_event(self, column: Column, event) -> None:
        if isinstance(event, (PromptTruncated, ChatPrompt)):
            self._say(event.message if isinstance(event, PromptTruncated) else event.note or "")
        elif isinstance(event, str):  # model B's loading steps
            column.view.border_subtitle = event
        elif isinstance(event, SecondModelReady):
            column.eos_ids = event.eos_ids
            column.view.border_title = f"B · {event.title}"
        elif isinstance(event, DecodeFinished):
            column.finish(event)
        elif isinstance(event, JobFinished | JobCancelled | JobFailed):
            self._job_ended(column, event)

    def _job_ended(self, column: Column, event) -> None:
        column.job = None
        if isinstance(event, JobCancelled):
            column.answer_text = column.partial_text()
            column.outcome = "stopped" if self._stop_requested else "cancelled: the model changed"
            if not self._stop_requested:
                self._say("cancelled: the model changed")
        elif isinstance(event, JobFailed):
            column.outcome = "failed"
            error = event.error
            if isinstance(error, UserError) and error.field in FIELD_NAMES:  # not model B's source or tweak
                self.query_one(SamplerForm).show_error(error)
                self.cursor_on = False
            report_error(self, error)
            self._say(f"failed: {describe_error(error)}")
        if column is self._columns["single"] and self._pending_turn is not None:
            if column.answer_text or isinstance(event, JobFinished):
                self._history += [self._pending_turn, {"role": "assistant", "content": column.answer_text}]
            self._pending_turn = None
        if all(c.job is None for c in self._columns.values()):
            self.generating = False
        self._status()

    # -- the surprise diff -----------------------------------------------------------------------------------

    def _score_diff(self, text: str) -> None:
        view = self.query_one("#diff", TokenView)
        source_b = self.query_one("#b-source", Input).value.strip()
        problem = (
            self.no_model_hint()
            or ("" if text else "Type or paste a text below, or generate an answer first: it is scored under A and B.")
            or ("" if source_b else "Type model B's source above (a preset, a folder, run:<id>…), then press enter.")
        )
        view.clear()
        self._diff = None
        if problem:
            view.placeholder = problem
            return
        if self._diff_job is not None:
            self._diff_job.cancel()
        view.placeholder = f"scoring the text under A and under {source_b}…"
        self._titles()
        work = surprise_diff_work(text, self._second.provider(source_b))
        self._diff_job = self.smol.session.submit("score", work, "surprise diff", tag=self)
        self._diff_text = text

    def _diff_event(self, event) -> None:
        view = self.query_one("#diff", TokenView)
        if isinstance(event, JobProgressed):
            if isinstance(event.event, str):
                view.placeholder = event.event
            return
        self._diff_job = None
        if isinstance(event, JobFinished):
            self._diff = event.result
            view.append((token.text, diff_colour(token.delta), True) for token in self._diff.tokens)
            view.border_subtitle = f"perplexity A {self._diff.perplexity_a:.2f} · B {self._diff.perplexity_b:.2f}"
            self._redraw_sparkline()
        elif isinstance(event, JobFailed):
            view.placeholder = describe_error(event.error)
            report_error(self, event.error)
        elif isinstance(event, JobCancelled):
            view.placeholder = "the diff was cancelled: the model changed."
