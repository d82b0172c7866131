"""The run contract: the statuses, metric names, event kinds and commands that a trainer writes to its run store
and that every viewer (dashboard, CLI, benchmarks, scripts) reads. Plain strings, defined here once.

The values are what the run database holds, so they never change spelling; StrEnum members compare equal to
those strings, so a status read back from SQLite is found in these sets as it is.
"""

from __future__ import annotations

import re
from enum import StrEnum


class RunStatus(StrEnum):
    CREATED = "created"  # the folder exists; a trainer may have been launched but has not begun
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"  # reached max_steps or its time budget
    STOPPED = "stopped"  # asked to stop, with a checkpoint
    FAILED = "failed"  # bad settings or a crash; the reason is an error event
    LOST = "lost"  # the trainer vanished without a last word (killed, machine down); never stored, only judged


STATUSES = tuple(RunStatus)  # for membership tests: `"x" in RunStatus` raises on Python 3.11
# A trainer is, or should be, at work: such runs cannot be deleted or resumed, and keep going when a viewer quits.
ACTIVE_STATUSES = frozenset({RunStatus.CREATED, RunStatus.RUNNING, RunStatus.PAUSED})
# The trainer wrote its last word: nothing more will come from it.
ENDED_STATUSES = frozenset({RunStatus.FINISHED, RunStatus.STOPPED, RunStatus.FAILED})
# Nothing more will happen without `smoltui train --resume`: the ended runs and the lost ones.
TERMINAL_STATUSES = ENDED_STATUSES | {RunStatus.LOST}

# How each status looks everywhere: a symbol and a colour role (the UI maps a role to its theme's `$text-<role>`,
# the CLI to a terminal colour), so a status reads the same in the dashboard, `smoltui runs` and `watch`.
STATUS_LOOKS: dict[str, tuple[str, str]] = {
    RunStatus.CREATED: ("◌", "muted"),
    RunStatus.RUNNING: ("●", "success"),
    RunStatus.PAUSED: ("‖", "warning"),
    RunStatus.FINISHED: ("✔", "primary"),
    RunStatus.STOPPED: ("■", "secondary"),
    RunStatus.FAILED: ("✘", "error"),
    RunStatus.LOST: ("?", "error"),
}


class Metric(StrEnum):
    """The metrics every run logs, by name; hooks add activation statistics (see activation_metric)."""

    TRAIN_LOSS = "train/loss"
    VAL_LOSS = "val/loss"
    VAL_PPL = "val/ppl"
    LR = "lr"
    GRAD_NORM = "grad_norm"
    TOKENS_PER_S = "tokens_per_s"
    TOKENS_SEEN = "tokens_seen"


ACTIVATION_PREFIX = "act/block"  # act/block<index>/<statistic>, written by the activation_stats hook
_ACTIVATION_NAME = re.compile(rf"{re.escape(ACTIVATION_PREFIX)}(\d+)/(\w+)")


def activation_metric(block: int, statistic: str) -> str:
    """The metric name of one activation statistic of one block, e.g. act/block3/std."""
    return f"{ACTIVATION_PREFIX}{block}/{statistic}"


def parse_activation_metric(name: str) -> tuple[int, str] | None:
    """(block, statistic) of an activation metric name such as "act/block3/std", else None."""
    match = _ACTIVATION_NAME.fullmatch(name)
    return (int(match[1]), match[2]) if match else None


class EventKind(StrEnum):
    """What an event is about; the message says the rest in one sentence."""

    START = "start"
    RESUME = "resume"  # a run continued from a checkpoint (or found none)
    CONFIG = "config"  # settings changed on resume
    CORPUS = "corpus"  # a warning about the corpus (encoding, empty documents...)
    CHECKPOINT = "checkpoint"
    PAUSED = "paused"
    RESUMED = "resumed"
    FINISHED = "finished"
    STOPPED = "stopped"
    NAN = "nan"  # the loss went non-finite: paused and rolled back
    BAD_CONFIG = "bad-config"  # the trainer refused its settings (a user's mistake: exit status 2)
    OUT_OF_MEMORY = "out-of-memory"
    CRASH = "crash"  # a bug: the message is the traceback


EVENT_LEVELS = ("debug", "info", "warning", "error")
# Events a person following a run in the terminal is told about, beside every warning and error.
NOTABLE_EVENTS = frozenset({EventKind.NAN, EventKind.RESUME, EventKind.PAUSED, EventKind.STOPPED})


class CommandKind(StrEnum):
    """What a viewer may ask of a running trainer through the store's commands table."""

    PAUSE = "pause"
    RESUME = "resume"
    STOP = "stop"
    CHECKPOINT = "checkpoint"
    SAMPLE = "sample"


COMMAND_KINDS = tuple(CommandKind)
