"""A `serve` killed by SIGKILL leaves its mount child running, detached; the next `serve` replaces it.

`serve` starts its mount with SERVE_PID_ENV set to its own pid, and the daemon reports that pid on
its control socket. At start, `serve` asks the control socket of its mountpoint: a daemon there
that serves the same backing directory for a `serve` that no longer runs is an orphan of ours. It
is stopped with SIGTERM (it unmounts itself) and a fresh mount takes its place, with a line saying
so. Anything else there is left alone: the claim check then refuses, naming it.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from typing import Any

from hoodydb import control_client as control
from hoodydb.fs.claim import flock_holders
from hoodydb.fs.process import MountError, is_mounted

SERVE_PID_ENV = "HOODYDB_SERVE_PID"


def started_at(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None if it is gone (or a zombie)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[19])


def is_orphan(report: dict[str, Any]) -> bool:
    """Was the reporting daemon started by a `serve` that has gone (its pid dead or reused)?"""
    serve_pid, daemon_start = report.get("serve_pid"), started_at(report["pid"])
    if not serve_pid or daemon_start is None:
        return False
    serve_start = started_at(serve_pid)
    return serve_start is None or serve_start > daemon_start


def _holds_claim(pid: int, backing: str) -> bool:
    """Does `pid` hold the claim on `backing`? The report comes from whatever answers at the socket
    path, which may sit in a directory another user made: only a daemon of this tree is stopped."""
    try:
        st = os.stat(backing)
        owner = os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return False
    return owner == os.geteuid() and pid in flock_holders(st.st_dev, st.st_ino, "WRITE")


def replace_orphan(
    backing: str | os.PathLike[str],
    mountpoint: str | os.PathLike[str],
    say: Callable[[str], None],
    timeout: float = 20.0,
) -> None:
    """Stop the orphaned mount of `backing` at `mountpoint`, if there is one; then return."""
    try:
        report = control.query(control.socket_path(mountpoint), timeout=5.0)
    except (OSError, ValueError):
        return  # no daemon answers for this mountpoint: nothing of ours to replace
    ours = (report.get("backing"), report.get("mountpoint")) == (
        os.path.realpath(backing),
        os.path.realpath(mountpoint),
    )
    if not ours or not is_orphan(report) or not _holds_claim(report["pid"], report["backing"]):
        return
    pid = report["pid"]
    say(
        f"replacing the orphaned hoodydb mount at {report['mountpoint']} (pid {pid}), left by a "
        f"serve that no longer runs (pid {report['serve_pid']}): stopping it, then mounting anew"
    )
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while started_at(pid) is not None or is_mounted(mountpoint):
        if time.monotonic() > deadline:
            raise MountError(
                f"the orphaned mount at {report['mountpoint']} (pid {pid}) did not stop within {timeout} s"
            )
        time.sleep(0.05)
