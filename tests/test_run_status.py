"""A run's effective status: a stale heartbeat or a gone trainer process makes a running run `lost`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smoltui.engine.run_status import effective_status, process_alive


def test_a_run_is_lost_when_its_heartbeat_is_stale():
    meta = {"status": "running", "heartbeat": 1000.0, "host": "elsewhere", "pid": 1}
    assert effective_status(meta, now=1010.0) == "running"
    assert effective_status(meta, now=1016.0) == "lost"
    assert effective_status(meta, now=1030.0, stale_after_s=60) == "running"
    assert effective_status({**meta, "status": "paused"}, now=1100.0) == "lost"
    assert effective_status({**meta, "status": "finished"}, now=9999.0) == "finished"
    assert effective_status({"status": "running", "started_at": 1000.0}, now=1020.0) == "lost"
    assert effective_status({}, now=0) == "created"


def test_a_run_is_lost_when_its_pid_is_gone_on_this_host():
    here = {"status": "running", "heartbeat": 1000.0, "host": socket.gethostname(), "pid": 4242}
    assert effective_status(here, now=1001.0, pid_alive=lambda pid: False) == "lost"
    assert effective_status(here, now=1001.0, pid_alive=lambda pid: True) == "running"
    assert effective_status(here, now=1001.0, pid_alive=None) == "running"
    elsewhere = {**here, "host": "another-box"}  # its pid means nothing here
    assert effective_status(elsewhere, now=1001.0, pid_alive=lambda pid: False) == "running"

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_alive(os.getpid()) and not process_alive(child.pid) and not process_alive(0)
    assert effective_status({**here, "pid": child.pid}, now=1001.0) == "lost"


def test_a_trainer_still_starting_is_not_lost_while_its_pid_lives():
    """Importing torch from a cold disk on a busy machine can take longer than the heartbeat's 15 s."""
    launched = {"status": "created", "heartbeat": 1000.0, "host": socket.gethostname(), "pid": 4242}
    assert effective_status(launched, now=1090.0, pid_alive=lambda pid: True) == "created"
    assert effective_status(launched, now=1001.0, pid_alive=lambda pid: False) == "lost"
    assert effective_status(launched, now=1200.0, pid_alive=lambda pid: True) == "lost"  # the pid was reused
    elsewhere = {**launched, "host": "another-box"}
    assert effective_status(elsewhere, now=1090.0) == "created"
    assert effective_status(elsewhere, now=1200.0) == "lost"
    assert effective_status({"status": "created", "heartbeat": 1000.0}, now=99999.0) == "created"  # never launched


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombies are told apart through /proc")
def test_an_unreaped_dead_child_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 10
    while Path(f"/proc/{child.pid}/stat").exists() and time.monotonic() < deadline:
        if Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            break
        time.sleep(0.01)
    try:
        assert not process_alive(child.pid)
    finally:
        child.wait()
