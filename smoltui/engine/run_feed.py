"""RunFeed: what a viewer of a run reads from its store, only what is new since the last read, and the progress
numbers folded from it (RunProgressState: step, losses, best val, ETA).

The dashboard's poll worker calls `poll()` from a thread and the UI calls `take()` to get everything gathered
since its last take as one `RunDelta`; `smoltui train`'s progress bar follows a run with the same two calls.
The first poll loads the history: short series whole, long ones (a million points) as a downsample of min/max
buckets first and, for the loss, in full on the next poll, so the first paint never waits for a full read.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from smoltui.engine.run_contract import ENDED_STATUSES, TERMINAL_STATUSES, Metric, RunStatus, parse_activation_metric
from smoltui.engine.run_status import effective_status
from smoltui.engine.runs import RunHandle
from smoltui.engine.runstore import Bucket, Event, Sample
from smoltui.formatting import format_duration, last_line

TRAIN_LOSS, VAL_LOSS, TOKENS_SEEN = Metric.TRAIN_LOSS, Metric.VAL_LOSS, Metric.TOKENS_SEEN
SPARK_METRICS = (Metric.LR, Metric.GRAD_NORM, Metric.TOKENS_PER_S)

FULL_READ_BELOW = 20_000  # steps: reading a series this long whole takes ~15 ms, so no downsampled preview
PREVIEW_POINTS = 1_000  # buckets for the first paint of a long loss series (two points each: min and max)
SPARK_POINTS = 200  # buckets for a long series of a small chart, which is never read whole
KEEP_SAMPLES = 50
KEEP_EVENTS = 200
RATE_WINDOW_S = 30.0  # steps/s for the ETA is measured over this much recent wall-clock time

Points = tuple[np.ndarray, np.ndarray]
_EMPTY = (np.empty(0), np.empty(0))


def as_points(rows: Sequence[tuple[int, float]]) -> Points:
    """(steps, values) arrays from `metrics_since` rows."""
    if not rows:
        return _EMPTY
    array = np.asarray(rows, dtype=np.float64)
    return array[:, 0], array[:, 1]


def bucket_points(buckets: Sequence[Bucket]) -> Points:
    """Two points per bucket, its min at its first step and its max at its last, so spikes survive."""
    if not buckets:
        return _EMPTY
    array = np.asarray([(b.first_step, b.last_step, b.min, b.max) for b in buckets], dtype=np.float64)
    return array[:, :2].ravel(), array[:, 2:].ravel()


def _concat(a: Points, b: Points) -> Points:
    return (np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])) if len(a[0]) else b


@dataclass
class RunDelta:
    """What changed in one run since the last take: the UI applies it in one go."""

    replace: dict[str, Points] = field(default_factory=dict)  # whole series (the history, or its full read)
    points: dict[str, Points] = field(default_factory=dict)  # new points to append after `replace`
    samples: list[Sample] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    meta: dict[str, Any] | None = None
    status: str | None = None
    activations: dict[int, dict[str, float]] = field(default_factory=dict)  # block -> {mean, std, absmax}
    step_rate: float | None = None  # steps per second of wall-clock time, observed while watching
    first: bool = False  # the history load of a freshly opened run
    final: bool = False  # the run has ended and this is the last of its data

    def __bool__(self) -> bool:
        return bool(self.replace or self.points or self.samples or self.events or self.activations or self.meta)

    def merge(self, later: RunDelta) -> None:
        """Fold a later delta into this one, as if both had been read at once."""
        for name, points in later.replace.items():
            self.replace[name] = points
            self.points.pop(name, None)
        for name, points in later.points.items():
            self.points[name] = _concat(self.points.get(name, _EMPTY), points)
        self.samples = (self.samples + later.samples)[-KEEP_SAMPLES:]
        self.events = (self.events + later.events)[-KEEP_EVENTS:]
        for block, stats in later.activations.items():
            self.activations.setdefault(block, {}).update(stats)
        if later.meta is not None:
            self.meta, self.status = later.meta, later.status
        self.step_rate = later.step_rate if later.step_rate is not None else self.step_rate
        self.first |= later.first
        self.final |= later.final


class RunFeed:
    """Incremental reader of one run: cursors per metric, samples and events; thread-safe.

    `with_details` reads everything the dashboard shows of its main run; without it (an overlaid run) only the
    train and val loss.
    """

    def __init__(self, handle: RunHandle, *, with_details: bool = True) -> None:
        self.handle = handle
        self.run_id = handle.run_id
        self.with_details = with_details
        self.ended = False
        self._lock = threading.Lock()
        self._pending = RunDelta()
        self._cursors: dict[str, int] = {}
        self._full_read_due: set[str] = set()
        self._history_taken = False  # full reads wait for it, so they never hold up the first paint
        self._activation_names: list[str] = []
        self._wants_activations = False
        self._sample_id = self._event_id = 0
        self._progress: deque[tuple[float, int]] = deque()  # (monotonic time, last step) seen by polls
        self._status: str | None = None
        self.closed = False

    @property
    def metrics(self) -> tuple[str, ...]:
        if not self.with_details:
            return TRAIN_LOSS, VAL_LOSS
        return TRAIN_LOSS, VAL_LOSS, *SPARK_METRICS, TOKENS_SEEN, *self._activation_names

    def poll(self) -> bool:
        """Read what is new into the pending delta; True if there is anything for the UI to take.

        A poll that finds the run ended is its final read: the status is read first and the trainer writes its
        last data in the same transaction as its final status, so nothing can follow.
        """
        if not self._lock.acquire(blocking=False):
            return False  # a poll is still reading (a long history); the next tick tries again
        try:
            if self.closed or self.ended:
                return False
            delta = self._read()
            self._pending.merge(delta)
            return bool(self._pending)
        finally:
            self._lock.release()

    def take(self) -> RunDelta:
        """Everything read since the last take (an empty delta if nothing)."""
        with self._lock:
            delta, self._pending = self._pending, RunDelta()
            self._history_taken |= delta.first
        return delta

    def close(self) -> None:
        with self._lock:
            self.closed = True
            self.handle.close()

    # -- reading

    def _read(self) -> RunDelta:
        store = self.handle.store
        meta = store.meta()
        status = effective_status(meta)
        first = not self._cursors and self._status is None
        delta = RunDelta(first=first)
        if status != self._status or first:
            delta.meta, delta.status = meta, status
            self._status = status
        if first:
            self._load_history(delta, meta)
        else:
            self._read_new(delta, meta)
        if status in ENDED_STATUSES and not self._full_read_due:  # a preview still owes its full read: one more poll
            self.ended = delta.final = True
            delta.meta, delta.status = meta, status
        delta.step_rate = self._step_rate()
        return delta

    def _load_history(self, delta: RunDelta, meta: dict[str, Any]) -> None:
        store = self.handle.store
        for name in (TRAIN_LOSS, *SPARK_METRICS) if self.with_details else (TRAIN_LOSS,):
            last = store.last_metric(name)
            if last is None:
                continue
            if last[0] < FULL_READ_BELOW:
                delta.replace[name] = as_points(store.metrics_since(name, -1))
            else:
                points = PREVIEW_POINTS if name == TRAIN_LOSS else SPARK_POINTS
                delta.replace[name] = bucket_points(store.metrics_downsampled(name, points))
                if name == TRAIN_LOSS:
                    self._full_read_due.add(name)
            self._cursors[name] = int(delta.replace[name][0][-1]) if len(delta.replace[name][0]) else last[0]
        delta.replace[VAL_LOSS] = as_points(store.metrics_since(VAL_LOSS, -1))
        self._advance(VAL_LOSS, delta.replace[VAL_LOSS])
        if not self.with_details:
            return
        last = store.last_metric(TOKENS_SEEN)
        if last is not None:
            delta.points[TOKENS_SEEN] = (np.array([last[0]], float), np.array([last[1]], float))
            self._cursors[TOKENS_SEEN] = last[0]
        config = meta.get("config") or {}
        self._wants_activations = any(str(h).startswith("activation_stats") for h in config.get("hooks", ()))
        self._find_activation_names(delta)
        samples, events = self.handle.samples(0), self.handle.events(0)
        delta.samples, delta.events = samples[-KEEP_SAMPLES:], events[-KEEP_EVENTS:]
        self._sample_id = samples[-1].id if samples else 0
        self._event_id = events[-1].id if events else 0

    def _find_activation_names(self, delta: RunDelta) -> None:
        names = [n for n in self.handle.store.metric_names() if parse_activation_metric(n)]
        for name in names:
            last = self.handle.store.last_metric(name)
            if last is not None:
                self._note_activation(delta, name, last[1])
                self._cursors[name] = last[0]
        self._activation_names = names

    def _note_activation(self, delta: RunDelta, name: str, value: float) -> None:
        block, statistic = parse_activation_metric(name)
        delta.activations.setdefault(block, {})[statistic] = value

    def _read_new(self, delta: RunDelta, meta: dict[str, Any]) -> None:
        store = self.handle.store
        if self._history_taken:
            for name in self._full_read_due:
                delta.replace[name] = as_points(store.metrics_since(name, -1))
                self._advance(name, delta.replace[name])
            self._full_read_due.clear()
        if self.with_details and self._wants_activations and not self._activation_names:
            self._find_activation_names(delta)  # their latest values go into this delta, cursors set
        for name in self.metrics:
            points = as_points(store.metrics_since(name, self._cursors.get(name, -1)))
            if not len(points[0]):
                continue
            self._advance(name, points)
            if parse_activation_metric(name):
                self._note_activation(delta, name, float(points[1][-1]))
            else:
                delta.points[name] = points
        if self.with_details:
            if samples := self.handle.samples(self._sample_id):
                delta.samples, self._sample_id = samples[-KEEP_SAMPLES:], samples[-1].id
            if events := self.handle.events(self._event_id):
                delta.events, self._event_id = events[-KEEP_EVENTS:], events[-1].id

    def _advance(self, name: str, points: Points) -> None:
        if len(points[0]):
            self._cursors[name] = max(self._cursors.get(name, -1), int(points[0][-1]))
        if name == TRAIN_LOSS and len(points[0]):
            now = time.monotonic()
            self._progress.append((now, int(points[0][-1])))
            while self._progress and now - self._progress[0][0] > RATE_WINDOW_S:
                self._progress.popleft()

    def _step_rate(self) -> float | None:
        """Steps per second over the recent window, once it spans a few seconds (else None)."""
        if len(self._progress) < 2:
            return None
        (t0, s0), (t1, s1) = self._progress[0], self._progress[-1]
        return (s1 - s0) / (t1 - t0) if t1 - t0 >= 3.0 and s1 > s0 else None


def eta_seconds(
    step: int,
    max_steps: int,
    *,
    step_rate: float | None = None,
    tokens_per_s: Iterable[float] = (),
    tokens_per_step: float | None = None,
) -> float | None:
    """Seconds left: from the step rate seen while watching (it includes evaluations and samples), else from the
    recent tokens/s the trainer logs and the tokens of one step. None when neither is known."""
    left = max(0, max_steps - step)
    if step_rate:
        return left / step_rate
    recent = [t for t in tokens_per_s if t > 0]
    if recent and tokens_per_step:
        return left * tokens_per_step / (sum(recent) / len(recent))
    return None


@dataclass
class RunProgressState:
    """The numbers the progress panel shows, folded from the deltas of the main run."""

    status: str = RunStatus.CREATED
    step: int = 0
    max_steps: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    tokens_seen: float | None = None
    tokens_per_step: float | None = None
    tokens_at: tuple[float, float] | None = None  # (step, tokens seen) of the last tokens_seen point
    recent_tokens_per_s: deque[float] = field(default_factory=lambda: deque(maxlen=20))
    best_val: tuple[int, float] | None = None  # (step, loss)
    last_train: float | None = None
    last_val: float | None = None
    step_rate: float | None = None
    problem: str | None = None  # the last error event's sentence: why a run failed

    def fold(self, delta: RunDelta) -> None:
        if delta.meta is not None:
            meta = delta.meta
            self.status = delta.status or self.status
            self.max_steps = meta.get("max_steps") or (meta.get("config") or {}).get("max_steps")
            self.started_at = meta.get("started_at")
            self.ended_at = meta.get("ended_at") if self.status in TERMINAL_STATUSES else None
            if self.status == RunStatus.LOST and self.ended_at is None:
                self.ended_at = meta.get("heartbeat")
        for name, (steps, values) in (*delta.replace.items(), *delta.points.items()):
            if not len(steps):
                continue
            if name == TRAIN_LOSS:
                self.step = int(steps[-1]) if name in delta.replace else max(self.step, int(steps[-1]))
                self.last_train = float(values[-1])
            elif name == VAL_LOSS:
                self.last_val = float(values[-1])
                finite = np.isfinite(values)
                if finite.any():
                    best = int(np.argmin(np.where(finite, values, np.inf)))
                    if self.best_val is None or values[best] < self.best_val[1]:
                        self.best_val = (int(steps[best]), float(values[best]))
            elif name == Metric.TOKENS_PER_S:
                self.recent_tokens_per_s.extend(float(v) for v in values[-20:])
            elif name == TOKENS_SEEN:
                pairs = [self.tokens_at or (0, 0.0), *zip(steps[-2:].tolist(), values[-2:].tolist(), strict=True)]
                (s0, v0), (s1, v1) = pairs[-2], pairs[-1]
                if s1 > s0:
                    self.tokens_per_step = (v1 - v0) / (s1 - s0)
                self.tokens_seen, self.tokens_at = v1, (s1, v1)
        for event in delta.events:
            if event.level == "error":
                self.problem = last_line(event.message)
        if delta.step_rate is not None:
            self.step_rate = delta.step_rate

    def eta(self) -> float | None:
        if self.status != RunStatus.RUNNING or self.max_steps is None:
            return None
        return eta_seconds(
            self.step,
            self.max_steps,
            step_rate=self.step_rate,
            tokens_per_s=self.recent_tokens_per_s,
            tokens_per_step=self.tokens_per_step,
        )

    def clock_text(self, now: float | None = None) -> str:
        """What the run's clock says, in words that follow its state: the time left while it runs, how long it
        has run while it is paused, how long it took once it ended."""
        eta = self.eta()
        if eta is not None:
            return f"ETA {format_duration(eta)}"
        if self.status == RunStatus.RUNNING:
            return "ETA …"
        if self.status == RunStatus.CREATED:
            return "starting…"
        elapsed = self.elapsed(now)
        if elapsed is None:
            return ""
        if self.status == RunStatus.PAUSED:
            return f"paused after {format_duration(elapsed)}"
        if self.status == RunStatus.LOST:
            return f"lost after {format_duration(elapsed)}"
        return f"took {format_duration(elapsed)}"

    def elapsed(self, now: float | None = None) -> float | None:
        if self.started_at is None:
            return None
        end = self.ended_at if self.ended_at is not None else (time.time() if now is None else now)
        return max(0.0, end - self.started_at)
