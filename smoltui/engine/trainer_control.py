"""How the world steers a running trainer between steps: commands from the run store, stop signals, pauses."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from smoltui.engine.run_contract import CommandKind, EventKind, RunStatus

if TYPE_CHECKING:
    from smoltui.engine.runstore import RunStore
    from smoltui.engine.trainer_state import TrainingRun

COMMAND_POLL_EVERY_S = 0.25


@dataclass
class Control:
    """What the outside world asked for since the last poll: commands from the store, signals from the OS."""

    stop_reason: str | None = None
    pause: bool = False
    resume: bool = False
    checkpoint: bool = False
    sample: bool = False
    command_ids: list[int] = field(default_factory=list)


class StopSignal:
    """The reason to stop that a signal handler left, read by the loop between steps."""

    reason: str | None = None


def catch_stop_signals(caught: StopSignal) -> None:
    """SIGTERM and Ctrl-C finish the current step, save a checkpoint and stop."""

    def handler(signum, frame):
        caught.reason = f"received {signal.Signals(signum).name}"

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)


def read_commands(store: RunStore, control: Control) -> None:
    for command in store.pending_commands():
        control.command_ids.append(command.id)
        if command.kind == CommandKind.STOP:
            control.stop_reason = "stop requested"
        elif command.kind == CommandKind.PAUSE:
            control.pause, control.resume = True, False
        elif command.kind == CommandKind.RESUME:
            control.pause, control.resume = False, True
        elif command.kind == CommandKind.CHECKPOINT:
            control.checkpoint = True
        elif command.kind == CommandKind.SAMPLE:
            control.sample = True


def wait_while_paused(run: TrainingRun) -> bool:
    """Sleep until resumed (True) or told to stop (False); the heartbeat keeps going meanwhile."""
    store, dist = run.store, run.dist
    if dist.is_main:
        store.update_status(RunStatus.PAUSED)
        run.log("info", EventKind.PAUSED, "paused; resume to continue.")
    while True:
        control = Control(stop_reason=run.stop_signal.reason)
        if dist.is_main:
            read_commands(store, control)
            for command_id in control.command_ids:
                store.mark_done(command_id)
        control = dist.agree(control)
        if control.stop_reason:
            run.stop_signal.reason = control.stop_reason
            return False
        if control.resume:
            if dist.is_main:
                store.update_status(RunStatus.RUNNING)
                run.log("info", EventKind.RESUMED, "resumed.")
            return True
        time.sleep(COMMAND_POLL_EVERY_S)
