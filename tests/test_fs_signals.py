"""hoodydb.fs.signals reads a real process's pending signals from /proc.

The process is stopped first, so that what is sent to it stays pending, as it does on a client
thread waiting for a FUSE answer.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from hoodydb.fs.signals import Pending, answer, pending_on

CHILD = """
import signal, time
signal.signal(signal.SIGUSR1, lambda *a: None)
signal.signal(signal.SIGTERM, lambda *a: None)
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR2})
print("ready", flush=True)
time.sleep(60)
"""


@pytest.fixture
def stopped_child() -> Iterator[int]:
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline() == "ready\n"
        os.kill(child.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while state(child.pid) != "T":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        yield child.pid
    finally:
        child.kill()
        child.communicate()


def state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def send(pid: int, sig: signal.Signals) -> None:
    os.kill(pid, sig)
    time.sleep(0.02)


def test_the_strongest_pending_signal_decides(stopped_child: int) -> None:
    pid = stopped_child
    assert pending_on(pid) is Pending.NOTHING
    send(pid, signal.SIGUSR2)  # blocked: pending, but it could not be taken now
    assert pending_on(pid) is Pending.NOTHING
    assert answer(pid, wait=False) is None and answer(pid, wait=True) is None
    send(pid, signal.SIGUSR1)  # caught
    assert pending_on(pid) is Pending.HARMLESS
    assert answer(pid, wait=False) is None  # F_SETLK keeps its place
    assert answer(pid, wait=True) == errno.EINTR  # F_SETLKW: as on a local disk
    send(pid, signal.SIGTSTP)  # default action: stop
    assert pending_on(pid) is Pending.STOP
    assert answer(pid, wait=False) == errno.EINTR  # the kernel restarts the call once continued
    send(pid, signal.SIGTERM)  # caught: the program is asked to stop
    assert pending_on(pid) is Pending.END
    assert answer(pid, wait=False) == errno.EAGAIN
    assert answer(pid, wait=True) == errno.EINTR


def test_unknown_thread_ends_the_wait_as_before() -> None:
    assert pending_on(0) is None  # a client in another pid namespace
    assert answer(0, wait=False) == errno.EAGAIN
    assert answer(0, wait=True) == errno.EINTR
