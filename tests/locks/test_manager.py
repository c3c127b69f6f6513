"""LockManager driven from real threads: POSIX semantics, the gate's turns under policy `serial`,
WAL retries, graces, priorities and bounds (docs/architecture.md), without FUSE."""

from __future__ import annotations

import errno
import functools
import threading
import time
import types
from collections.abc import Iterator
from typing import ClassVar

import pytest

import hoodydb.locks.waiting as waiting_module
from hoodydb.locks.layout import (
    LockLayout,
)
from hoodydb.locks.manager import LockManager
from hoodydb.locks.types import (
    EOF_OFFSET,
    Conflict,
    FileKey,
    FileRole,
    LockKind,
    LockRequest,
    Policy,
)
from tests.locks.harness import (
    CHECKPOINT,
    DB,
    DB2,
    DMS,
    PENDING,
    PENDING_TO_SHARED,
    PLAIN,
    READ0_SLOT,
    RESERVED,
    SHARED,
    SHM,
    SLOT,
    SOON,
    WHOLE,
    WRITE_LOCK,
    Bg,
    Client,
    R,
    U,
    W,
    admitted_pid,
    clients,
    db_snapshot,
    make_manager,
    queue_is,
    request,
    setlk,
    snapshot,
    wait_until,
    waiting,
    wal_clients,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def mgr() -> Iterator[LockManager]:
    m = make_manager()
    m.name_database(DB, "db")
    yield m
    m.shutdown()


# -- POSIX semantics through the manager ------------------------------------------------------------


def test_getlk_reports_the_conflicting_lock_exactly(mgr: LockManager) -> None:
    a, b = clients(mgr, 2)
    assert a.begin() == 0
    assert a.dbf(W, RESERVED) == 0
    assert b.getlk(DB, FileRole.DATABASE, W, RESERVED) == Conflict(W, *RESERVED, pid=a.pid)
    assert b.getlk(DB, FileRole.DATABASE, R, RESERVED) == Conflict(W, *RESERVED, pid=a.pid)
    assert b.getlk(DB, FileRole.DATABASE, W, WHOLE) in (
        Conflict(W, *RESERVED, pid=a.pid),
        Conflict(R, *SHARED, pid=a.pid),
    )
    assert b.getlk(DB, FileRole.DATABASE, R, SHARED) is None  # read beside read
    assert b.getlk(DB, FileRole.DATABASE, W, PENDING) is None  # PENDING was let go
    assert a.getlk(DB, FileRole.DATABASE, W, WHOLE) is None  # own locks never conflict
    assert b.getlk(PLAIN, FileRole.OTHER, W, WHOLE) is None  # a file nobody locked


def test_getlk_on_the_dms_byte_tells_first_from_later_connections(mgr: LockManager) -> None:
    a, b = clients(mgr, 2)
    assert a.getlk(SHM, FileRole.SHM, W, DMS) is None  # the first connection may reset -shm
    a.wal_open()
    assert b.getlk(SHM, FileRole.SHM, W, DMS) == Conflict(R, *DMS, pid=a.pid)
    b.wal_open()
    a.wal_close()
    assert a.getlk(SHM, FileRole.SHM, W, DMS) == Conflict(R, *DMS, pid=b.pid)


def test_a_dms_probe_waits_while_the_first_connection_builds_the_shm(mgr: LockManager) -> None:
    """Regression: a probe that saw the builder's WRLCK made SQLite answer "database is locked"
    (40 sqlite3 CLIs, WAL, once every connection had closed and the next one rebuilt -shm)."""
    a, b = clients(mgr, 2)
    assert a.getlk(SHM, FileRole.SHM, W, DMS) is None
    assert a.begin() == 0
    assert a.shmf(W, DMS) == 0  # a is first: it resets the -shm under an exclusive DMS
    probe = Bg(lambda: b.getlk(SHM, FileRole.SHM, W, DMS))
    assert probe.blocked()
    assert a.shmf(R, DMS) == 0  # ... and downgrades
    assert probe.get() == Conflict(R, *DMS, pid=a.pid)  # b joins instead of failing


def test_merge_split_and_convert_are_visible_to_getlk(mgr: LockManager) -> None:
    a, b = clients(mgr, 2)
    assert a.lock(PLAIN, FileRole.OTHER, R, (0, 10), db=PLAIN) == 0
    assert a.lock(PLAIN, FileRole.OTHER, R, (10, 20), db=PLAIN) == 0
    assert b.getlk(PLAIN, FileRole.OTHER, W, (15, 16)) == Conflict(R, 0, 20, a.pid)  # merged
    assert a.lock(PLAIN, FileRole.OTHER, W, (5, 8), db=PLAIN) == 0  # convert the middle
    assert b.getlk(PLAIN, FileRole.OTHER, R, (0, 20)) == Conflict(W, 5, 8, a.pid)
    assert a.lock(PLAIN, FileRole.OTHER, U, (5, 8), db=PLAIN) == 0  # split
    assert b.getlk(PLAIN, FileRole.OTHER, W, (5, 8)) is None
    assert b.getlk(PLAIN, FileRole.OTHER, W, (8, 9)) == Conflict(R, 8, 20, a.pid)
    assert a.lock(PLAIN, FileRole.OTHER, U, WHOLE, db=PLAIN) == 0
    assert b.getlk(PLAIN, FileRole.OTHER, W, WHOLE) is None


def test_conflict_on_a_file_outside_the_protocol_is_answered_at_once() -> None:
    mgr = make_manager(lock_timeout=10.0)
    a, b = clients(mgr, 2)
    assert a.lock(PLAIN, FileRole.OTHER, W, (0, 1), db=None) == 0
    t0 = time.monotonic()
    assert b.lock(PLAIN, FileRole.OTHER, R, (0, 1), db=None) == errno.EAGAIN
    assert time.monotonic() - t0 < 1.0
    assert b.lock(PLAIN, FileRole.OTHER, W, (1, 2), db=None) == 0


def test_release_drops_one_owners_locks_and_lets_the_next_in(mgr: LockManager) -> None:
    a, b, c = clients(mgr, 3)
    assert a.begin() == 0
    a.write_and_commit()
    blocked = Bg(b.begin)
    wait_until(lambda: waiting(mgr) == 1)
    # PENDING, RESERVED and the SHARED range, all WRLCK: one merged segment.
    assert c.getlk(DB, FileRole.DATABASE, R, SHARED) == Conflict(W, PENDING[0], SHARED[1], pid=a.pid)
    # FLUSH (close() of the database file): libfuse unlocks the owner's whole file.
    assert a.dbf(U, WHOLE) == 0
    assert blocked.get() == 0
    assert admitted_pid(mgr) == b.pid
    assert c.getlk(DB, FileRole.DATABASE, W, SHARED) == Conflict(R, *SHARED, pid=b.pid)
    assert Client(mgr, 99).dbf(U, WHOLE) == 0  # an owner that holds nothing
    assert a.lock(PLAIN, FileRole.OTHER, U, WHOLE, db=None) == 0  # a file nobody locked
    b.end()
    assert admitted_pid(mgr) is None


def test_release_file_drops_everything_and_wakes_waiters(mgr: LockManager) -> None:
    a, b, c, d = clients(mgr, 4)
    assert a.lock(PLAIN, FileRole.OTHER, R, (0, 10), db=None) == 0
    assert b.lock(PLAIN, FileRole.OTHER, R, (5, 20), db=None) == 0
    writer = Bg(lambda: c.lock(PLAIN, FileRole.OTHER, W, (0, 20), db=None, wait=True))
    assert writer.blocked()
    assert a.begin() == 0
    turn = Bg(d.begin)
    wait_until(lambda: waiting(mgr) == 1)
    mgr.release_file(PLAIN)
    assert writer.get() == 0
    assert d.getlk(PLAIN, FileRole.OTHER, R, WHOLE) == Conflict(W, 0, 20, c.pid)
    mgr.release_file(DB)
    assert turn.get() == 0
    assert admitted_pid(mgr) == d.pid
    assert a.getlk(DB, FileRole.DATABASE, W, WHOLE) == Conflict(R, *SHARED, pid=d.pid)
    mgr.release_file((9, 9))  # unknown file: nothing to do


def test_setlkw_blocks_posix_style_and_reports_a_cycle() -> None:
    mgr = make_manager(lock_timeout=0.1)  # F_SETLKW is not bounded by the lock timeout
    a, b = clients(mgr, 2)
    assert a.lock(PLAIN, FileRole.OTHER, W, (0, 1), db=None) == 0
    assert b.lock(PLAIN, FileRole.OTHER, W, (1, 2), db=None) == 0
    first = Bg(lambda: a.lock(PLAIN, FileRole.OTHER, W, (1, 2), db=None, wait=True))
    assert first.blocked(0.3)
    assert b.lock(PLAIN, FileRole.OTHER, W, (0, 1), db=None, wait=True) == errno.EDEADLK
    assert first.blocked()
    assert b.lock(PLAIN, FileRole.OTHER, U, WHOLE, db=None) == 0
    assert first.get() == 0
    assert b.getlk(PLAIN, FileRole.OTHER, R, WHOLE) == Conflict(W, 0, 2, a.pid)


def test_setlkw_interrupted_answers_eintr() -> None:
    mgr = make_manager()
    a, b = clients(mgr, 2)
    assert a.lock(PLAIN, FileRole.OTHER, W, WHOLE, db=None) == 0
    stop = threading.Event()

    def interrupted() -> int | None:
        return errno.EINTR if stop.is_set() else None

    blocked = Bg(lambda: b.lock(PLAIN, FileRole.OTHER, R, (0, 1), db=None, wait=True, abort=interrupted))
    assert blocked.blocked()
    stop.set()
    assert blocked.get() == errno.EINTR
    assert a.getlk(PLAIN, FileRole.OTHER, W, WHOLE) is None


# -- the gate: journal mode --------------------------------------------------------------------------


def test_journal_transactions_are_admitted_one_at_a_time_in_fifo_order() -> None:
    # A long poll interval: a waiter that is not woken by its hand-off would stall the test.
    mgr = make_manager(poll_interval=30.0, lock_timeout=30.0)
    mgr.name_database(DB, "db")
    a, *rest = clients(mgr, 5)
    assert a.begin() == 0
    order: list[int] = []
    inside = [1]  # a is inside
    mu = threading.Lock()

    def txn(c: Client) -> None:
        assert c.begin() == 0
        with mu:
            inside[0] += 1
            assert inside[0] == 1
            order.append(c.owner)
        c.write_and_commit()
        with mu:
            inside[0] -= 1
        c.end()

    threads = []
    for i, c in enumerate(rest):
        threads.append(Bg(functools.partial(txn, c)))
        wait_until(functools.partial(queue_is, mgr, i + 1))
    snap = db_snapshot(mgr, "db")
    assert [w["pid"] for w in snap["waiting"]] == [c.pid for c in rest]
    assert snap["admitted"]["pid"] == a.pid
    a.write_and_commit()
    with mu:
        inside[0] -= 1
    a.end()
    for t in threads:
        t.get()
    assert order == [c.owner for c in rest]
    snap = db_snapshot(mgr, "db")
    assert snap["admitted"] is None and snap["waiting"] == []
    assert snap["counters"]["transactions"] == 5
    assert snap["counters"]["waits"] == 4
    assert snap["counters"]["max_queue"] == 4
    mgr.shutdown()


class CountingCondition(threading.Condition):
    notified: ClassVar[list[CountingCondition]] = []

    def notify(self, n: int = 1) -> None:
        CountingCondition.notified.append(self)
        super().notify(n)


def test_a_hand_off_wakes_the_admitted_waiter_and_the_new_head_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        waiting_module, "threading", types.SimpleNamespace(Lock=threading.Lock, Condition=CountingCondition)
    )
    CountingCondition.notified.clear()
    mgr = make_manager(poll_interval=30.0, lock_timeout=30.0)
    mgr.name_database(DB, "db")
    a, b, c, d = clients(mgr, 4)
    assert a.begin() == 0
    started = [Bg(b.begin)]
    wait_until(lambda: waiting(mgr) == 1)
    started += [Bg(c.begin)]
    wait_until(lambda: waiting(mgr) == 2)
    started += [Bg(d.begin)]
    wait_until(lambda: waiting(mgr) == 3)
    assert CountingCondition.notified == []
    a.end()
    assert started[0].get() == 0
    # b is admitted; c is first in line now and keeps the gate's time; d sleeps on.
    woken = CountingCondition.notified
    assert len(woken) == 2 and woken[0] is not woken[1]
    assert started[1].blocked() and started[2].blocked()
    b.end()
    assert started[1].get() == 0
    assert len(woken) == 4 and woken[2] is woken[1] and woken[3] not in woken[:3]
    assert started[2].blocked()
    c.end()
    assert started[2].get() == 0
    assert len(woken) == 5 and woken[4] is woken[3]  # d admitted; nobody left behind it
    d.end()
    mgr.shutdown()


def test_many_journal_writers_never_overlap_and_never_fail() -> None:
    mgr = make_manager(poll_interval=0.01)
    mgr.name_database(DB, "db")
    inside = [0]
    peak = [0]
    mu = threading.Lock()

    def worker(c: Client) -> int:
        for _ in range(5):
            assert c.begin() == 0
            with mu:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            c.write_and_commit()
            with mu:
                inside[0] -= 1
            c.end()
        return 0

    runs = [Bg(functools.partial(worker, c)) for c in clients(mgr, 8)]
    assert [r.get(10.0) for r in runs] == [0] * 8
    assert peak[0] == 1
    snap = db_snapshot(mgr, "db")
    assert snap["counters"]["transactions"] == 40
    assert snap["counters"]["timeouts"] == 0
    assert snap["holders"] == []


def test_wait_is_bounded_by_the_lock_timeout() -> None:
    mgr = make_manager(lock_timeout=0.3)
    mgr.name_database(DB, "db")
    a, b = clients(mgr, 2)
    assert a.begin() == 0
    late = Bg(b.begin)
    assert late.get() == errno.EAGAIN
    assert 0.29 <= late.elapsed < 1.5
    snap = db_snapshot(mgr, "db")
    assert snap["counters"]["timeouts"] == 1
    assert snap["waiting"] == []
    assert snap["admitted"]["pid"] == a.pid
    assert a.getlk(DB, FileRole.DATABASE, W, WHOLE) is None  # b holds nothing
    a.end()
    assert b.begin() == 0  # and b gets in next time


def test_deadlock_victim_gets_eagain_never_a_hang() -> None:
    mgr = make_manager(lock_timeout=20.0)
    mgr.name_database(DB, "db1")
    mgr.name_database(DB2, "db2")
    a = Client(mgr, 1, db=DB)
    b = Client(mgr, 2, db=DB2)
    assert a.begin() == 0
    assert b.begin() == 0
    go = threading.Barrier(2)

    def cross(me: Client, other_db: FileKey) -> int:
        go.wait()
        rc = me.lock(other_db, FileRole.DATABASE, R, PENDING, db=other_db)
        if rc == 0:
            assert me.lock(other_db, FileRole.DATABASE, U, WHOLE, db=other_db) == 0
        me.end()  # SQLITE_BUSY: roll back and let go of the own database
        return rc

    runs = [Bg(lambda: cross(a, DB2)), Bg(lambda: cross(b, DB))]
    results = [r.get(3.0) for r in runs]
    assert sorted(results) == [0, errno.EAGAIN]
    counters = [db_snapshot(mgr, n)["counters"] for n in ("db1", "db2")]
    assert sum(c["victims"] for c in counters) == 1
    assert sum(c["timeouts"] for c in counters) == 0
    assert all(d["admitted"] is None and d["waiting"] == [] for d in snapshot(mgr))


@pytest.mark.parametrize("answer", [errno.EAGAIN, errno.EINTR], ids=["end", "restart"])
def test_aborted_wait_answers_the_abort_errno_and_leaves_the_queue(mgr: LockManager, answer: int) -> None:
    """The adapter's abort check decides the answer to an interrupted F_SETLK: EAGAIN ends the
    wait ("database is locked"), EINTR has the kernel restart the call (a stopped process)."""
    a, b, c = clients(mgr, 3)
    assert a.begin() == 0
    stop = threading.Event()
    interrupted = Bg(lambda: b.dbf(R, PENDING, abort=lambda: answer if stop.is_set() else None))
    wait_until(lambda: waiting(mgr) == 1)
    queued = Bg(c.begin)
    wait_until(lambda: waiting(mgr) == 2)
    stop.set()
    assert interrupted.get() == answer
    assert interrupted.elapsed < SOON
    snap = db_snapshot(mgr, "db")
    assert snap["counters"]["interrupts"] == 1
    assert [w["pid"] for w in snap["waiting"]] == [c.pid]
    a.end()
    assert queued.get() == 0
    assert admitted_pid(mgr) == c.pid


def test_max_waiters_bounds_the_parked_requests() -> None:
    mgr = make_manager(max_waiters=1)
    mgr.name_database(DB, "db")
    a, b, c = clients(mgr, 3)
    assert a.begin() == 0
    parked = Bg(b.begin)
    wait_until(lambda: waiting(mgr) == 1)
    t0 = time.monotonic()
    assert c.begin() == errno.EAGAIN
    assert time.monotonic() - t0 < 1.0
    assert [w["pid"] for w in db_snapshot(mgr, "db")["waiting"]] == [b.pid]
    a.end()
    assert parked.get() == 0


def test_readonly_owner_bypasses_the_gate(mgr: LockManager) -> None:
    a, b = clients(mgr, 2)
    r = Client(mgr, 9, readonly=True)
    assert a.begin() == 0
    assert a.dbf(W, RESERVED) == 0  # a is writing
    queued = Bg(b.begin)
    wait_until(lambda: waiting(mgr) == 1)
    t0 = time.monotonic()
    assert r.begin() == 0  # beside the admitted writer, no wait
    assert time.monotonic() - t0 < 1.0
    snap = db_snapshot(mgr, "db")
    assert snap["readers"] == [r.pid]
    assert snap["admitted"]["pid"] == a.pid
    assert snap["holders"] == sorted([a.pid, r.pid])
    r.end()
    assert db_snapshot(mgr, "db")["readers"] == []
    a.end()
    assert queued.get() == 0


def test_reader_holding_nothing_waits_for_a_committing_writer(mgr: LockManager) -> None:
    a = Client(mgr, 1)
    r = Client(mgr, 9, readonly=True)
    assert a.begin() == 0
    a.write_and_commit()  # a holds EXCLUSIVE
    reader = Bg(r.begin)
    assert reader.blocked()
    a.end()
    assert reader.get() == 0
    r.end()


def test_admitted_writer_waits_for_a_reader_who_gets_eagain_at_once(mgr: LockManager) -> None:
    a = Client(mgr, 1)
    r = Client(mgr, 9, readonly=True)
    assert r.begin() == 0
    assert a.begin() == 0
    assert a.dbf(W, RESERVED) == 0
    assert a.dbf(W, PENDING) == 0
    commit = Bg(lambda: a.dbf(W, SHARED))  # the admitted owner may wait for readers to drain
    assert commit.blocked()
    # The reader holds SHARED and is not admitted: a conflict is answered at once, never parked.
    t0 = time.monotonic()
    assert r.dbf(R, PENDING) == errno.EAGAIN
    assert time.monotonic() - t0 < 1.0
    r.end()
    assert commit.get() == 0
    a.end()


# -- the gate: WAL mode -----------------------------------------------------------------------------


def test_wal_hand_off_reserves_the_turn_for_the_retry(mgr: LockManager) -> None:
    a, b, c = wal_clients(mgr, 3)
    assert snapshot(mgr)[0]["mode"] == "wal"
    assert a.shmf(R, SLOT) == 0
    first = Bg(lambda: b.shmf(R, SLOT))
    wait_until(lambda: waiting(mgr) == 1)
    a.wal_write()  # a commit while b waits: b's view of the WAL index is out of date
    assert a.shmf(U, SLOT) == 0  # a's transaction is over: hand-off to b
    assert first.get() == errno.EAGAIN  # b re-reads the WAL header ...
    adm = db_snapshot(mgr, "db")["admitted"]
    assert adm["pid"] == b.pid and adm["reserved"] is True
    third = Bg(lambda: c.shmf(R, SLOT))  # ... while nobody can take its turn
    wait_until(lambda: waiting(mgr) == 1)
    t0 = time.monotonic()
    assert b.shmf(R, SLOT) == 0  # ... and the retry gets straight in
    assert time.monotonic() - t0 < 1.0
    assert db_snapshot(mgr, "db")["admitted"]["reserved"] is False
    b.wal_write()
    assert third.blocked()
    assert b.shmf(U, SLOT) == 0
    assert third.get() == errno.EAGAIN
    assert c.wal_begin() == (0, 0)
    assert c.shmf(U, SLOT) == 0
    assert admitted_pid(mgr) is None
    assert db_snapshot(mgr, "db")["counters"]["expired_reservations"] == 0


def test_read0_is_granted_on_hand_off_and_its_retry_finds_the_turn() -> None:
    """READ0 (a fully checkpointed WAL) answered EAGAIN makes SQLite read on a read-mark slot,
    not look again, which keeps the next writer from restarting the WAL (SQLite's wal.test counts
    the frames). So it is granted; if SQLite finds the index changed it lets go at once and asks
    again, and the turn waits for it."""
    mgr = make_manager(schema_grace=0.5)
    mgr.name_database(DB, "db")
    a, b, c = wal_clients(mgr, 3)
    assert a.shmf(R, SLOT) == 0
    first = Bg(lambda: b.shmf(R, READ0_SLOT))
    wait_until(lambda: waiting(mgr) == 1)
    a.wal_write()
    assert a.shmf(U, SLOT) == 0
    assert first.get() == 0  # granted, no EAGAIN
    assert b.shmf(U, READ0_SLOT) == 0  # the WAL index changed: SQLite lets go to look again ...
    third = Bg(lambda: c.shmf(R, SLOT))
    assert third.blocked()  # ... while nobody can take its turn ...
    assert b.shmf(R, SLOT) == 0  # ... and its retry goes straight in
    assert admitted_pid(mgr) == b.pid
    assert b.shmf(U, SLOT) == 0
    assert third.get() == errno.EAGAIN  # c's turn now: it looks at the WAL index again ...
    assert c.shmf(R, SLOT) == 0  # ... and comes straight in
    assert c.shmf(U, SLOT) == 0
    mgr.shutdown()


def test_a_read_start_whose_view_is_current_is_granted_on_hand_off_as_it_asked() -> None:
    """Transactions taking turns with no commit among them (a web app's lookups on a checkpointed
    WAL): the WAL index cannot have changed since a waiting start read it, so its read slot is
    granted on hand-off as it asked: no EAGAIN round trip, and on READ0 no grace held for a
    retry that cannot come (it held the turn through the client's think time, each hand-off)."""
    mgr = make_manager(schema_grace=0.5)
    mgr.name_database(DB, "db")
    a, b, c = wal_clients(mgr, 3)
    assert a.shmf(R, READ0_SLOT) == 0
    on_slot = Bg(lambda: b.shmf(R, SLOT))
    on_read0 = Bg(lambda: c.shmf(R, READ0_SLOT))
    wait_until(lambda: waiting(mgr) == 2)
    assert a.shmf(U, READ0_SLOT) == 0
    assert on_slot.get() == 0  # not EAGAIN
    assert db_snapshot(mgr, "db")["admitted"]["reserved"] is False
    assert on_read0.blocked()
    assert b.shmf(U, SLOT) == 0
    assert on_read0.get() == 0
    assert c.shmf(U, READ0_SLOT) == 0
    assert admitted_pid(mgr) is None  # no retry grace: the turn is free at once
    counters = db_snapshot(mgr, "db")["counters"]
    assert (counters["waits"], counters["granted_as_asked"], counters["expired_reservations"]) == (2, 2, 0)
    mgr.shutdown()


def test_a_read_start_asked_just_after_a_commit_looks_again_on_hand_off() -> None:
    """A client may be descheduled between reading the WAL header and asking for its read slot:
    a commit less than `view_age` before it asked may postdate its view, so it looks again."""
    mgr = make_manager(view_age=30.0)
    mgr.name_database(DB, "db")
    a, b = wal_clients(mgr, 2)
    assert a.shmf(R, SLOT) == 0
    a.wal_write()  # committed; its transaction still holds the turn
    asked = Bg(lambda: b.shmf(R, SLOT))
    wait_until(lambda: waiting(mgr) == 1)
    assert a.shmf(U, SLOT) == 0
    assert asked.get() == errno.EAGAIN
    assert db_snapshot(mgr, "db")["admitted"]["reserved"] is True
    assert db_snapshot(mgr, "db")["counters"]["granted_as_asked"] == 0
    assert b.shmf(R, SLOT) == 0
    assert b.shmf(U, SLOT) == 0
    mgr.shutdown()


def _reserved_turn_for_b(mgr: LockManager) -> tuple[Client, Client, Client]:
    """Three WAL clients; a's transaction ends while b waits, so b holds the turn for its retry."""
    a, b, c = wal_clients(mgr, 3)
    assert a.shmf(R, SLOT) == 0
    first = Bg(lambda: b.shmf(R, SLOT))
    wait_until(lambda: waiting(mgr) == 1)
    a.wal_write()
    assert a.shmf(U, SLOT) == 0
    assert first.get() == errno.EAGAIN
    return a, b, c


def test_wal_reservation_expires_when_the_retry_never_comes() -> None:
    mgr = make_manager(reservation=0.2)
    mgr.name_database(DB, "db")
    _, b, c = _reserved_turn_for_b(mgr)
    # b never comes back; c waits behind the reservation until it expires.
    t0 = time.monotonic()
    third = Bg(c.wal_begin)
    assert third.get() == (0, 1)
    assert 0.1 <= time.monotonic() - t0 < 1.5
    snap = db_snapshot(mgr, "db")
    assert snap["counters"]["expired_reservations"] == 1
    assert snap["admitted"]["pid"] == c.pid
    assert c.shmf(U, SLOT) == 0
    # b's late retry is a fresh transaction start.
    assert b.wal_begin() == (0, 0)
    assert b.shmf(U, SLOT) == 0


def test_a_connections_first_read_keeps_the_turn_for_its_statement() -> None:
    """The schema read of a new connection and the statement it prepares make one turn."""
    mgr = make_manager(schema_grace=5.0, poll_interval=30.0)
    mgr.name_database(DB, "db")
    a, b = Client(mgr, 1, handle=7), Client(mgr, 2, handle=8)
    assert a.begin() == 0
    a.end()  # the schema read: no write, first on handle 7
    assert admitted_pid(mgr) == a.pid
    queued = Bg(b.begin)
    assert queued.blocked()
    assert a.begin() == 0  # the statement: straight in
    a.end()
    assert queued.get() == 0  # a's second read gets no grace: b is handed the turn
    b.end()  # b's own schema read: held for b ...
    assert admitted_pid(mgr) == b.pid
    mgr.forget_handle(8)  # ... until its connection closes (libfuse unlocks, then releases)
    b.dbf(U, WHOLE)
    assert db_snapshot(mgr, "db")["counters"]["transactions"] == 2
    mgr.shutdown()


def test_the_grace_ends_on_time_and_a_writing_first_transaction_gets_none() -> None:
    # A long poll interval: the waiter must wake when the grace runs out, not at its next poll.
    mgr = make_manager(schema_grace=0.2, poll_interval=30.0)
    mgr.name_database(DB, "db")
    a, b = Client(mgr, 1, handle=7), Client(mgr, 2, handle=8)
    assert a.begin() == 0
    a.end()
    t0 = time.monotonic()
    assert Bg(b.begin).get() == 0  # a never came back
    assert 0.15 <= time.monotonic() - t0 < 1.5
    assert db_snapshot(mgr, "db")["counters"]["expired_reservations"] == 1
    b.write_and_commit()  # a first transaction that writes (BEGIN IMMEDIATE) ...
    b.end()
    assert admitted_pid(mgr) is None  # ... passes the turn on at once
    mgr.forget_handle(7)
    a2 = Client(mgr, 3, handle=7)  # a new connection reusing the closed handle's number
    assert a2.begin() == 0
    a2.end()
    assert admitted_pid(mgr) == a2.pid
    mgr.shutdown()


def test_wal_first_read_keeps_the_turn_for_its_statement() -> None:
    mgr = make_manager(schema_grace=5.0)
    mgr.name_database(DB, "db")
    a, b = Client(mgr, 1, handle=7), Client(mgr, 2)
    b.wal_open()
    a.wal_open()
    assert admitted_pid(mgr) == a.pid  # a's first read slot was its schema read
    queued = Bg(b.wal_begin)
    assert queued.blocked()
    assert a.wal_begin() == (0, 0)
    a.wal_write()
    assert a.shmf(U, SLOT) == 0
    assert queued.get() == (0, 1)  # the hand-off's EAGAIN, then in
    assert b.shmf(U, SLOT) == 0
    assert admitted_pid(mgr) is None
    mgr.shutdown()


def test_a_waiter_queued_before_the_grace_wakes_when_it_runs_out() -> None:
    mgr = make_manager(schema_grace=0.005, poll_interval=30.0)
    mgr.name_database(DB, "db")
    a, b = Client(mgr, 1, handle=7), Client(mgr, 2, handle=8)
    assert a.begin() == 0
    queued = Bg(b.begin)
    wait_until(lambda: waiting(mgr) == 1)
    t0 = time.monotonic()
    a.end()  # the schema read is over and a never comes back
    assert queued.get() == 0
    assert time.monotonic() - t0 < 1.0  # the grace, not the poll interval
    b.end()
    mgr.shutdown()


def test_a_wal_connection_closing_in_its_grace_fails_exclusive_at_once() -> None:
    """Its only transaction was the schema read (say the statement failed to prepare)."""
    mgr = make_manager(schema_grace=5.0, lock_timeout=5.0)
    mgr.name_database(DB, "db")
    b, a = Client(mgr, 2), Client(mgr, 1, handle=7)
    b.wal_open()
    a.wal_open()
    assert admitted_pid(mgr) == a.pid  # in its grace
    t0 = time.monotonic()
    a.wal_close()  # the EXCLUSIVE attempt fails at once: b keeps SHARED
    assert time.monotonic() - t0 < 1.0
    assert admitted_pid(mgr) is None  # and its close ends the grace
    mgr.shutdown()


def test_a_held_turn_is_no_edge_of_a_deadlock() -> None:
    """p1's grace on db ends by itself: p1 waiting on db2, where p2 runs while queued on db,
    is no cycle."""
    mgr = make_manager(schema_grace=0.3)
    mgr.name_database(DB, "db")
    mgr.name_database(DB2, "db2")
    p1, p1b = Client(mgr, 1, handle=7), Client(mgr, 1, db=DB2, handle=17)
    p2, p2b = Client(mgr, 2, handle=8), Client(mgr, 2, db=DB2, handle=18)
    assert p1.begin() == 0
    p1.end()  # p1's schema read of db: its grace holds db's turn
    assert p2b.begin() == 0  # p2 runs on db2 ...
    on_db = Bg(p2.begin)  # ... and queues for db
    wait_until(lambda: waiting(mgr) == 1)
    on_db2 = Bg(p1b.begin)  # p1 queues for db2: it must wait, not be a deadlock victim
    assert on_db.get() == 0  # the grace ran out
    p2.end()
    p2b.end()
    assert on_db2.get() == 0
    p1b.end()
    mgr.shutdown()


def test_a_client_killed_in_its_wal_retry_passes_the_turn_on_at_once() -> None:
    mgr = make_manager(reservation=5.0)
    mgr.name_database(DB, "db")
    _, b, c = _reserved_turn_for_b(mgr)
    assert b.shmf(U, WHOLE) == 0  # b is killed in its retry: its FLUSHes unlock everything
    assert b.dbf(U, WHOLE) == 0
    t0 = time.monotonic()
    assert c.wal_begin() == (0, 0)
    assert time.monotonic() - t0 < 1.0
    assert c.shmf(U, SLOT) == 0
    mgr.shutdown()


def test_wal_owner_holding_locks_gets_eagain_at_once_on_conflict(mgr: LockManager) -> None:
    a, b = clients(mgr, 2)
    a.wal_open()
    b.wal_open()
    assert a.wal_begin() == (0, 0)
    checkpoint = CHECKPOINT
    assert a.shmf(W, checkpoint) == 0
    t0 = time.monotonic()
    assert b.shmf(W, checkpoint) == errno.EAGAIN  # b holds SHARED and DMS: never parked
    assert time.monotonic() - t0 < 1.0
    assert a.shmf(U, checkpoint) == 0
    assert admitted_pid(mgr) == a.pid


def test_wal_write_lock_outside_the_turn_waits_for_the_turn(mgr: LockManager) -> None:
    """SQLite may take the WAL WRITE lock before a read slot (recovery, SETLK_TIMEOUT builds).

    Granting it beside the admitted writer left each waiting on the other; it queues instead.
    """
    a, b = clients(mgr, 2)
    a.wal_open()
    b.wal_open()
    assert a.wal_begin() == (0, 0)
    queued = Bg(lambda: b.shmf(W, WRITE_LOCK))
    wait_until(lambda: waiting(mgr) == 1)
    assert a.shmf(W, WRITE_LOCK) == 0  # the admitted writer is not held up by b
    assert a.shmf(U, WRITE_LOCK) == 0
    assert admitted_pid(mgr) == a.pid
    assert a.shmf(U, SLOT) == 0
    assert queued.get() == 0  # granted on hand-off: the WRITE lock needs no EAGAIN retry
    assert admitted_pid(mgr) == b.pid
    assert b.shmf(U, WRITE_LOCK) == 0
    assert admitted_pid(mgr) is None


def test_a_connection_opening_while_the_last_wal_connection_closes_gets_shared(mgr: LockManager) -> None:
    """Found by 6 connect-per-task WAL writers (about 1 run in 150 under CPU load). The last
    connection to close holds EXCLUSIVE for its checkpoint and lets go of PENDING before the
    SHARED range. A newcomer waiting for PENDING got it in between; its SHARED request, made
    while holding PENDING, could no longer wait, and SQLite said "database is locked"."""
    a, b = clients(mgr, 2)
    a.wal_open()
    assert a.dbf(W, PENDING) == 0
    assert a.dbf(W, SHARED) == 0  # nobody else has it open: EXCLUSIVE, checkpoint
    newcomer = Bg(b.begin)  # arrives while the WAL index is still live: no turn to wait for
    assert newcomer.blocked()
    assert a.shmf(U, WHOLE) == 0
    assert a.dbf(U, PENDING_TO_SHARED) == 0
    assert newcomer.blocked(), "PENDING is free, but SQLite's next request (SHARED) is not"
    assert a.dbf(U, WHOLE) == 0
    assert newcomer.get() == 0
    b.end()


def test_waiting_counts_the_queues_at_the_gates_only(mgr: LockManager) -> None:
    a, b, c = clients(mgr, 3)
    assert a.begin() == 0
    queued = Bg(b.begin)
    wait_until(lambda: mgr.waiting == 1)
    assert c.lock(PLAIN, FileRole.OTHER, W, (0, 1), db=None) == 0
    blocked = Bg(lambda: a.lock(PLAIN, FileRole.OTHER, W, (0, 1), db=None, wait=True))  # F_SETLKW
    assert blocked.blocked()
    assert mgr.waiting == 1, "a blocking lock on another file is no queue for a database"
    assert c.lock(PLAIN, FileRole.OTHER, U, (0, 1), db=None) == 0
    assert blocked.get() == 0
    a.end()
    assert queued.get() == 0
    assert mgr.waiting == 0
    b.end()


def test_exclusive_without_pending_sees_a_newcomer_halfway_to_shared(mgr: LockManager) -> None:
    """SQLite 3.42 and later take EXCLUSIVE straight from SHARED without the PENDING byte (the
    last WAL connection's checkpoint on close). A newcomer holding PENDING on its way to SHARED
    is a connection too: the closer is not the last, and the newcomer must get SHARED."""
    a, b = clients(mgr, 2)
    a.wal_open()
    assert b.dbf(R, PENDING) == 0
    t0 = time.monotonic()
    assert a.dbf(W, SHARED) == errno.EAGAIN  # not the last connection: no checkpoint
    assert time.monotonic() - t0 < 1.0
    assert b.dbf(R, SHARED) == 0
    assert b.dbf(U, PENDING) == 0
    assert a.dbf(W, SHARED) == errno.EAGAIN
    a.wal_close()
    b.wal_close()


def test_policy_off_keeps_pending_and_shared_independent() -> None:
    """The look-ahead between PENDING and the SHARED range is the serial policy's: off is POSIX."""
    mgr = make_manager(policy=Policy.OFF)
    a, b = clients(mgr, 2)
    assert a.dbf(R, PENDING) == 0
    assert a.dbf(R, SHARED) == 0
    assert a.dbf(U, PENDING) == 0
    assert a.dbf(W, SHARED) == 0  # EXCLUSIVE straight from SHARED
    assert b.dbf(R, PENDING) == 0  # as the kernel would: nothing holds the byte
    assert b.dbf(R, SHARED) == errno.EAGAIN
    assert b.dbf(U, WHOLE) == 0
    assert b.dbf(R, PENDING) == 0
    assert a.dbf(W, SHARED) == 0  # a already holds it; b's PENDING is no conflict under POSIX
    mgr.shutdown()


def test_wal_close_checkpoint_attempt_fails_at_once(mgr: LockManager) -> None:
    a, b = clients(mgr, 2)
    a.wal_open()
    b.wal_open()
    t0 = time.monotonic()
    a.wal_close()  # b's SHARED stands in the way of a's EXCLUSIVE: normal and silent
    assert time.monotonic() - t0 < 1.0
    assert b.getlk(SHM, FileRole.SHM, W, DMS) is None
    b.wal_close()
    assert snapshot(mgr)[0]["holders"] == []


def test_many_wal_writers_never_overlap(mgr: LockManager) -> None:
    inside = [0]
    peak = [0]
    retries = [0]
    mu = threading.Lock()
    cs = clients(mgr, 6)
    for c in cs:
        c.wal_open()

    def worker(c: Client) -> int:
        for _ in range(5):
            rc, n = c.wal_begin()
            assert rc == 0
            with mu:
                retries[0] += n
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            c.wal_write()
            with mu:
                inside[0] -= 1
            assert c.shmf(U, SLOT) == 0
        return 0

    runs = [Bg(functools.partial(worker, c)) for c in cs]
    assert [r.get(10.0) for r in runs] == [0] * 6
    assert peak[0] == 1
    snap = db_snapshot(mgr, "db")
    assert snap["counters"]["timeouts"] == 0
    assert snap["counters"]["expired_reservations"] == 0
    assert retries[0] == snap["counters"]["waits"]  # every hand-off costs exactly one retry
    for c in cs:
        c.wal_close()


def test_wal_readonly_reader_reads_beside_the_writer(mgr: LockManager) -> None:
    a = Client(mgr, 1)
    r = Client(mgr, 9, readonly=True)
    a.wal_open()
    r.wal_open()
    assert a.wal_begin() == (0, 0)
    assert a.shmf(W, WRITE_LOCK) == 0
    t0 = time.monotonic()
    assert r.wal_begin() == (0, 0)
    assert time.monotonic() - t0 < 1.0
    snap = db_snapshot(mgr, "db")
    assert snap["readers"] == [r.pid]
    assert snap["admitted"]["pid"] == a.pid
    assert r.shmf(U, SLOT) == 0
    a.wal_write()
    assert a.shmf(U, SLOT) == 0


# -- policy off, shutdown, snapshot ------------------------------------------------------------------


def test_policy_off_answers_every_conflict_at_once() -> None:
    mgr = make_manager(policy=Policy.OFF, lock_timeout=10.0)
    mgr.name_database(DB, "db")
    a, b = clients(mgr, 2)
    assert a.begin() == 0
    assert b.begin() == 0  # no gate: both inside
    assert a.dbf(W, RESERVED) == 0
    t0 = time.monotonic()
    assert b.dbf(W, RESERVED) == errno.EAGAIN
    assert a.dbf(W, PENDING) == 0
    assert a.dbf(W, SHARED) == errno.EAGAIN  # b's SHARED: even the writer is not parked
    b.end()
    c = Client(mgr, 3)
    assert c.dbf(R, PENDING) == errno.EAGAIN  # holds nothing, still not parked
    assert time.monotonic() - t0 < 1.0
    assert a.dbf(W, SHARED) == 0
    snap = db_snapshot(mgr, "db")
    assert snap["admitted"] is None
    assert snap["counters"]["transactions"] == 0
    # F_SETLKW still blocks, POSIX-style.
    blocked = Bg(lambda: c.dbf(R, PENDING, wait=True))
    assert blocked.blocked()
    a.end()
    assert blocked.get() == 0


def test_shutdown_wakes_every_waiter() -> None:
    mgr = make_manager(poll_interval=30.0, lock_timeout=30.0)
    a, b, c = clients(mgr, 3)
    assert a.begin() == 0
    a.write_and_commit()
    gated = Bg(b.begin)
    assert a.lock(PLAIN, FileRole.OTHER, W, WHOLE, db=None) == 0
    posix = Bg(lambda: c.lock(PLAIN, FileRole.OTHER, W, WHOLE, db=None, wait=True))
    assert gated.blocked() and posix.blocked()
    t0 = time.monotonic()
    mgr.shutdown()
    assert gated.get() == errno.EAGAIN
    assert posix.get() == errno.EAGAIN
    assert time.monotonic() - t0 < 1.0


def test_snapshot_fields() -> None:
    mgr = make_manager()
    assert snapshot(mgr) == []
    mgr.name_database(DB, "db")
    a, b = clients(mgr, 2)
    r = Client(mgr, 9, readonly=True)
    assert a.begin() == 0
    assert r.begin() == 0
    queued = Bg(b.begin)
    wait_until(lambda: waiting(mgr) == 1)
    time.sleep(0.05)
    (snap,) = snapshot(mgr)
    assert set(snap) == {
        "database",
        "mode",
        "admitted",
        "waiting",
        "readers",
        "beside",
        "writers",
        "holders",
        "counters",
        "still_seconds",
        "owners",
    }
    assert snap["database"] == "db"
    assert snap["mode"] == "rollback"
    assert snap["admitted"]["pid"] == a.pid
    assert snap["admitted"]["seconds"] >= 0.05
    assert snap["admitted"]["reserved"] is False
    assert len(snap["waiting"]) == 1
    assert snap["waiting"][0]["pid"] == b.pid
    assert snap["waiting"][0]["seconds"] >= 0.04
    assert snap["readers"] == [r.pid]
    assert snap["holders"] == sorted([a.pid, r.pid])
    assert snap["counters"]["transactions"] == 1
    assert snap["counters"]["waits"] == 1
    a.end()
    r.end()
    assert queued.get() == 0
    b.end()
    other = Client(mgr, 5, db=DB2)
    assert other.begin() == 0
    names = sorted(d["database"] for d in snapshot(mgr))
    assert names == ["db", f"inode {DB2[1]}"]
    other.end()


def _pending_request(owner: int, kind: LockKind, start: int, end: int, wait: bool = False) -> LockRequest:
    return request((1, 100), FileRole.DATABASE, owner, (start, end), kind, wait=wait)


def test_a_lock_granted_after_waiting_at_the_gate_is_visible_to_others() -> None:
    """Regression: the grant used to land in a file state the previous holder's unlock discarded."""
    layout = LockLayout(pending=0x10000)
    mgr = make_manager(layout=layout, poll_interval=0.01)
    mgr.name_database((1, 100), "db")
    pending = (layout.pending, layout.pending + 1)
    assert setlk(mgr, _pending_request(1, LockKind.READ, *pending)) == 0
    assert setlk(mgr, _pending_request(1, LockKind.READ, layout.shared_first, layout.shared_first + 510)) == 0
    assert setlk(mgr, _pending_request(1, LockKind.UNLOCK, *pending)) == 0
    answers: list[int] = []
    queued = threading.Thread(
        target=lambda: answers.append(setlk(mgr, _pending_request(2, LockKind.READ, *pending)))
    )
    queued.start()
    wait_until(lambda: queue_is(mgr, 1))
    assert setlk(mgr, _pending_request(1, LockKind.UNLOCK, 0, EOF_OFFSET)) == 0
    queued.join(SOON)
    assert answers == [0]
    assert mgr.getlk(_pending_request(3, LockKind.WRITE, *pending)) == Conflict(LockKind.READ, *pending, 1002)
    assert setlk(mgr, _pending_request(3, LockKind.WRITE, *pending)) == errno.EAGAIN


def test_setlkw_interrupted_while_queued_at_the_gate_answers_eintr() -> None:
    layout = LockLayout(pending=0x10000)
    mgr = make_manager(layout=layout, poll_interval=0.01)
    mgr.name_database((1, 100), "db")
    pending = (layout.pending, layout.pending + 1)
    assert setlk(mgr, _pending_request(1, LockKind.READ, *pending)) == 0
    stop = threading.Event()
    answers: list[int] = []

    def blocking() -> None:
        req = _pending_request(2, LockKind.READ, *pending, wait=True)
        answers.append(setlk(mgr, req, lambda: errno.EINTR if stop.is_set() else None))

    waiter = threading.Thread(target=blocking)
    waiter.start()
    wait_until(lambda: queue_is(mgr, 1))
    stop.set()
    waiter.join(SOON)
    assert answers == [errno.EINTR]


# -- EXCLUSIVE straight from SHARED (SQLite 3.42 and later) ----------------------------------------


def test_exclusive_from_shared_is_not_starved_by_a_stream_of_readers() -> None:
    """Rolling back a hot journal, SQLite 3.42+ goes from SHARED to EXCLUSIVE without PENDING, so
    nothing of its own keeps new readers out. Readers that keep overlapping would hold the
    SHARED range for ever: while the admitted owner waits, newcomers wait behind it."""
    mgr = make_manager(lock_timeout=5.0)
    a = Client(mgr, 1)
    r1, r2 = Client(mgr, 8, readonly=True), Client(mgr, 9, readonly=True)
    assert a.begin() == 0  # admitted, SHARED: finds the hot journal
    assert r1.begin() == 0
    exclusive = Bg(lambda: a.dbf(W, SHARED))
    assert exclusive.blocked()
    newcomer = Bg(r2.begin)
    assert newcomer.blocked()  # would overlap r1 and keep the range held
    mgr.name_database(DB, "db")
    assert db_snapshot(mgr, "db")["admitted"]["exclusive_first"] is True  # `hoodydb locks` shows it
    r1.end()
    assert exclusive.get() == 0
    assert db_snapshot(mgr, "db")["admitted"]["exclusive_first"] is False
    assert newcomer.blocked()  # a holds EXCLUSIVE now
    a.end()
    assert newcomer.get() == 0
    r2.end()
    mgr.shutdown()


def test_readers_wait_behind_an_exclusive_only_for_a_bounded_time() -> None:
    """An EXCLUSIVE that cannot come soon (a reader that stays) holds newcomers back only for
    `exclusive_priority_seconds`, once per turn, and never past the owner giving up."""
    mgr = make_manager(lock_timeout=5.0, exclusive_priority=0.3)
    a = Client(mgr, 1)
    r1, r2, r3 = (Client(mgr, owner, readonly=True) for owner in (7, 8, 9))
    assert a.begin() == 0
    assert r1.begin() == 0  # stays
    exclusive = Bg(lambda: a.dbf(W, SHARED))
    assert exclusive.blocked()
    newcomer = Bg(r2.begin)
    assert newcomer.get(timeout=SOON) == 0
    assert 0.2 < newcomer.elapsed < 1.5
    assert r3.begin() == 0  # the priority is spent for this turn
    assert exclusive.blocked()
    for r in (r1, r2, r3):
        r.end()
    assert exclusive.get() == 0
    a.end()
    mgr.shutdown()


def test_readers_go_on_at_once_when_the_exclusive_waiter_gives_up() -> None:
    mgr = make_manager(lock_timeout=0.4, exclusive_priority=3.0)
    a = Client(mgr, 1)
    r1, r2 = Client(mgr, 8, readonly=True), Client(mgr, 9, readonly=True)
    assert a.begin() == 0
    assert r1.begin() == 0
    exclusive = Bg(lambda: a.dbf(W, SHARED))
    assert exclusive.blocked()
    newcomer = Bg(r2.begin)
    assert exclusive.get() == errno.EAGAIN  # the lock timeout, well before the priority's end
    assert newcomer.get(timeout=1.0) == 0
    assert newcomer.elapsed < 1.0
    for c in (r1, r2, a):
        c.end()
    mgr.shutdown()


def test_a_reader_already_inside_is_not_held_back(mgr: LockManager) -> None:
    """Only the first step to SHARED waits: a reader that holds SHARED and asks again (or
    upgrades its PENDING) is no newcomer, and holding it would wait on itself."""
    a = Client(mgr, 1)
    r = Client(mgr, 9, readonly=True)
    assert a.begin() == 0
    assert r.dbf(R, PENDING) == 0
    exclusive = Bg(lambda: a.dbf(W, SHARED))
    assert exclusive.blocked()
    t0 = time.monotonic()
    assert r.dbf(R, SHARED) == 0
    assert r.dbf(U, PENDING) == 0
    assert time.monotonic() - t0 < 1.0
    r.end()
    assert exclusive.get() == 0
    a.end()


def test_waiting_behind_an_exclusive_is_no_edge_of_a_deadlock() -> None:
    """The wait behind an EXCLUSIVE ends by itself, so a client waiting on the newcomer (here on
    another database) must not be taken for a deadlock victim."""
    mgr = make_manager(lock_timeout=5.0)
    mgr.name_database(DB2, "db2")
    a = Client(mgr, 1)
    r_db, r_db2 = Client(mgr, 8, readonly=True), Client(mgr, 8, db=DB2, shm=(1, 201))
    n_db, n_db2 = Client(mgr, 9, readonly=True), Client(mgr, 9, db=DB2, shm=(1, 201))
    assert n_db2.begin() == 0
    n_db2.write_and_commit()  # process 9 commits on DB2 ...
    assert a.begin() == 0
    assert r_db.begin() == 0
    exclusive = Bg(lambda: a.dbf(W, SHARED))  # a waits for process 8's SHARED on DB
    assert exclusive.blocked()
    newcomer = Bg(n_db.begin)  # ... while another of its threads opens DB: behind a
    assert newcomer.blocked()
    on_db2 = Bg(r_db2.begin)  # process 8 waits for 9's commit on DB2: 8 -> 9 -> a -> 8?
    assert on_db2.blocked(0.2)
    n_db2.end()
    assert on_db2.get() == 0
    r_db2.end()
    r_db.end()
    assert exclusive.get() == 0
    a.end()
    assert newcomer.get() == 0
    n_db.end()
    assert db_snapshot(mgr, "db2")["counters"]["victims"] == 0
    mgr.shutdown()


def test_a_newcomer_is_never_refused_for_want_of_room_to_wait_behind_an_exclusive() -> None:
    mgr = make_manager(lock_timeout=5.0, max_waiters=2)
    a, w = Client(mgr, 1), Client(mgr, 2)
    r1, r2 = Client(mgr, 8, readonly=True), Client(mgr, 9, readonly=True)
    assert a.begin() == 0
    assert r1.begin() == 0
    exclusive = Bg(lambda: a.dbf(W, SHARED))
    assert exclusive.blocked()
    queued = Bg(w.begin)  # the parked-request bound is now full
    assert queued.blocked()
    assert r2.begin() == 0  # conflicts with nobody: granted, not refused
    for r in (r1, r2):
        r.end()
    assert exclusive.get() == 0
    a.end()
    assert queued.get() == 0
    w.end()
    mgr.shutdown()


def test_the_priority_ends_with_its_owners_turn() -> None:
    """If the waiting owner loses its turn (its locks dropped by a close of another descriptor),
    the next owner's transaction start must not wait behind it."""
    mgr = make_manager(lock_timeout=5.0, exclusive_priority=3.0)
    a, w = Client(mgr, 1), Client(mgr, 2)
    r = Client(mgr, 8, readonly=True)
    assert a.begin() == 0
    assert r.begin() == 0
    exclusive = Bg(lambda: a.dbf(W, SHARED))
    assert exclusive.blocked()
    assert a.dbf(U, WHOLE) == 0  # a FLUSH from another descriptor of a's process
    t0 = time.monotonic()
    assert w.begin() == 0
    assert time.monotonic() - t0 < 1.0
    w.end()
    r.end()
    exclusive.get(timeout=6)
    a.dbf(U, WHOLE)
    mgr.shutdown()


def test_turn_seconds_move_while_a_turn_lasts_and_keep_every_ended_turn() -> None:
    """`hoodydb locks` shows how long the turn has been held: a transaction held open counts
    while it lasts (a console polling it sees the turn busy now, not when it ends), time when
    nobody holds the turn does not count, and every ended turn stays counted."""
    now = [100.0]
    mgr = make_manager(clock=lambda: now[0])
    mgr.name_database(DB, "db")
    a, b = clients(mgr, 2)

    def held() -> float:
        return float(db_snapshot(mgr, "db")["counters"]["turn_seconds"])

    assert a.begin() == 0
    now[0] += 2.0
    assert held() == 2.0  # still running
    a.write_and_commit()
    a.end()
    now[0] += 5.0  # nobody holds it
    assert held() == 2.0
    assert b.begin() == 0
    now[0] += 0.5
    b.write_and_commit()
    b.end()
    assert held() == 2.5
    mgr.shutdown()
