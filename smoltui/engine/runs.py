"""Launch, find, attach to and steer training runs (the dashboard calls these from thread workers).

A run is a folder `<workspace>/runs/<run_id>/` with its store `run.db`, `checkpoints/` and `train.log`. The
trainer runs in its own process session, so it outlives whatever launched it; every handle talks to it through
the store alone. Imports no torch: the dashboard lists and watches runs before torch is loaded.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smoltui.engine.checkpoints import find_checkpoint
from smoltui.engine.config import TrainConfig
from smoltui.engine.errors import UserError
from smoltui.engine.preflight import launch_checks
from smoltui.engine.run_contract import ACTIVE_STATUSES, TERMINAL_STATUSES, CommandKind, EventKind, Metric, RunStatus
from smoltui.engine.run_status import effective_status
from smoltui.engine.runstore import RunStore, list_run_dirs
from smoltui.engine.workspace import open_workspace, runs_dir

LOG_FILE = "train.log"


@dataclass(frozen=True)
class RunSummary:
    """One line of `smoltui runs`: what a person scans a list of runs for."""

    run_id: str
    run_dir: Path
    status: str
    model: str
    corpus: str
    step: int | None
    max_steps: int | None
    train_loss: float | None
    val_loss: float | None
    tokens_per_s: float | None
    started: float | None
    world_size: int  # training processes (torchrun ranks); 1 for a plain run

    def to_json(self) -> dict[str, Any]:
        values = dict(self.__dict__)
        values["run_dir"] = str(self.run_dir)
        return values


class RunHandle:
    """A live view of one run and the controls that steer it, through its store."""

    def __init__(self, run_dir: Path, process: subprocess.Popen | None = None):
        self.run_dir = run_dir
        self.run_id = run_dir.name
        self.process = process  # set when this handle launched the run
        self.store = RunStore.open(run_dir, readonly=True)

    # -- reading
    def meta(self) -> dict[str, Any]:
        return self.store.meta()

    def status(self) -> str:
        return effective_status(self.store.meta())

    def metrics_since(self, name: str, after_step: int = -1) -> list[tuple[int, float]]:
        return self.store.metrics_since(name, after_step)

    def latest_metrics(self) -> dict[str, tuple[int, float]]:
        return self.store.latest_metrics()

    def samples(self, after_id: int = 0):
        return self.store.samples(after_id)

    def events(self, after_id: int = 0):
        return self.store.events(after_id)

    def log_path(self) -> Path:
        return self.run_dir / LOG_FILE

    # -- steering
    def pause(self) -> None:
        self.send(CommandKind.PAUSE)

    def resume(self) -> None:
        self.send(CommandKind.RESUME)

    def stop(self) -> None:
        self.send(CommandKind.STOP)

    def checkpoint_now(self) -> None:
        self.send(CommandKind.CHECKPOINT)

    def sample_now(self) -> None:
        self.send(CommandKind.SAMPLE)

    def send(self, kind: str) -> None:
        """Ask the trainer for `kind` (a CommandKind); UserError when the run has ended and cannot act on it."""
        status = self.status()
        if status in TERMINAL_STATUSES:
            raise UserError(f"run {self.run_id} is {status}; `smoltui train --resume {self.run_id}` continues it.")
        self.store.send_command(kind)

    def wait(self, timeout: float | None = None, poll_s: float = 0.2) -> str:
        """Block until the run reaches a final status (or the timeout passes); return the status."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            exited = self.process is not None and self.process.poll() is not None
            status = self.status()
            if status in TERMINAL_STATUSES:
                if self.process is not None:
                    self.process.wait()
                return status
            if exited:  # the trainer ended without a final status: it died before it could write one
                return RunStatus.LOST
            if deadline is not None and time.monotonic() >= deadline:
                return status
            time.sleep(poll_s)

    def close(self) -> None:
        self.store.close()


@dataclass(frozen=True)
class Launcher:
    """How a run's processes join when it spans machines: torchrun's own options, passed through as they are.

    On one machine these stay at their defaults and `TrainConfig.nproc_per_node` alone says how many processes
    run. On several, each machine runs the same `smoltui train` with its own `node_rank`; the run's store is
    written by the process of global rank 0, on the machine of node rank 0.
    """

    nnodes: int = 1
    node_rank: int = 0
    rdzv_endpoint: str | None = None  # host:port of node rank 0, which every node can reach

    def __post_init__(self) -> None:
        if self.nnodes < 1:
            raise UserError(f"--nnodes must be 1 or more, not {self.nnodes}.", field="nnodes")
        if not 0 <= self.node_rank < self.nnodes:
            raise UserError(
                f"--node-rank {self.node_rank} is not one of 0 … {self.nnodes - 1} for {self.nnodes} machine(s).",
                field="node_rank",
            )
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise UserError(
                "a run on several machines needs --rdzv-endpoint HOST:PORT of the machine with --node-rank 0.",
                field="rdzv_endpoint",
            )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def launch_run(
    config: TrainConfig,
    workspace: Path | None = None,
    *,
    launcher: Launcher | None = None,
    stop_at: int | None = None,
) -> RunHandle:
    """Check `config`, create its run folder and start its trainer, detached; return a handle at once.

    Everything that can be found wrong before launch is (see preflight), so a mistake leaves no run behind.
    """
    launch_checks(config, workspace)
    return start_trainer(create_run(config, workspace, launcher), resume=False, stop_at=stop_at)


def create_run(config: TrainConfig, workspace: Path | None = None, launcher: Launcher | None = None) -> Path:
    """Make the run folder and its store, ready for a trainer (`launch_run` starts one)."""
    root = runs_dir(open_workspace(workspace))
    run_id = new_run_id(root, config.model)
    cwd = Path.cwd()
    meta = {
        "config": config.to_dict(),
        "config_hash": config.config_hash(),
        "model_source": config.model,
        "corpus": config.corpus,
        "tokenizer": config.tokenizer,
        "max_steps": config.max_steps,
        "cwd": str(cwd),
        "git_commit": git_commit(cwd),
        "launcher": (launcher or Launcher()).to_dict(),
    }
    RunStore.create(root / run_id, run_id, meta).close()
    return root / run_id


def resume_run(
    run: str | Path, workspace: Path | None = None, *, changes: dict[str, Any] | None = None, stop_at: int | None = None
) -> RunHandle:
    """Start the trainer of an existing run again, from its latest checkpoint, optionally with changed settings.

    Settings that shape the optimisation (lr, max_steps, eval cadence…) may change; the model, tokenizer and
    corpus may not, since the checkpoint was made with them.
    """
    run_dir = find_run(run, workspace)
    store = RunStore.open(run_dir, readonly=True)
    meta = store.meta()
    store.close()
    status = effective_status(meta)
    if status in ACTIVE_STATUSES:
        raise UserError(f"run {run_dir.name} is {status}; `smoltui watch {run_dir.name}` shows it.")
    if changes:
        _change_settings(run_dir, meta, changes)
    return start_trainer(run_dir, resume=True, stop_at=stop_at)


FIXED_ON_RESUME = ("model", "tokenizer", "corpus", "model_overrides", "trust_remote_code")


def _change_settings(run_dir: Path, meta: dict[str, Any], changes: dict[str, Any]) -> None:
    old = meta["config"]
    fixed = [key for key in FIXED_ON_RESUME if key in changes and changes[key] != old.get(key)]
    if fixed:
        raise UserError(
            f"{fixed[0]} cannot change when resuming run {run_dir.name}; start a new run with "
            f"--model run:{run_dir.name} to continue from its weights."
        )
    config = TrainConfig.from_dict({**old, **changes})
    launch_checks(config, run_dir.parent.parent)
    described = ", ".join(
        f"{key} {old.get(key)!r} → {value!r}" for key, value in changes.items() if old.get(key) != value
    )
    with RunStore.open(run_dir, readonly=False) as store:
        store.set_meta(config=config.to_dict(), config_hash=config.config_hash(), max_steps=config.max_steps)
        if described:
            store.log_event("info", EventKind.CONFIG, f"resumed with {described}.")


def trainer_command(run_dir: Path, meta: dict[str, Any], *, resume: bool, stop_at: int | None) -> list[str]:
    """The command that starts a run's trainer: the trainer module itself, or torchrun around it when the run has
    several processes (PyTorch's own launcher: it sets each rank's environment and ends the rest if one fails)."""
    trainer = ["-m", "smoltui.engine.trainer", str(run_dir)]
    if resume:
        trainer.append("--resume")
    if stop_at is not None:
        trainer += ["--stop-at", str(stop_at)]
    nproc = meta["config"].get("nproc_per_node", 1)
    launcher = Launcher(**meta.get("launcher", {}))
    if nproc == 1 and launcher.nnodes == 1:
        return [sys.executable, *trainer]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc)]
    if launcher.nnodes == 1:
        torchrun.append("--standalone")  # a rendezvous on a free local port
    else:
        torchrun += [
            "--nnodes",
            str(launcher.nnodes),
            "--node-rank",
            str(launcher.node_rank),
            "--rdzv-endpoint",
            str(launcher.rdzv_endpoint),
        ]
    return [*torchrun, *trainer]


def start_trainer(run_dir: Path, *, resume: bool, stop_at: int | None = None) -> RunHandle:
    """Start the trainer process of a created run in its own session, logging to train.log; return at once."""
    with RunStore.open(run_dir, readonly=False) as store:  # viewers must not see the previous ending meanwhile
        argv = trainer_command(run_dir, store.meta(), resume=resume, stop_at=stop_at)
        store.set_meta(status=RunStatus.CREATED, heartbeat=time.time(), pid=None)
    log_fd = os.open(run_dir / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with open(log_fd, "ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                **os.environ,
                "PYTHONUNBUFFERED": "1",
                "HF_HUB_DISABLE_PROGRESS_BARS": "1",
                "TRANSFORMERS_VERBOSITY": "error",
            },
        )
    # Reaped the moment it exits, or it stays a zombie for as long as the launcher (the dashboard) lives; Popen's
    # own lock lets RunHandle.wait and poll share the exit status with this thread.
    threading.Thread(target=process.wait, name=f"reap {run_dir.name}", daemon=True).start()
    with RunStore.open(run_dir, readonly=False) as store:
        store.set_meta(pid=process.pid, host=socket.gethostname())
    return RunHandle(run_dir, process)


def attach(run: str | Path, workspace: Path | None = None) -> RunHandle:
    """A handle on an existing run, by id, unique id prefix, "latest", or folder."""
    return RunHandle(find_run(run, workspace))


def list_runs(workspace: Path | None = None) -> list[RunSummary]:
    """Every run of the workspace, newest first."""
    root = open_workspace(workspace) / "runs"
    return [summarize_run(run_dir) for run_dir in list_run_dirs(root.parent)] if root.is_dir() else []


def summarize_run(run_dir: Path) -> RunSummary:
    store = RunStore.open(run_dir, readonly=True)
    try:
        meta = store.meta()
        latest = store.latest_metrics()
    finally:
        store.close()
    config = meta.get("config", {})

    def value(name: str) -> float | None:
        return latest[name][1] if name in latest else None

    return RunSummary(
        run_id=meta.get("run_id", run_dir.name),
        run_dir=run_dir,
        status=effective_status(meta),
        model=meta.get("model_source", config.get("model", "?")),
        corpus=meta.get("corpus", config.get("corpus", "?")),
        step=latest[Metric.TRAIN_LOSS][0] if Metric.TRAIN_LOSS in latest else None,
        max_steps=meta.get("max_steps"),
        train_loss=value(Metric.TRAIN_LOSS),
        val_loss=value(Metric.VAL_LOSS),
        tokens_per_s=value(Metric.TOKENS_PER_S),
        started=meta.get("started_at") or meta.get("created_at"),
        world_size=meta.get("world_size")
        or config.get("nproc_per_node", 1) * meta.get("launcher", {}).get("nnodes", 1),
    )


def find_run(run: str | Path, workspace: Path | None = None) -> Path:
    """Resolve a run reference: a folder, an exact id, a unique id prefix, or "latest"."""
    candidate = Path(run)
    if candidate.is_dir() and (candidate / "run.db").exists():
        return candidate.absolute()
    root = open_workspace(workspace)
    run_dirs = list_run_dirs(root)
    if not run_dirs:
        raise UserError(f"there are no runs in {root}; start one with `smoltui train`.")
    reference = str(run)
    if reference in ("latest", "last"):
        return run_dirs[0]
    exact = [d for d in run_dirs if d.name == reference]
    if exact:
        return exact[0]
    matches = [d for d in run_dirs if d.name.startswith(reference) or d.name.endswith(reference)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise UserError(f"no run {reference!r} in {root}; `smoltui runs` lists the runs.")
    names = ", ".join(d.name for d in matches[:5])
    raise UserError(f"{reference!r} matches several runs ({names}); give more of the id.")


def run_checkpoint_folder(spec: str, workspace: Path | None = None) -> Path:
    """The folder of a run's checkpoint for a `run:<id>[@step]` model source (latest when no step is given)."""
    reference, at, step = spec.partition("@")
    if at and not step.isdigit():
        raise UserError(f"run:{spec} has no step number after @; write run:<id>@<step>, e.g. run:{reference}@500.")
    run_dir = find_run(reference or "latest", workspace)
    return find_checkpoint(run_dir, int(step) if at else None).path


def delete_run(run: str | Path, workspace: Path | None = None) -> None:
    run_dir = find_run(run, workspace)
    status = effective_status(RunStore.open(run_dir, readonly=True).meta())
    if status in ACTIVE_STATUSES:
        raise UserError(f"run {run_dir.name} is {status}; stop it first with `smoltui stop {run_dir.name}`.")
    shutil.rmtree(run_dir)


def new_run_id(root: Path, model: str) -> str:
    """A readable, sortable id: date-time and the model's name, e.g. 20261121-134502-nano-char."""
    slug = re.sub(r"[^a-z0-9]+", "-", Path(model).name.lower()).strip("-")[:24] or "model"
    base = f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    run_id, suffix = base, 1
    while (root / run_id).exists():
        suffix += 1
        run_id = f"{base}-{suffix}"
    return run_id


def git_commit(folder: Path) -> str | None:
    """The commit checked out in `folder`, with "+dirty" when it has changes; None outside a git repository."""
    try:
        head = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
