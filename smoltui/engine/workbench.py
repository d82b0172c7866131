"""The workbench: the workspace's current model, dataset and settings, and the history of every change to the model.

Layout under the workspace:
    workbench/history.db          SQLite (WAL): the settings, and one row per step of the history
    workbench/models/step_0001/   the model step 1 made: a save_pretrained folder (safetensors, LM head, tokenizer)
A step's folder is written under a hidden temporary name, renamed into place and only then recorded, the rename
and the row inside one write transaction: a kill at any instant leaves the history and every folder whole.
Opening the workbench removes what a killed operation left (temporary folders of processes that are gone, a step
folder whose row was never committed). Imports neither torch nor transformers.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoltui.engine.device import DTYPE_CHOICES
from smoltui.engine.errors import UserError
from smoltui.engine.parameters import Parameter
from smoltui.engine.workspace import ensure_private_dir, fsync_dir, open_workspace, workspace_path

SCHEMA_VERSION = 1
DB_NAME = "history.db"
BUSY_TIMEOUT_S = 30.0  # an operation holds the write lock only while it renames its folder and writes its row
STEP_PREFIX = "step_"
TEMP_PREFIX = ".partial-"
STATUSES = ("done", "failed")  # a failed step (a tool that exited with an error) made no model
_CURRENT_KEY = "current_step"  # kept beside the settings, but not one of them: it changes through operations

_SCHEMA = f"""
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE steps (
    step INTEGER PRIMARY KEY, operation TEXT NOT NULL, params TEXT NOT NULL, parent INTEGER, folder TEXT,
    time REAL NOT NULL, summary TEXT NOT NULL, effect TEXT, details TEXT NOT NULL, status TEXT NOT NULL
);
PRAGMA user_version = {SCHEMA_VERSION};
"""

SETTINGS = (
    Parameter(
        "dataset",
        "str",
        "The corpus perplexity is measured on: a .txt/.md/.jsonl file, a folder of them, or builtin:pydocs.",
    ),
    Parameter(
        "eval_tokens",
        "int",
        "Tokens of the dataset's validation split (its last 5%) scored before and after each operation; "
        "0 skips perplexity.",
        default=16384,
        minimum=0,
        maximum=1_000_000,
    ),
    Parameter(
        "sample_tokens",
        "int",
        "Tokens of the greedy sample, whose decoding speed is measured too, before and after each operation.",
        default=32,
        minimum=1,
        maximum=1024,
    ),
    Parameter("prompt", "str", "The prompt of the before/after sample.", default="Once upon a time"),
    Parameter("seed", "int", "Seed of random edits and of fresh weights.", default=0, minimum=0, maximum=2**63 - 1),
    Parameter("device", "str", "Where operations run: auto, cpu, cuda, cuda:N or mps.", default="auto"),
    Parameter(
        "dtype",
        "str",
        "The precision models are loaded in; fp32 keeps every saved weight exact.",
        default="fp32",
        choices=DTYPE_CHOICES,
    ),
)
SETTING_NAMES = ("model", *(setting.name for setting in SETTINGS))  # "model" reads the current step's folder


@dataclass(frozen=True)
class HistoryStep:
    """One row of the history: an operation, what it was given, and the model it made."""

    step: int
    operation: str  # "import", "edit", … or "tool:<script name>"
    params: dict[str, Any]
    parent: int | None  # the step whose model it started from, None when it started from nothing
    folder: Path | None  # the model it made; None for a failed step
    time: float
    summary: str  # one line: what changed
    effect: dict[str, Any] | None  # effects.Effect.to_json(): before, after, deltas
    details: dict[str, Any] = field(default_factory=dict)  # the operation's own numbers
    status: str = "done"  # one of STATUSES


class Workbench:
    """The workbench of one workspace (see the module docstring); safe to open from several processes at once."""

    def __init__(self, workspace: Path, conn: sqlite3.Connection) -> None:
        self.workspace = workspace
        self.root = workspace / "workbench"
        self.models_dir = self.root / "models"
        self._conn = conn
        self._lock = threading.RLock()  # one connection, shared by the threads of a screen and its worker

    @classmethod
    def open(cls, workspace: str | os.PathLike[str] | None = None) -> Workbench:
        """The workbench of `workspace` (see workspace_path), created if missing, with leftovers removed."""
        workspace = open_workspace(workspace)
        root = ensure_private_dir(workspace / "workbench")
        ensure_private_dir(root / "models")
        path = root / DB_NAME
        try:
            conn = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")  # few writes, each one the record of a finished operation
            _create_schema(conn)
        except sqlite3.DatabaseError as error:
            raise UserError(f"{path} is not a readable workbench history ({error}); move it away.") from None
        path.chmod(0o600)
        workbench = cls(workspace, conn)
        workbench.remove_leftovers()
        return workbench

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: other processes' writers wait (up to BUSY_TIMEOUT_S), readers never."""
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def remove_leftovers(self) -> None:
        """Remove temporary folders of processes that are gone and step folders that no row records."""
        for temporary in self.models_dir.glob(f"{TEMP_PREFIX}*"):
            if not _process_alive(_writer_pid(temporary.name)):
                shutil.rmtree(temporary, ignore_errors=True)
        with self._writing() as conn:  # waits for an operation that is renaming and recording its folder now
            recorded = {folder for (folder,) in conn.execute("SELECT folder FROM steps WHERE folder IS NOT NULL")}
            for folder in self.models_dir.glob(f"{STEP_PREFIX}*"):
                if self._relative(folder) not in recorded:
                    shutil.rmtree(folder, ignore_errors=True)

    # -- settings -----------------------------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Every setting's value (defaults where unset), "model" first: the current step's folder or None."""
        stored = self._stored_settings()
        values = {setting.name: stored.get(setting.name, setting.default) for setting in SETTINGS}
        current = self.current()
        return {"model": str(current.folder) if current else None, **values}

    def get(self, key: str) -> Any:
        return self.settings()[_known_setting(key)]

    def set(self, key: str, value: Any) -> Any:
        """Store a setting (text is read as the setting's kind; empty text unsets it) and return its value."""
        if _known_setting(key) == "model":
            raise UserError(
                "the model changes only through an operation, so that it has a history; "
                "run `smoltui import SOURCE` to make a model current.",
                field="model",
            )
        setting = next(s for s in SETTINGS if s.name == key)
        if isinstance(value, str) and not value.strip():
            with self._writing() as conn:
                conn.execute("DELETE FROM settings WHERE key = ?", (key,))
            return setting.default
        parsed = setting.parse(value)
        if key == "dataset":
            parsed = _dataset_source(parsed)
        elif key == "device":
            from smoltui.engine.device import resolve_device

            try:
                resolve_device(parsed)
            except UserError as error:
                raise UserError(str(error), field="device") from None
        with self._writing() as conn:
            conn.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(parsed)))
        return parsed

    def _stored_settings(self) -> dict[str, Any]:
        return {key: json.loads(value) for key, value in self._query("SELECT key, value FROM settings")}

    # -- the current model and the history ----------------------------------------------------------------

    @property
    def current_step(self) -> int | None:
        return self._stored_settings().get(_CURRENT_KEY)

    def current(self) -> HistoryStep | None:
        number = self.current_step
        return None if number is None else self._find(number)

    def require_model(self) -> HistoryStep:
        """The current step, or a UserError saying how to make a model current."""
        current = self.current()
        if current is None:
            raise UserError(
                "there is no current model; import one with `smoltui import SOURCE` (a preset, "
                "smollm2-135m-instruct, a folder, a .gguf file or a Hub id).",
                field="model",
            )
        return current

    def require_dataset(self) -> str:
        """The dataset setting, or a UserError saying how to set it."""
        dataset = self.get("dataset")
        if not dataset:
            raise UserError(
                "no dataset is set to measure perplexity on; set one with `smoltui set dataset FILE` (a .txt, .md "
                "or .jsonl file, a folder of them, or builtin:pydocs), or skip the measurement with --no-eval.",
                field="dataset",
            )
        return dataset

    def history(self) -> list[HistoryStep]:
        """Every step, oldest first."""
        return [self._step_from_row(row) for row in self._query(f"{_SELECT_STEPS} ORDER BY step")]

    def step(self, number: int) -> HistoryStep:
        """Step `number`, or a UserError that says which steps there are."""
        found = self._find(number)
        if found is None:
            steps = [step.step for step in self.history()]
            there = f"steps 1 to {steps[-1]}" if steps else "no steps yet (import a model first)"
            raise UserError(f"there is no step {number} in the history; it holds {there}.", field="step")
        return found

    def checkout(self, number: int) -> HistoryStep:
        """Make step `number`'s model the current one (undo, or branch from an earlier model)."""
        chosen = self.step(number)
        if chosen.status != "done" or chosen.folder is None:
            raise UserError(f"step {number} failed and made no model; check out another step.", field="step")
        if not (chosen.folder / "config.json").is_file():
            raise UserError(
                f"step {number}'s model folder {chosen.folder} is gone; check out another step.", field="step"
            )
        with self._writing() as conn:
            conn.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (_CURRENT_KEY, json.dumps(number)))
        return chosen

    def undo(self) -> HistoryStep:
        """Make the current step's parent current again."""
        current = self.require_model()
        if current.parent is None:
            raise UserError(
                f"step {current.step} ({current.operation}) started from no model, so there is nothing to undo.",
                field="step",
            )
        return self.checkout(current.parent)

    def partial_folder(self) -> Path:
        """A fresh hidden folder to write a model into, then to hand to `commit_step`."""
        folder = self.models_dir / f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        folder.mkdir(mode=0o700)
        return folder

    def commit_step(
        self,
        *,
        operation: str,
        params: Mapping[str, Any],
        parent: int | None,
        folder: Path | None,
        summary: str,
        effect: Mapping[str, Any] | None = None,
        details: Mapping[str, Any] | None = None,
        status: str = "done",
    ) -> HistoryStep:
        """Rename `folder` (from partial_folder, complete) into place as the next step, record it, make it current.

        A failed step (`status` "failed", `folder` None) is recorded and leaves the current model as it was.
        """
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
        if folder is not None:
            _fsync_tree(folder)
        row_values = [
            operation,
            json.dumps(dict(params), default=str),
            parent,
            None,
            time.time(),
            summary,
            None if effect is None else json.dumps(dict(effect)),
            json.dumps(dict(details or {}), default=str),
            status,
        ]
        with self._writing() as conn:
            (number,) = conn.execute("SELECT coalesce(max(step), 0) + 1 FROM steps").fetchone()
            final = None
            if folder is not None:
                final = self.models_dir / f"{STEP_PREFIX}{number:04d}"
                if final.exists():  # a killed operation renamed it but never recorded it: it is nobody's
                    shutil.rmtree(final)
                os.replace(folder, final)
                fsync_dir(self.models_dir)
                row_values[3] = self._relative(final)
            try:
                conn.execute("INSERT INTO steps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", (number, *row_values))
                if status == "done":
                    conn.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (_CURRENT_KEY, json.dumps(number)))
            except BaseException:
                if final is not None:
                    shutil.rmtree(final, ignore_errors=True)
                raise
        return self.step(number)

    def init(self) -> None:
        """Fresh state: every setting back to its default and no current model; the history stays."""
        with self._writing() as conn:
            conn.execute("DELETE FROM settings")

    def reset(self) -> None:
        """Forget the history, the settings and every model folder the workbench made."""
        with self._writing() as conn:
            conn.execute("DELETE FROM steps")
            conn.execute("DELETE FROM settings")
        # Deleted only once no row points at them; a kill before the end leaves folders the next open removes.
        for folder in self.models_dir.glob(f"{STEP_PREFIX}*"):
            shutil.rmtree(folder, ignore_errors=True)

    # -- rows ---------------------------------------------------------------------------------------------

    def _find(self, number: int) -> HistoryStep | None:
        rows = self._query(f"{_SELECT_STEPS} WHERE step = ?", (number,))
        return self._step_from_row(rows[0]) if rows else None

    def _step_from_row(self, row: tuple) -> HistoryStep:
        number, operation, params, parent, folder, when, summary, effect, details, status = row
        return HistoryStep(
            step=number,
            operation=operation,
            params=json.loads(params),
            parent=parent,
            folder=None if folder is None else self.root / folder,
            time=when,
            summary=summary,
            effect=None if effect is None else json.loads(effect),
            details=json.loads(details),
            status=status,
        )

    def _relative(self, folder: Path) -> str:
        return folder.relative_to(self.root).as_posix()


_SELECT_STEPS = "SELECT step, operation, params, parent, folder, time, summary, effect, details, status FROM steps"


def _create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables once; a second process opening at the same moment waits and then finds them."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
        elif version > SCHEMA_VERSION:
            raise UserError("this workbench was written by a newer smoltui; upgrade smoltui to open it.")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def step_model_folder(spec: str, workspace: str | os.PathLike[str] | None = None) -> Path:
    """The model folder of a `step:<N>` model source, or of `step:current` (the workbench's current model)."""
    if not (workspace_path(workspace) / "workbench" / DB_NAME).is_file():
        raise UserError(
            "this workspace has no workbench history yet; make a step first, e.g. `smoltui import SOURCE`.",
            field="model",
        )
    if spec != "current" and not spec.isdigit():
        raise UserError(f"step:{spec} names no step; write step:<number> or step:current.", field="model")
    with Workbench.open(workspace) as workbench:
        try:
            chosen = workbench.require_model() if spec == "current" else workbench.step(int(spec))
        except UserError as error:  # said of the history's "step" setting; here it is a model source
            raise UserError(str(error), field="model") from None
    if chosen.folder is None or not (chosen.folder / "config.json").is_file():
        raise UserError(f"step {chosen.step} has no model (it failed, or its folder is gone).", field="model")
    return chosen.folder


def _known_setting(key: str) -> str:
    if key not in SETTING_NAMES:
        raise UserError(f"unknown setting {key!r}; the settings are: {', '.join(SETTING_NAMES)}.", field="key")
    return key


def _dataset_source(text: str) -> str:
    """A corpus source as read_corpus takes it, with a path made absolute so it means the same from anywhere."""
    from smoltui.engine.data import BUILTIN_PYDOCS

    if text.startswith("builtin:"):
        if text != BUILTIN_PYDOCS:
            raise UserError(f"unknown built-in corpus {text!r}; the built-in one is {BUILTIN_PYDOCS}.", field="dataset")
        return text
    path = Path(text).expanduser().resolve()
    if not path.exists():
        raise UserError(f"no such file or folder: {text}; check the path, or use {BUILTIN_PYDOCS}.", field="dataset")
    return str(path)


def _writer_pid(name: str) -> int | None:
    """The process id in a temporary folder's name (".partial-<pid>-<token>")."""
    pid = name.removeprefix(TEMP_PREFIX).partition("-")[0]
    return int(pid) if pid.isdigit() else None


def _process_alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _fsync_tree(folder: Path) -> None:
    """Every file of `folder` and the folder itself on disk, before its rename makes it count."""
    for path in folder.rglob("*"):
        if path.is_file():
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
    fsync_dir(folder)
