"""Signals reaching a client that waits in the daemon for its turn, on a real mount.

Every signal interrupts the FUSE request of a waiting lock. Only those that ask the program to
stop may end the wait: Go's SIGURG, SIGCHLD, SIGWINCH, timers and SIGUSR1/2 must leave the
transaction queued, whether or not their handler was installed with SA_RESTART, and the
handler runs once the lock is granted. Ctrl-C, SIGTERM, SIGHUP and SIGQUIT end the wait at once;
a fatal signal frees the waiter; a stop (SIGSTOP) leaves the queue and, continued, queues again.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from tests.conftest import Mounted
from tests.test_faults import HOLDER, database_report, locks_report, make_db, rows, wait_for_line, wait_until

pytestmark = pytest.mark.fuse

HARMLESS = [
    signal.SIGURG,
    signal.SIGCHLD,
    signal.SIGWINCH,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGALRM,
    signal.SIGPROF,
    signal.SIGVTALRM,
    signal.SIGCONT,
    signal.SIGRTMIN,
]

# Handlers for every signal above (and the ones that ask to stop), then one INSERT in autocommit
# mode, which queues behind the holder. Python installs its handlers without SA_RESTART;
# signal.siginterrupt(sig, False) adds it.
SIGNALLED_WRITER = """
import signal, sqlite3, sys
path, restart, harmless, stoppers = sys.argv[1], sys.argv[2] == "restart", sys.argv[3], sys.argv[4]
seen = []
def note(signum, frame):
    seen.append(signum)
def stop(signum, frame):
    raise SystemExit(f"stopped by signal {signum}")
for s in map(int, harmless.split(",")):
    signal.signal(s, note)
    signal.siginterrupt(s, not restart)
for s in map(int, filter(None, stoppers.split(","))):
    signal.signal(s, stop)
# Python's own SIGINT handler (KeyboardInterrupt), even when started from a shell's background job,
# which inherits SIGINT ignored (and then Python installs none).
signal.signal(signal.SIGINT, signal.default_int_handler)
conn = sqlite3.connect(path, timeout=0, isolation_level=None)
print("ready", flush=True)
conn.execute("INSERT INTO t(who) VALUES ('writer')")
print("committed", ",".join(map(str, sorted(set(seen)))), flush=True)
"""

STOPPERS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT]

_started: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    while _started:
        proc = _started.pop()
        proc.kill()
        proc.communicate()


def start(*args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _started.append(proc)
    return proc


def waiting_pids(m: Mounted) -> list[int]:
    return [w["pid"] for d in locks_report(m)["databases"] for w in d["waiting"]]


def queue_writer(
    m: Mounted, db: str, *, restart: bool = False, stoppers: str = "", handled: list[int] = HARMLESS
) -> subprocess.Popen[str]:
    """A holder with an open write transaction, and the signalled writer queued behind it."""
    holder = start("-c", HOLDER, db)
    wait_for_line(holder, "holding")
    harmless = ",".join(str(int(s)) for s in handled)
    writer = start("-c", SIGNALLED_WRITER, db, "restart" if restart else "interrupt", harmless, stoppers)
    wait_for_line(writer, "ready")
    wait_until(lambda: writer.pid in waiting_pids(m))
    return writer


def end_holder() -> None:
    holder = _started[0]
    holder.kill()
    holder.communicate()


@pytest.mark.parametrize("wal", [False, True], ids=["journal", "wal"])
@pytest.mark.parametrize("restart", [False, True], ids=["eintr", "sa_restart"])
def test_signals_that_do_not_ask_to_stop_leave_the_wait_queued(
    mounted: Mounted, wal: bool, restart: bool
) -> None:
    db = mounted.path("s.db")
    make_db(db, wal)
    writer = queue_writer(mounted, db, restart=restart)
    for _ in range(3):
        for sig in HARMLESS:
            os.kill(writer.pid, sig)
            time.sleep(0.01)
    time.sleep(0.3)  # a refused wait would have failed by now
    assert writer.poll() is None, writer.communicate()[1][-2000:]
    assert waiting_pids(mounted) == [writer.pid]
    end_holder()
    out, err = writer.communicate(timeout=10)
    assert writer.returncode == 0, err[-2000:]
    handled = {int(s) for s in out.split()[-1].split(",")} if out.split()[-1] != "committed" else set()
    assert handled == {int(s) for s in HARMLESS}  # every handler ran, once the lock was granted
    assert rows(db) == ["before", "writer"]
    counters = database_report(mounted, "/s.db")["counters"]
    assert counters["interrupts"] == 0 and counters["timeouts"] == 0


@pytest.mark.parametrize("sig", STOPPERS, ids=lambda s: signal.Signals(s).name)
def test_signals_that_ask_to_stop_end_the_wait_at_once(mounted: Mounted, sig: signal.Signals) -> None:
    db = mounted.path("t.db")
    make_db(db, wal=False)
    stoppers = ",".join(str(int(s)) for s in STOPPERS if s != signal.SIGINT)  # SIGINT: KeyboardInterrupt
    writer = queue_writer(mounted, db, stoppers=stoppers)
    os.kill(writer.pid, signal.SIGURG)  # a harmless one first: the request is already interrupted
    time.sleep(0.2)
    assert waiting_pids(mounted) == [writer.pid]
    sent = time.monotonic()
    os.kill(writer.pid, sig)
    _, err = writer.communicate(timeout=5)
    assert time.monotonic() - sent < 1.0
    assert writer.returncode != 0
    assert "database is locked" in err  # as before: the wait ends, then the handler runs
    assert waiting_pids(mounted) == []
    counters = database_report(mounted, "/t.db")["counters"]
    assert counters["interrupts"] == 1
    end_holder()
    assert rows(db) == ["before"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM_default", "SIGKILL"])
def test_fatal_signal_frees_the_waiter(mounted: Mounted, sig: signal.Signals) -> None:
    db = mounted.path("f.db")
    make_db(db, wal=True)
    writer = queue_writer(mounted, db)  # no handler for SIGTERM: its default action kills
    sent = time.monotonic()
    os.kill(writer.pid, sig)
    writer.communicate(timeout=5)
    assert time.monotonic() - sent < 1.0
    assert writer.returncode == -sig
    wait_until(lambda: waiting_pids(mounted) == [], timeout=2)
    end_holder()
    assert rows(db) == ["before"]


def test_stopped_waiter_leaves_the_queue_and_queues_again_when_continued(mounted: Mounted) -> None:
    """SIGSTOP: the daemon answers EINTR, which the kernel turns into a restart of the lock call
    once the process is continued; meanwhile it holds no place in the queue. (A program that
    catches SIGCONT without SA_RESTART gets EINTR there, "database is locked".)"""
    db = mounted.path("p.db")
    make_db(db, wal=False)
    writer = queue_writer(mounted, db, handled=[s for s in HARMLESS if s != signal.SIGCONT])
    os.kill(writer.pid, signal.SIGSTOP)
    wait_until(lambda: process_state(writer.pid) == "T", timeout=2)
    wait_until(lambda: waiting_pids(mounted) == [], timeout=2)
    end_holder()
    other = sqlite3.connect(db, timeout=0, isolation_level=None)
    other.execute("INSERT INTO t(who) VALUES ('other')")  # the stopped waiter is in nobody's way
    other.close()
    os.kill(writer.pid, signal.SIGCONT)
    out, err = writer.communicate(timeout=10)
    assert writer.returncode == 0, err[-2000:]
    assert out.splitlines()[-1].startswith("committed")
    assert rows(db) == ["before", "other", "writer"]


def process_state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]
