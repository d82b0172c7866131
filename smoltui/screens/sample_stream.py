"""The columns of tokens on the Sample screen and how streamed tokens reach them.

A Column is one stream of text on screen (the conversation, or model A or B of an A/B run) with the records of its
tokens, the job that feeds it and how fast it went. A StreamBuffer collects the session's events as they arrive
(one message per token, handled in constant time) and hands them over in batches at the screen's frame rate, so
a burst of tokens becomes one append and one repaint.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from smoltui.engine.decode_events import DecodeFinished, TokenGenerated
from smoltui.formatting import probability_colour

if TYPE_CHECKING:
    from smoltui.engine.session import Job
    from smoltui.widgets.token_view import TokenView

END_MARK = "∎"  # an end-of-text token: it ends the answer and has a probability, but no text
STOP_WORDS = {
    "eos": "end of text",
    "stop_string": "stop string",
    "max_tokens": "max tokens",
    "context_full": "context full",
    "constraint": "JSON complete",
    "cancelled": "stopped",
}


@dataclass(eq=False)
class Column:
    """One stream of tokens on screen and what the screen knows about it."""

    name: str  # "A" (also the single view's conversation) or "B"
    view: TokenView
    tokens: list[TokenGenerated] = field(default_factory=list)  # every token in the view, by its index there
    eos_ids: frozenset[int] = frozenset()
    job: Job | None = None
    answer_start: int = 0  # the index of the current answer's first token
    charted: int = 0  # how many of the answer's tokens the sparkline shows
    answer_text: str = ""  # the latest answer, complete (without its end token)
    outcome: str = ""  # how the latest answer ended, in words
    first_applied: float | None = None
    last_applied: float | None = None
    applied_since_first: int = 0  # tokens applied after the first batch: the rate's numerator

    def start_answer(self, job: Job, eos_ids: frozenset[int]) -> None:
        self.job, self.eos_ids = job, eos_ids
        self.answer_start, self.charted = len(self.tokens), 0
        self.answer_text, self.outcome = "", ""
        self.first_applied = self.last_applied = None
        self.applied_since_first = 0

    def clear(self) -> None:
        self.tokens.clear()
        self.answer_start = self.charted = 0
        self.answer_text, self.outcome = "", ""
        self.view.clear()

    @property
    def answer(self) -> list[TokenGenerated]:
        return self.tokens[self.answer_start :]

    def partial_text(self) -> str:
        return "".join(token.text for token in self.answer if token.token_id not in self.eos_ids)

    def show_tokens(self, tokens: list[TokenGenerated], now: float) -> None:
        """Append a batch of tokens to the view, each coloured by its probability, and time the stream."""
        self.tokens.extend(tokens)
        self.view.append(
            (END_MARK if token.token_id in self.eos_ids else token.text, probability_colour(token.probability), True)
            for token in tokens
        )
        if self.first_applied is None:
            self.first_applied = now
        else:
            self.applied_since_first += len(tokens)
        self.last_applied = now

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens per second as the screen applied them, from its first batch to its last (None before two)."""
        if self.first_applied is None or self.last_applied is None or self.last_applied <= self.first_applied:
            return None
        return self.applied_since_first / (self.last_applied - self.first_applied)

    def finish(self, finished: DecodeFinished) -> None:
        self.answer_text = finished.text
        self.outcome = STOP_WORDS.get(finished.stop_reason, finished.stop_reason)
        if finished.stop_reason == "stop_string" and finished.stop_string:
            self.outcome = f"stop string {finished.stop_string!r}"

    def summary(self) -> str:
        """The column's subtitle: tokens, speed, how it ended."""
        count = len(self.answer)
        if not count and not self.outcome:
            return ""
        parts = [f"{count} token{'s' * (count != 1)}"]
        if (rate := self.tokens_per_s) is not None:
            parts.append(f"{rate:.1f} tokens/s")
        if self.outcome:
            parts.append(self.outcome)
        return " · ".join(parts)


def measure_of(token: TokenGenerated, measure: str) -> float:
    """A token's entropy (of the distribution it was drawn from) or its surprise (−log p), in nats."""
    import math

    if measure == "entropy":
        return token.entropy
    return -math.log(max(token.probability, 1e-12))


class StreamBuffer:
    """Session events waiting to be shown, kept in order; `take()` hands them all over at once."""

    def __init__(self) -> None:
        self._events: list[tuple[Column, Any]] = []

    def add(self, column: Column, event: Any) -> None:
        self._events.append((column, event))

    def __bool__(self) -> bool:
        return bool(self._events)

    def take(self, on_tokens: Callable[[Column, list[TokenGenerated]], None], on_event: Callable[[Column, Any], None]):
        """Pass each column's runs of tokens to `on_tokens` as one batch, and every other event to `on_event`, in
        the order they came."""
        events, self._events = self._events, []
        batch: list[TokenGenerated] = []
        batch_column: Column | None = None
        for column, event in events:
            if isinstance(event, TokenGenerated) and (batch_column is None or column is batch_column):
                batch.append(event)
                batch_column = column
                continue
            if batch_column is not None:
                on_tokens(batch_column, batch)
                batch, batch_column = [], None
            if isinstance(event, TokenGenerated):
                batch, batch_column = [event], column
            else:
                on_event(column, event)
        if batch_column is not None:
            on_tokens(batch_column, batch)
