"""Waiting at scale: a wait bound on progress, parked requests that cost nothing while they sleep,
and a WAL read slot that times out reading beside (the lock core alone, no FUSE)."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable

import pytest

from hoodydb.locks.types import FileRole, LockKind, Outcome
from tests.locks.harness import (
    DB,
    PENDING,
    SLOT,
    WRITE_LOCK,
    Bg,
    admitted_pid,
    clients,
    db_snapshot,
    make_manager,
    request,
    wait_until,
    waiting,
)

pytestmark = pytest.mark.timeout(60)

R, W = LockKind.READ, LockKind.WRITE


def test_a_queue_that_moves_never_times_out() -> None:
    """Each waiter waits far longer than the lock timeout in all, but the turn keeps moving."""
    mgr = make_manager(lock_timeout=0.3)
    mgr.name_database(DB, "db")
    first, *rest = clients(mgr, 6)
    assert first.begin() == 0
    queued = []
    for i, c in enumerate(rest, 1):
        queued.append(Bg(c.begin))
        wait_until(lambda i=i: waiting(mgr) == i)  # type: ignore[misc]
    holder = first
    for c, started in zip(rest, queued, strict=True):
        time.sleep(0.2)  # each turn well inside the lock timeout
        holder.end()
        assert started.get() == 0
        holder = c
    holder.end()
    assert queued[-1].elapsed > 0.9  # three lock timeouts in the queue, and not one refusal
    counters = db_snapshot(mgr, "db")["counters"]
    assert counters["timeouts"] == 0 and counters["transactions"] == 6


def test_a_stuck_holder_times_its_waiters_out_and_the_report_shows_it() -> None:
    mgr = make_manager(lock_timeout=0.4)
    mgr.name_database(DB, "db")
    a, b, c = clients(mgr, 3)
    assert a.begin() == 0
    waiters = [Bg(b.begin)]
    time.sleep(0.2)
    waiters.append(Bg(c.begin))  # arrives when the turn has been still for half the bound
    wait_until(lambda: waiting(mgr) == 2)
    report = db_snapshot(mgr, "db")
    assert report["still_seconds"] >= 0.2 and report["admitted"]["pid"] == a.pid
    assert waiters[0].get() == errno.EAGAIN
    assert 0.35 <= waiters[0].elapsed < 1.5
    # Each waiter is given the whole bound from its own arrival, as a busy timeout would.
    assert waiters[1].get() == errno.EAGAIN
    assert waiters[1].elapsed >= 0.35
    assert db_snapshot(mgr, "db")["counters"]["timeouts"] == 2
    assert admitted_pid(mgr) == a.pid
    a.end()


class Watched:
    """An abort check like the adapter's: told when to look (`watch`), counting every look."""

    def __init__(self) -> None:
        self.looks = 0
        self.stop = False
        self.recheck: float | None = None
        self.wake: Callable[[], None] | None = None
        self.unwatched = False

    def __call__(self) -> bool:
        self.looks += 1
        return self.stop

    def watch(self, wake: Callable[[], None]) -> None:
        self.wake = wake

    def unwatch(self) -> None:
        self.unwatched = True

    def fire(self) -> None:
        self.stop = True
        assert self.wake is not None
        self.wake()


def test_a_parked_request_is_not_polled_and_wakes_when_told() -> None:
    mgr = make_manager(lock_timeout=30.0, poll_interval=0.01)  # (only unwatched checks are polled)
    mgr.name_database(DB, "db")
    a, b = clients(mgr, 2)
    assert a.begin() == 0
    check = Watched()
    req = request(DB, FileRole.DATABASE, b.owner, PENDING, R)
    parked = Bg(lambda: mgr.setlk(req, check))
    wait_until(lambda: waiting(mgr) == 1)
    time.sleep(0.5)
    assert check.looks <= 2  # at parking: no polling while it sleeps
    check.fire()
    assert parked.get() is Outcome.ABORTED
    assert check.unwatched
    assert mgr.parked()["now"] == 0 and mgr.parked()["peak"] == 1
    a.end()


def test_a_full_room_refuses_and_counts() -> None:
    mgr = make_manager(max_waiters=2)
    mgr.name_database(DB, "db")
    a, b, c, d = clients(mgr, 4)
    assert a.begin() == 0
    queued = [Bg(b.begin), Bg(c.begin)]
    wait_until(lambda: waiting(mgr) == 2)
    assert d.begin() == errno.EAGAIN  # at once: every parked request holds a daemon thread
    parked = mgr.parked()
    assert parked == {"now": 2, "peak": 2, "bound": 2, "refused": 1}
    assert db_snapshot(mgr, "db")["counters"]["refused_full"] == 1
    a.end()
    assert queued[0].get() == 0
    b.end()
    assert queued[1].get() == 0
    c.end()


def test_a_wal_read_slot_that_times_out_reads_beside_and_its_write_is_refused() -> None:
    """SQLite retries a refused read slot 100 times and then fails with "locking protocol": a
    start that timed out behind a stuck writer reads beside instead, and its write is refused
    ("database is locked"), as natively behind a writer that does not finish."""
    mgr = make_manager(lock_timeout=0.3)
    mgr.name_database(DB, "db")
    a, b = clients(mgr, 2)
    a.wal_open()
    b.wal_open()
    assert a.shmf(R, SLOT) == 0
    assert a.shmf(W, WRITE_LOCK) == 0  # a writes, and does not finish
    t0 = time.monotonic()
    assert b.shmf(R, SLOT) == 0  # after the lock timeout: beside, on its snapshot
    assert time.monotonic() - t0 >= 0.25
    assert b.shmf(W, WRITE_LOCK) == errno.EAGAIN
    report = db_snapshot(mgr, "db")
    assert report["counters"]["timeouts"] == 1 and b.pid in report["readers"]
