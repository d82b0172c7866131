"""The run database `<workspace>/runs/<run_id>/run.db`: one trainer writes it, any number of viewers read it.

SQLite in WAL mode, so readers never block the writer and a kill at any instant loses at most the batch that
was being buffered. The trainer's logging calls only append to memory; `flush()` writes everything in one
transaction, by itself at least once a second, at once for warnings, errors and status changes, and on close.
Whether a run's trainer is still alive is judged in run_status; metrics_export writes the metrics out.

Schema (version 1, also in `PRAGMA user_version`):
- `meta(key, value)`: JSON values (config, run_id, status, heartbeat, pid, host, created_at, ...).
- `metric_names(id, name, block_steps)` and `metrics(name_id, step, value, time)` clustered on
  (name_id, step): one value per metric and step (logging a step again replaces it, as a resumed run does).
  NaN is stored as NULL and read back as NaN. The view `metrics_named(step, name, value, time)` serves
  ad-hoc SQL.
- `metric_blocks(name_id, block, ...)`: min, max, sum and count of each run of `block_steps` steps, refreshed
  at each flush, so that downsampling a long series reads blocks instead of every point (see metric_blocks).
- `samples`, `events`, and `commands` (the only table that viewers write).
"""

from __future__ import annotations

import heapq
import json
import math
import operator
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from smoltui.engine.errors import UserError
from smoltui.engine.metric_blocks import downsample, refresh_blocks
from smoltui.engine.run_contract import COMMAND_KINDS, ENDED_STATUSES, EVENT_LEVELS, STATUSES, RunStatus
from smoltui.engine.run_status import effective_status
from smoltui.engine.workspace import ensure_private_dir

SCHEMA_VERSION = 1
DB_NAME = "run.db"
BUSY_TIMEOUT_S = 5.0
_OPEN_RETRY_S = 1.0
_STEP_MIN = -(2**63)

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE metric_names (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, block_steps INTEGER);
CREATE TABLE metrics (
    name_id INTEGER NOT NULL, step INTEGER NOT NULL, value REAL, time REAL NOT NULL,
    PRIMARY KEY (name_id, step)
) WITHOUT ROWID;
CREATE TABLE metric_blocks (
    name_id INTEGER NOT NULL, block INTEGER NOT NULL, first_step INTEGER NOT NULL, last_step INTEGER NOT NULL,
    min REAL, max REAL, sum REAL, count INTEGER NOT NULL,
    PRIMARY KEY (name_id, block)
) WITHOUT ROWID;
CREATE VIEW metrics_named AS
    SELECT m.step, n.name, m.value, m.time FROM metrics m JOIN metric_names n ON n.id = m.name_id;
CREATE TABLE samples (id INTEGER PRIMARY KEY, step INTEGER, prompt TEXT, text TEXT, time REAL);
CREATE TABLE events (id INTEGER PRIMARY KEY, time REAL, level TEXT, kind TEXT, message TEXT);
CREATE TABLE commands (
    id INTEGER PRIMARY KEY, time REAL, kind TEXT NOT NULL, payload TEXT,
    done INTEGER NOT NULL DEFAULT 0, done_time REAL
);
CREATE INDEX commands_pending ON commands (id) WHERE done = 0;
PRAGMA user_version = {SCHEMA_VERSION};
"""


class Bucket(NamedTuple):
    """One point of a downsampled series: the steps it covers and the values inside."""

    first_step: int
    last_step: int
    min: float
    max: float
    mean: float
    last: float


class Sample(NamedTuple):
    id: int
    step: int
    prompt: str
    text: str
    time: float


class Event(NamedTuple):
    id: int
    time: float
    level: str
    kind: str
    message: str


class Command(NamedTuple):
    id: int
    time: float
    kind: str
    payload: Any


def _nan(value: float | None) -> float:
    return math.nan if value is None else value


def _connect(path: Path, readonly: bool) -> sqlite3.Connection:
    mode = "ro" if readonly else "rw"
    conn = sqlite3.connect(
        f"{path.absolute().as_uri()}?mode={mode}",
        uri=True,
        timeout=BUSY_TIMEOUT_S,
        isolation_level=None,  # autocommit; writes use explicit BEGIN IMMEDIATE so busy_timeout applies
        check_same_thread=False,
    )
    if not readonly:
        conn.execute("PRAGMA synchronous = NORMAL")
    return conn


class RunStore:
    """One run's database, opened as the writer (the trainer) or as a reader (viewers, CLI).

    Logging methods belong to the thread that owns the writer; queries and `send_command` are safe from any
    thread and any process. Readers see what the writer has flushed, never its in-memory buffer.
    """

    def __init__(self, run_dir: Path, conn: sqlite3.Connection, readonly: bool, flush_interval_s: float):
        self.run_dir = run_dir
        self.path = run_dir / DB_NAME
        self.readonly = readonly
        self.flush_interval_s = flush_interval_s
        self._conn = conn
        self._lock = threading.RLock()
        self._metrics: dict[str, tuple[int, int]] = {}  # name -> (id, block_steps)
        self._metric_rows: list[tuple[str, int, float, float]] = []
        self._samples: list[tuple[int, str, str, float]] = []
        self._events: list[tuple[float, str, str, str]] = []
        self._meta_updates: dict[str, str] = {}
        self._last_flush = time.monotonic()
        self._heartbeat_stop: threading.Event | None = None
        self._heartbeat_thread: threading.Thread | None = None
        self.run_id: str | None = self.meta().get("run_id")

    # -- opening ------------------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        run_dir: str | os.PathLike[str],
        run_id: str,
        meta: Mapping[str, Any] | None = None,
        *,
        flush_interval_s: float = 1.0,
    ) -> RunStore:
        """Create the run folder (owner-only) and its database, and return the store as the writer.

        The database is built under a temporary name and linked into place, so a reader sees either no
        run.db or a complete one.
        """
        run_dir = ensure_private_dir(Path(run_dir))
        path = run_dir / DB_NAME
        if path.exists():
            raise UserError(f"a run already exists at {run_dir}; pick another run id or open that run.")
        staging = run_dir / (DB_NAME + ".creating")
        for leftover in (staging, Path(f"{staging}-wal"), Path(f"{staging}-shm")):
            leftover.unlink(missing_ok=True)
        initial = {
            **(meta or {}),
            "run_id": run_id,
            "status": RunStatus.CREATED,
            "created_at": time.time(),
            "schema_version": SCHEMA_VERSION,
        }
        conn = sqlite3.connect(staging, isolation_level=None)
        try:  # no reader can see the staging file, so the schema needs no enclosing transaction
            conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)", [(k, json.dumps(v, default=str)) for k, v in initial.items()]
            )
        finally:
            conn.close()
        staging.chmod(0o600)
        try:
            os.link(staging, path)  # unlike rename, refuses to replace a run created meanwhile
        except FileExistsError:
            staging.unlink()
            raise UserError(f"a run already exists at {run_dir}; pick another run id or open that run.") from None
        except OSError:  # a filesystem without hard links
            os.replace(staging, path)
        staging.unlink(missing_ok=True)
        return cls(run_dir, _connect(path, readonly=False), readonly=False, flush_interval_s=flush_interval_s)

    @classmethod
    def open(cls, run_dir: str | os.PathLike[str], readonly: bool = True, *, flush_interval_s: float = 1.0) -> RunStore:
        """Open an existing run (its folder, or its run.db): as a reader (default), or as the writer to continue it."""
        run_dir = Path(run_dir)
        if run_dir.name == DB_NAME and run_dir.is_file():
            run_dir = run_dir.parent
        path = run_dir / DB_NAME
        if not path.is_file():
            raise UserError(f"no run at {run_dir}; `smoltui runs` lists the runs.")
        deadline = time.monotonic() + _OPEN_RETRY_S
        while True:
            try:
                conn = _connect(path, readonly)
                version = conn.execute("PRAGMA user_version").fetchone()[0]
            except sqlite3.DatabaseError as exc:
                raise UserError(f"{path} is not a readable run database ({exc}); delete that run folder.") from None
            if version == SCHEMA_VERSION:
                return cls(run_dir, conn, readonly, flush_interval_s)
            conn.close()
            if version > SCHEMA_VERSION:
                raise UserError(f"{path} was written by a newer smoltui; upgrade smoltui to open it.")
            if time.monotonic() > deadline:  # version 0: not a run database, or one still being created
                raise UserError(f"{path} is not a smoltui run database; `smoltui runs` lists the runs.")
            time.sleep(0.05)

    def close(self) -> None:
        """Stop the heartbeat thread, flush what is buffered, and close. Safe to call twice."""
        if self._heartbeat_stop is not None:
            self._heartbeat_stop.set()
            self._heartbeat_thread.join()
            self._heartbeat_stop = self._heartbeat_thread = None
        if self._conn is None:
            return
        if not self.readonly:
            self.flush()
        with self._lock:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writer: buffered logging -------------------------------------------------------------------------

    def log_metrics(self, step: int, values: Mapping[str, float]) -> None:
        """Buffer one value per metric name at `step` (floats, or anything float() accepts)."""
        step = operator.index(step)  # a numpy or torch integer would only fail later, at flush
        now = time.time()
        append = self._metric_rows.append
        for name, value in values.items():
            append((name, step, float(value), now))  # float() now: never keep a tensor alive in the buffer
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def log_sample(self, step: int, prompt: str, text: str) -> None:
        self._samples.append((operator.index(step), prompt, text, time.time()))
        if time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def log_event(self, level: str, kind: str, message: str) -> None:
        """Buffer an event; warnings and errors are written at once."""
        if level not in EVENT_LEVELS:
            raise ValueError(f"event level must be one of {EVENT_LEVELS}, not {level!r}")
        self._events.append((time.time(), level, kind, message))
        if level in ("warning", "error") or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def set_meta(self, **values: Any) -> None:
        """Buffer metadata (JSON-encoded; unknown types as str); a status change is written at once."""
        if "status" in values and values["status"] not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, not {values['status']!r}")
        self._meta_updates.update({k: json.dumps(v, default=str) for k, v in values.items()})
        if "status" in values or time.monotonic() - self._last_flush >= self.flush_interval_s:
            self.flush()

    def update_status(self, status: str) -> None:
        """Record a status now. `running` also records this process as the trainer; the end states end it."""
        now = time.time()
        values: dict[str, Any] = {"status": status, "status_time": now}
        if status == RunStatus.RUNNING:
            values.update(pid=os.getpid(), host=socket.gethostname(), heartbeat=now)
            if "started_at" not in self.meta():
                values["started_at"] = now
        elif status in ENDED_STATUSES:
            values["ended_at"] = now
        self.set_meta(**values)

    def start_heartbeat(self, interval_s: float = 5.0) -> None:
        """Write the heartbeat every `interval_s` from a daemon thread with its own connection.

        This keeps a run from looking lost while one step, an evaluation or a checkpoint takes longer than
        run_status.STALE_AFTER_S; the thread dies with the process, so a killed trainer still goes stale.
        """
        if self._heartbeat_thread is not None:
            return
        stop = threading.Event()

        def beat() -> None:
            conn = _connect(self.path, readonly=False)
            try:
                while True:
                    try:
                        conn.execute("INSERT OR REPLACE INTO meta VALUES ('heartbeat', ?)", (json.dumps(time.time()),))
                    except sqlite3.OperationalError:
                        pass  # the db stayed busy past the timeout: the next beat tries again
                    if stop.wait(interval_s):
                        return
            finally:
                conn.close()

        self._heartbeat_stop = stop
        self._heartbeat_thread = threading.Thread(target=beat, name="runstore-heartbeat", daemon=True)
        self._heartbeat_thread.start()

    def flush(self) -> None:
        """Write everything buffered in one transaction."""
        self._last_flush = time.monotonic()
        if not (self._metric_rows or self._samples or self._events or self._meta_updates):
            return
        if self.readonly:
            raise RuntimeError("a read-only RunStore cannot log; open it with readonly=False")
        rows, samples, events, meta = self._metric_rows, self._samples, self._events, self._meta_updates
        with self._lock:
            conn = self._conn
            decided: dict[str, tuple[int, int]] = {}
            try:
                conn.execute("BEGIN IMMEDIATE")
                if rows:
                    decided = self._write_metric_rows(rows)
                if samples:
                    conn.executemany("INSERT INTO samples (step, prompt, text, time) VALUES (?, ?, ?, ?)", samples)
                if events:
                    conn.executemany("INSERT INTO events (time, level, kind, message) VALUES (?, ?, ?, ?)", events)
                if meta:
                    conn.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
                conn.execute("COMMIT")
            except BaseException as exc:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                if isinstance(exc, sqlite3.OperationalError) and "full" in str(exc):
                    raise UserError(f"the disk holding {self.path} is full; free some space and resume.") from None
                raise
        self._metrics.update(decided)
        self._metric_rows, self._samples, self._events, self._meta_updates = [], [], [], {}

    def _write_metric_rows(self, rows: list[tuple[str, int, float, float]]) -> dict[str, tuple[int, int]]:
        """Insert metric rows and refresh the blocks they touch, inside the flush transaction.

        Returns the (id, block_steps) of the metrics whose block size is fixed, to cache once the transaction
        commits.
        """
        conn = self._conn
        known = dict(self._metrics)
        for name in {row[0] for row in rows} - known.keys():
            conn.execute("INSERT OR IGNORE INTO metric_names (name) VALUES (?)", (name,))
            known[name] = conn.execute("SELECT id, block_steps FROM metric_names WHERE name = ?", (name,)).fetchone()
        conn.executemany(
            "INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
            [(known[name][0], step, value, t) for name, step, value, t in rows],
        )
        known = refresh_blocks(conn, known, rows)
        return {name: entry for name, entry in known.items() if entry[1] is not None}

    # -- readers ------------------------------------------------------------------------------------------

    def _query(self, sql: str, params: Any = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Read one snapshot of the database in the queries inside, so that they agree with each other."""
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                yield
            finally:
                self._conn.execute("COMMIT")

    def _metric(self, name: str) -> tuple[int, int | None] | None:
        """(id, block_steps) of a metric (block_steps None while it has one step), or None if never logged."""
        known = self._metrics.get(name)
        if known is None:
            found = self._query("SELECT id, block_steps FROM metric_names WHERE name = ?", (name,))
            if found:
                known = found[0]
                if known[1] is not None:  # fixed from now on, so safe to cache
                    self._metrics[name] = known
        return known

    def _name_id(self, name: str) -> int | None:
        known = self._metric(name)
        return None if known is None else known[0]

    def meta(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self._query("SELECT key, value FROM meta")}

    def status(self, now: float | None = None) -> str:
        """The status as a viewer should show it: `lost` for a run whose trainer has gone (see effective_status)."""
        return effective_status(self.meta(), now)

    def metric_names(self) -> list[str]:
        return [name for (name,) in self._query("SELECT name FROM metric_names ORDER BY name")]

    def metrics_since(self, name: str, after_step: int | None = None) -> list[tuple[int, float]]:
        """(step, value) of `name` for every step after `after_step` (all if None), oldest first."""
        name_id = self._name_id(name)
        if name_id is None:
            return []
        rows = self._query(
            "SELECT step, value FROM metrics WHERE name_id = ? AND step > ? ORDER BY step",
            (name_id, _STEP_MIN if after_step is None else after_step),
        )
        return [(step, _nan(value)) for step, value in rows]

    def last_metric(self, name: str) -> tuple[int, float] | None:
        name_id = self._name_id(name)
        if name_id is None:
            return None
        rows = self._query("SELECT step, value FROM metrics WHERE name_id = ? ORDER BY step DESC LIMIT 1", (name_id,))
        return (rows[0][0], _nan(rows[0][1])) if rows else None

    def latest_metrics(self) -> dict[str, tuple[int, float]]:
        """The last (step, value) of every metric."""
        rows = self._query(
            "SELECT n.name, m.step, m.value FROM metric_names AS n JOIN metrics AS m ON m.name_id = n.id"
            " AND m.step = (SELECT max(step) FROM metrics WHERE name_id = n.id) ORDER BY n.name"
        )
        return {name: (step, _nan(value)) for name, step, value in rows}

    def metrics_downsampled(
        self, name: str, points: int = 200, start_step: int | None = None, end_step: int | None = None
    ) -> list[Bucket]:
        """At most `points` buckets of equal step ranges over the series between start_step and end_step.

        The buckets split the steps that hold data inside the window; empty buckets are left out. min and max
        keep spikes visible at any zoom. Reads block summaries instead of every point (see metric_blocks).
        """
        if points < 1:
            raise ValueError("points must be at least 1")
        lo = _STEP_MIN if start_step is None else start_step
        hi = -_STEP_MIN - 1 if end_step is None else end_step
        with self.snapshot():  # so the block size, the bounds and the blocks agree
            known = self._metric(name)
            rows = [] if known is None else downsample(self._conn, *known, points, lo, hi)
        return [
            Bucket(first, last, _nan(mn), _nan(mx), _nan(mean), _nan(value))
            for first, last, mn, mx, mean, value in rows
        ]

    def metric_points_by_step(self, names: Sequence[str]) -> Iterator[tuple[int, int, float | None, float]]:
        """(step, index in `names`, value, time) of every point of `names`, in step order; NaN reads as None.

        Streams a merge of one index scan per metric (no sort of the whole table), so iterate it inside
        `snapshot()`.
        """
        scans = [
            self._conn.execute(
                "SELECT step, ?, value, time FROM metrics WHERE name_id = ? ORDER BY step", (index, self._name_id(name))
            )
            for index, name in enumerate(names)
        ]
        return heapq.merge(*scans)

    def samples(self, after_id: int = 0) -> list[Sample]:
        return [
            Sample(*row)
            for row in self._query(
                "SELECT id, step, prompt, text, time FROM samples WHERE id > ? ORDER BY id", (after_id,)
            )
        ]

    def events(self, after_id: int = 0) -> list[Event]:
        return [
            Event(*row)
            for row in self._query(
                "SELECT id, time, level, kind, message FROM events WHERE id > ? ORDER BY id", (after_id,)
            )
        ]

    # -- commands: viewers append, the trainer consumes ---------------------------------------------------

    def send_command(self, kind: str, payload: Any = None) -> int:
        """Append a command for the trainer in its own short transaction; return its id."""
        if kind not in COMMAND_KINDS:
            raise UserError(f"unknown command {kind!r}; use one of: {', '.join(COMMAND_KINDS)}.")
        row = (time.time(), kind, json.dumps(payload))
        if self.readonly:
            conn = _connect(self.path, readonly=False)
            try:
                return self._insert_command(conn, row)
            finally:
                conn.close()
        with self._lock:
            return self._insert_command(self._conn, row)

    @staticmethod
    def _insert_command(conn: sqlite3.Connection, row: tuple[float, str, str]) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            command_id = conn.execute("INSERT INTO commands (time, kind, payload) VALUES (?, ?, ?)", row).lastrowid
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return command_id

    def pending_commands(self) -> list[Command]:
        """Commands not yet marked done, oldest first."""
        rows = self._query("SELECT id, time, kind, payload FROM commands WHERE done = 0 ORDER BY id")
        return [Command(cid, t, kind, json.loads(payload)) for cid, t, kind, payload in rows]

    def mark_done(self, command_id: int) -> None:
        """Mark a command handled, at once (not buffered), so it is never handed out twice."""
        with self._lock:
            self._conn.execute("UPDATE commands SET done = 1, done_time = ? WHERE id = ?", (time.time(), command_id))


# -- listing ----------------------------------------------------------------------------------------------


def list_run_dirs(workspace: str | os.PathLike[str]) -> list[Path]:
    """Run folders under `<workspace>/runs` that hold a run.db, newest (by creation) first."""
    runs = Path(workspace) / "runs"
    if not runs.is_dir():
        return []

    def created(run_dir: Path) -> float:
        try:
            conn = _connect(run_dir / DB_NAME, readonly=True)
            try:
                row = conn.execute("SELECT value FROM meta WHERE key = 'created_at'").fetchone()
            finally:
                conn.close()
            return float(json.loads(row[0]))
        except (sqlite3.Error, TypeError, ValueError):  # unreadable or foreign db: its file time will do
            return (run_dir / DB_NAME).stat().st_mtime

    found = [d for d in runs.iterdir() if (d / DB_NAME).is_file()]
    return sorted(found, key=lambda d: (created(d), d.name), reverse=True)
