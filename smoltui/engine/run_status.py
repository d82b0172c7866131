"""A run's effective status: the one its store holds, or `lost` once its trainer has stopped showing signs of life."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from smoltui.engine.run_contract import RunStatus

STALE_AFTER_S = 15.0
STARTUP_GRACE_S = 120.0


def process_alive(pid: int) -> bool:
    """Whether process `pid` exists on this host and is not a zombie (a dead child nobody reaped yet)."""
    if pid <= 0:
        return False
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there; trust the heartbeat instead
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def effective_status(
    meta: Mapping[str, Any],
    now: float | None = None,
    pid_alive: Callable[[int], bool] | None = process_alive,
    stale_after_s: float = STALE_AFTER_S,
) -> str:
    """The stored status, except `lost` for a launched, running or paused run whose trainer is gone.

    Gone means: no heartbeat for `stale_after_s`, or, when the run's host is this host, its pid is not alive
    according to `pid_alive` (None skips the pid check). A launched trainer that has not begun gets
    `STARTUP_GRACE_S` instead: importing torch from a cold disk on a busy machine can outlast the heartbeat's limit.
    """
    status = meta.get("status", RunStatus.CREATED)
    launched = status == RunStatus.CREATED and meta.get("pid") is not None  # a trainer was started, not begun
    if status not in (RunStatus.RUNNING, RunStatus.PAUSED) and not launched:
        return status
    pid = meta.get("pid")
    here = pid_alive is not None and pid is not None and meta.get("host") == socket.gethostname()
    if here and not pid_alive(pid):
        return RunStatus.LOST
    now = time.time() if now is None else now
    last_sign = meta.get("heartbeat") or meta.get("started_at") or meta.get("created_at")
    if last_sign is None or now - last_sign > (STARTUP_GRACE_S if launched else stale_after_s):
        return RunStatus.LOST
    return status
