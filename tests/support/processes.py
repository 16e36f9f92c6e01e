"""Killing a whole job: its driver and every process of the local Ray instance it started."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path


def session_pids(sid: int) -> list[int]:
    """Live processes whose session id is ``sid`` (zombies excluded)."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # state, ppid, pgrp, session, ...
        if fields[0] != "Z" and int(fields[3]) == sid:
            pids.append(int(d.name))
    return pids


def kill_session(sid: int, timeout_s: float = 30.0) -> None:
    """SIGKILL every process of session ``sid`` until none is left.

    A job started with ``start_new_session=True`` leads session ``sid == job.pid``. ``os.killpg`` is not
    enough: Ray puts each worker process in a process group of its own (same session), and a worker outlives
    the raylet for a while, long enough to finish a training step and register another checkpoint.
    """
    deadline = time.monotonic() + timeout_s
    while pids := session_pids(sid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes of session {sid} survived SIGKILL for {timeout_s:.0f} s: {pids}")
        kill_pids(pids)
        time.sleep(0.05)


def kill_pids(pids: list[int]) -> None:
    """SIGKILL each pid; one that is already gone is skipped."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
