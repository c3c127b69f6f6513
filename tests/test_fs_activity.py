"""fs/activity.py asks the kernel whether a client thread is still at work: real processes."""

from __future__ import annotations

import errno
import subprocess
import sys
import time

from hoodydb.fs import activity, answers
from hoodydb.locks import Outcome


def _settled(pid: int, want: bool, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if activity.working(pid) is want:
            return True
        time.sleep(0.01)
    return False


def test_a_sleeping_process_is_not_at_work_and_a_spinning_one_is() -> None:
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.readline()"], stdin=subprocess.PIPE
    )
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        assert _settled(sleeper.pid, False)
        assert _settled(spinner.pid, True)
    finally:
        spinner.kill()
        sleeper.kill()
        spinner.wait()
        sleeper.communicate()


def test_an_unknown_thread_is_unknown() -> None:
    assert activity.working(0) is None  # a client in a PID namespace the daemon cannot see
    gone = subprocess.Popen(["true"])
    gone.wait()
    assert activity.working(gone.pid) is None


def test_outcomes_become_the_errnos_sqlite_can_take() -> None:
    assert answers.errno_for(Outcome.GRANTED, wait=False) == 0
    for outcome in (Outcome.BUSY, Outcome.TIMEOUT, Outcome.FULL, Outcome.CLOSING, Outcome.DEADLOCK):
        assert answers.errno_for(outcome, wait=False) == errno.EAGAIN  # never "disk I/O error"
    assert answers.errno_for(Outcome.DEADLOCK, wait=True) == errno.EDEADLK
    assert answers.errno_for(Outcome.ABORTED, wait=False, aborted=errno.EINTR) == errno.EINTR
