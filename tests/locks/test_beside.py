"""Policy `beside` (the default) driven from real threads, without FUSE: writers take turns at their
snapshot, readers run beside them, and an owner not yet known to write gets a window.

Clients come from the harness (harness.py); each has a handle (its connection's open file), since
what an owner has shown it does is kept per handle.
"""

from __future__ import annotations

import errno
import itertools
import time
from collections.abc import Iterator
from typing import Any

import pytest

from hoodydb.locks.manager import LockManager
from hoodydb.locks.types import FileRole, Policy
from tests.locks.harness import (
    DB,
    DMS,
    PENDING,
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
    db_snapshot,
    make_manager,
    wait_until,
    waiting,
)

pytestmark = pytest.mark.timeout(60)

WINDOW = 0.05
OTHER_SLOT = (SLOT[0] + 1, SLOT[1] + 1)
_handles = itertools.count(500)


def make(**kw: Any) -> LockManager:
    return make_manager(**{"policy": Policy.BESIDE, "window": WINDOW, "schema_grace": 0.0, **kw})


@pytest.fixture
def mgr() -> Iterator[LockManager]:
    m = make()
    m.name_database(DB, "db")
    yield m
    m.shutdown()


def client(mgr: LockManager, owner: int, **kw: Any) -> Client:
    return Client(mgr, owner, handle=next(_handles), **kw)


def reader(mgr: LockManager, owner: int, wal: bool) -> Client:
    """A client that has shown it reads: its connection's first transaction (the schema read),
    then a read transaction that outlasted its window, so that the turn passed on."""
    c = client(mgr, owner)
    poke = client(mgr, owner + 1000)
    if wal:
        c.wal_open()  # (its first transaction)
        poke.wal_open()
        assert c.wal_begin() == (0, 0)
    else:
        assert c.begin() == 0
        c.end()
        assert c.begin() == 0
    time.sleep(WINDOW * 1.5)
    assert (poke.wal_begin() if wal else (poke.begin(), 0)) == (0, 0)  # the window passes on
    if wal:
        assert poke.shmf(U, SLOT) == 0
        assert c.shmf(U, SLOT) == 0
        assert poke.shmf(U, WHOLE) == 0  # closed (without the checkpoint attempt)
        assert poke.dbf(U, WHOLE) == 0
    else:
        poke.end()
        c.end()
    return c


def writer(mgr: LockManager, owner: int, wal: bool) -> Client:
    """A client that has written once."""
    c = client(mgr, owner)
    if wal:
        c.wal_open()
        assert c.wal_begin() == (0, 0)
        c.wal_write()
        assert c.shmf(U, SLOT) == 0
    else:
        assert c.begin() == 0
        c.write_and_commit()
        c.end()
    return c


def beside(mgr: LockManager) -> list[int]:
    return list(db_snapshot(mgr, "db")["readers"])


# -- WAL: readers never wait for writers, and never hold one up -------------------------------------


def test_wal_reader_keeps_its_snapshot_while_writers_take_turns(mgr: LockManager) -> None:
    r = reader(mgr, 1, wal=True)
    w1, w2 = writer(mgr, 2, wal=True), writer(mgr, 3, wal=True)
    assert r.wal_begin() == (0, 0)  # a read transaction left open (a half-read cursor)
    assert beside(mgr) == [r.pid]
    for w in (w1, w2, w1):
        assert w.wal_begin() == (0, 0)  # no wait: the turn is free
        assert admitted_pid(mgr) == w.pid
        w.wal_write()
        assert w.shmf(U, SLOT) == 0
        assert admitted_pid(mgr) is None
    assert r.shmf(U, SLOT) == 0
    assert beside(mgr) == []
    counters = db_snapshot(mgr, "db")["counters"]
    assert counters["beside"] == 1 and counters["waits"] == 0


def test_wal_reader_starts_beside_a_writer_that_holds_the_turn(mgr: LockManager) -> None:
    r = reader(mgr, 1, wal=True)
    w = writer(mgr, 2, wal=True)
    assert w.wal_begin() == (0, 0)
    w.wal_write()  # (WRITE taken and let go: a commit)
    t0 = time.monotonic()
    assert r.wal_begin() == (0, 0)
    assert time.monotonic() - t0 < 0.5
    assert admitted_pid(mgr) == w.pid and beside(mgr) == [r.pid]
    assert r.shmf(U, SLOT) == 0
    assert w.shmf(U, SLOT) == 0


def test_writers_still_queue_fifo_at_their_snapshot(mgr: LockManager) -> None:
    a, b = writer(mgr, 1, wal=True), writer(mgr, 2, wal=True)
    assert a.wal_begin() == (0, 0)
    queued = Bg(b.wal_begin)
    wait_until(lambda: waiting(mgr) == 1)
    a.wal_write()
    assert a.shmf(U, SLOT) == 0
    assert queued.get() == (0, 1)  # admitted, answered EAGAIN once to re-read the header
    assert admitted_pid(mgr) == b.pid
    b.wal_write()
    assert b.shmf(U, SLOT) == 0


def test_a_reader_turned_writer_waits_for_the_turn_in_wal_mode(mgr: LockManager) -> None:
    """Its snapshot was taken beside: it waits for the turn, ahead of the writers in line, and
    SQLite checks the snapshot once the WRITE lock is granted (SQLITE_BUSY_SNAPSHOT if stale)."""
    r = reader(mgr, 1, wal=True)
    w, w2 = writer(mgr, 2, wal=True), writer(mgr, 3, wal=True)
    assert r.wal_begin() == (0, 0)
    assert w.wal_begin() == (0, 0)
    assert w.shmf(W, WRITE_LOCK) == 0  # writing: its turn has no window any more
    asked = Bg(lambda: r.shmf(W, WRITE_LOCK))
    assert asked.blocked()
    queued = Bg(w2.wal_begin)
    wait_until(lambda: waiting(mgr) == 2)
    assert [x["why"] for x in db_snapshot(mgr, "db")["waiting"]] == ["write from beside", "writer"]
    assert w.shmf(U, WRITE_LOCK) == 0
    assert w.shmf(U, SLOT) == 0
    assert asked.get() == 0  # ahead of w2
    snap = db_snapshot(mgr, "db")
    assert snap["admitted"]["pid"] == r.pid and snap["admitted"]["why"] == "writing"
    assert snap["counters"]["writes_from_beside"] == 1 and snap["counters"]["refused_writes"] == 0
    assert r.shmf(U, WRITE_LOCK) == 0  # its turn ends with its write
    assert queued.get() == (0, 1)
    assert admitted_pid(mgr) == w2.pid
    assert r.shmf(U, SLOT) == 0
    w2.wal_write()
    assert w2.shmf(U, SLOT) == 0
    # Now known as a writer: its next transaction takes a turn.
    assert r.wal_begin() == (0, 0)
    assert admitted_pid(mgr) == r.pid
    r.wal_write()
    assert r.shmf(U, SLOT) == 0


def test_a_reader_turned_writer_is_refused_at_once_with_a_rollback_journal(mgr: LockManager) -> None:
    """The writer holding the turn waits for the reader's SHARED to commit: the reader's RESERVED
    may not wait for it. "database is locked", as natively."""
    r = reader(mgr, 1, wal=False)
    w = writer(mgr, 2, wal=False)
    assert r.begin() == 0
    assert w.begin() == 0
    assert w.dbf(W, RESERVED) == 0
    t0 = time.monotonic()
    assert r.dbf(W, RESERVED) == errno.EAGAIN
    assert time.monotonic() - t0 < 0.5
    assert db_snapshot(mgr, "db")["counters"]["refused_writes"] == 1
    r.end()
    assert w.dbf(W, PENDING) == 0
    assert w.dbf(W, SHARED) == 0
    w.end()


def test_a_reader_turned_writer_takes_the_turn_when_nobody_has_it(mgr: LockManager) -> None:
    r = reader(mgr, 1, wal=True)
    w = writer(mgr, 2, wal=True)
    assert r.wal_begin() == (0, 0)
    assert r.shmf(W, WRITE_LOCK) == 0
    assert admitted_pid(mgr) == r.pid and beside(mgr) == []
    queued = Bg(w.wal_begin)
    wait_until(lambda: waiting(mgr) == 1)  # the other writer waits for its commit
    assert r.shmf(U, WRITE_LOCK) == 0
    assert r.shmf(U, SLOT) == 0
    assert queued.get() == (0, 1)
    w.wal_write()
    assert w.shmf(U, SLOT) == 0
    assert db_snapshot(mgr, "db")["writers"] == sorted([r.pid, w.pid])


# -- the window of every turn ----------------------------------------------------


@pytest.mark.parametrize("wal", [False, True], ids=["rollback", "wal"])
def test_a_new_owner_that_only_reads_passes_the_turn_on_after_its_window(mgr: LockManager, wal: bool) -> None:
    w = writer(mgr, 2, wal=wal)
    n = client(mgr, 1)
    if wal:
        n.wal_open()
    assert (n.wal_begin() if wal else (n.begin(), 0)) == (0, 0)
    assert admitted_pid(mgr) == n.pid
    snap = db_snapshot(mgr, "db")
    assert snap["admitted"]["window"] is True and snap["admitted"]["why"] == "new"
    t0 = time.monotonic()
    turn = Bg(w.wal_begin if wal else w.begin)
    result = turn.get(timeout=SOON)
    assert time.monotonic() - t0 >= WINDOW * 0.8
    assert result == ((0, 1) if wal else 0)
    assert admitted_pid(mgr) == w.pid and beside(mgr) == [n.pid]
    assert db_snapshot(mgr, "db")["counters"]["passed_on"] == 1
    if wal:
        w.wal_write()
        assert w.shmf(U, SLOT) == 0
        assert n.shmf(U, SLOT) == 0
    else:
        n.end()  # (a reader beside lets go; the writer can commit)
        w.write_and_commit()
        w.end()
    assert beside(mgr) == []


def test_a_new_owner_that_writes_in_its_window_keeps_the_turn(mgr: LockManager) -> None:
    n, other = client(mgr, 1), writer(mgr, 2, wal=False)
    assert n.begin() == 0
    assert n.dbf(W, RESERVED) == 0
    queued = Bg(other.begin)
    assert queued.blocked(settle=WINDOW * 3)  # no window once it writes
    n.write_and_commit()
    n.end()
    assert queued.get() == 0
    other.end()


def test_no_window_opens_while_a_writer_waits(mgr: LockManager) -> None:
    """A stream of newcomers cannot starve a queued writer: each one queues behind it."""
    holder, w = writer(mgr, 1, wal=False), writer(mgr, 2, wal=False)
    assert holder.begin() == 0
    queued_writer = Bg(w.begin)
    wait_until(lambda: waiting(mgr) == 1)
    n = client(mgr, 3)
    queued_new = Bg(n.begin)
    wait_until(lambda: waiting(mgr) == 2)
    holder.end()
    assert queued_writer.get() == 0
    assert admitted_pid(mgr) == w.pid
    assert w.dbf(W, RESERVED) == 0  # (writing: no window to pass it on)
    assert queued_new.blocked()
    w.write_and_commit()
    w.end()
    assert queued_new.get() == 0
    n.end()


def test_the_window_never_passes_while_the_owner_rebuilds_the_index(mgr: LockManager) -> None:
    first, w = client(mgr, 1), writer(mgr, 2, wal=False)
    assert first.begin() == 0
    assert first.shmf(W, DMS) == 0  # DMS, exclusively: resetting the -shm
    queued = Bg(w.begin)
    assert queued.blocked(settle=WINDOW * 3)
    assert first.shmf(R, DMS) == 0  # downgraded: the index is built
    assert queued.get() == 0  # now the window may pass
    assert beside(mgr) == [first.pid]
    first.end()
    w.end()


# -- a crowd: newcomers wait before they map the -shm -----------------------------------------------


def crowd_behind_a_writer(mgr: LockManager) -> tuple[Client, list[tuple[Client, Bg]]]:
    """A writer holding the turn with its WRITE lock, and two writers queued at their read slots."""
    holder = writer(mgr, 1, wal=True)
    queued = [writer(mgr, owner, wal=True) for owner in (2, 3)]
    assert holder.wal_begin() == (0, 0)
    assert holder.shmf(W, WRITE_LOCK) == 0
    waits = [(q, Bg(q.wal_begin)) for q in queued]
    wait_until(lambda: waiting(mgr) == 2)
    return holder, waits


def commit(c: Client) -> None:
    assert c.shmf(U, WRITE_LOCK) == 0
    assert c.shmf(U, SLOT) == 0


def test_in_a_crowd_a_new_connection_waits_in_line_before_it_maps_the_shm() -> None:
    """4,000 one-shot WAL clients: each waiting one had mapped the -shm, and every exit's
    writeback walked every mapping. In a crowd the DMS probe waits for a turn, and the
    connection's first transaction runs in that turn: its read slot is granted at once."""
    mgr = make(crowd=2)
    mgr.name_database(DB, "db")
    holder, waits = crowd_behind_a_writer(mgr)
    new = client(mgr, 9)
    assert new.begin() == 0  # SHARED on the database, kept in WAL mode
    probe = Bg(lambda: new.getlk(SHM, FileRole.SHM, W, DMS))
    assert probe.blocked()
    assert waiting(mgr) == 3
    commit(holder)
    for q, wait in waits:
        assert wait.get() == (0, 1)  # in arrival order, ahead of the newcomer
        q.wal_write()
        assert probe.blocked(settle=0.01)
        assert q.shmf(U, SLOT) == 0
    conflict = probe.get()
    assert conflict is not None and conflict.kind is R  # the others' DMS: it joins them
    assert admitted_pid(mgr) == new.pid  # the turn is kept for its first transaction
    assert new.shmf(R, DMS) == 0
    assert new.wal_begin() == (0, 0)  # no second wait, no EAGAIN
    new.wal_write()
    assert new.shmf(U, SLOT) == 0
    counters = db_snapshot(mgr, "db")["counters"]
    assert (counters["waits"], counters["timeouts"]) == (3, 0)
    mgr.shutdown()


def test_below_the_crowd_and_for_read_only_opens_the_probe_is_answered_at_once() -> None:
    mgr = make(crowd=3)
    mgr.name_database(DB, "db")
    holder, waits = crowd_behind_a_writer(mgr)
    early = client(mgr, 9)
    assert early.begin() == 0
    assert Bg(lambda: early.getlk(SHM, FileRole.SHM, W, DMS)).get().kind is R  # 2 waiting: no crowd
    assert early.shmf(R, DMS) == 0
    waits.append((early, Bg(early.wal_begin)))
    wait_until(lambda: waiting(mgr) == 3)
    reader = client(mgr, 10, readonly=True)
    Bg(reader.wal_open).get()  # a read-only open never takes a turn, so it never waits for one
    late = client(mgr, 11)
    assert late.begin() == 0
    probe = Bg(lambda: late.getlk(SHM, FileRole.SHM, W, DMS))
    assert probe.blocked()  # (the crowd is there)
    commit(holder)
    for q, wait in waits:
        assert wait.get() == (0, 1)
        q.wal_write()
        assert q.shmf(U, SLOT) == 0
    assert probe.get() is not None
    assert late.shmf(R, DMS) == 0
    assert late.wal_begin() == (0, 0)
    assert late.shmf(U, SLOT) == 0
    mgr.shutdown()


# -- rollback journal: readers beside, a commit waits for them ----------------------------------------


def test_rollback_commit_waits_for_a_reader_beside_then_goes_through(mgr: LockManager) -> None:
    r, w = reader(mgr, 1, wal=False), writer(mgr, 2, wal=False)
    assert r.begin() == 0  # beside: holds SHARED
    assert w.begin() == 0
    assert w.dbf(W, RESERVED) == 0
    assert w.dbf(W, PENDING) == 0
    commit = Bg(lambda: w.dbf(W, SHARED))
    assert commit.blocked()
    newcomer = Bg(lambda: client(mgr, 3).begin())  # new readers wait behind PENDING
    assert newcomer.blocked()
    r.end()
    assert commit.get() == 0
    w.end()
    assert newcomer.get() == 0


# -- read marks ----------------------------------------------------------------------------------------


def test_moving_read_marks_never_waits_even_in_the_turn(mgr: LockManager) -> None:
    """walRestartLog and checkpointers treat a refused mark as "later": waiting for a reader
    beside would hold the writer (and the turn) for as long as that reader reads."""
    r, w = reader(mgr, 1, wal=True), writer(mgr, 2, wal=True)
    assert r.wal_begin() == (0, 0)
    assert w.wal_begin() == (0, 0)
    t0 = time.monotonic()
    assert w.shmf(W, SLOT) == errno.EAGAIN
    assert time.monotonic() - t0 < 0.5
    assert r.shmf(U, SLOT) == 0
    assert w.shmf(U, SLOT) == 0


def test_a_read_slot_waits_out_a_moving_mark(mgr: LockManager) -> None:
    r, m = reader(mgr, 1, wal=True), reader(mgr, 2, wal=True)
    assert m.shmf(W, OTHER_SLOT) == 0  # moving the mark of that slot
    asked = Bg(lambda: r.shmf(R, OTHER_SLOT))
    assert asked.blocked()
    assert m.shmf(U, OTHER_SLOT) == 0
    assert asked.get() == 0
    assert r.shmf(U, OTHER_SLOT) == 0


def test_a_read_slot_held_by_a_checkpoint_is_refused_after_a_while() -> None:
    """A checkpoint truncating the WAL holds READ0 exclusively while it works (and SQLite's own
    tests make it wait for the reader, through the test's pipes): the reader is refused after
    `reader_patience`, and SQLite reads another way, as natively."""
    mgr = make(reader_patience=0.2)
    mgr.name_database(DB, "db")
    r, checkpointer = reader(mgr, 1, wal=True), reader(mgr, 2, wal=True)
    assert checkpointer.shmf(W, READ0_SLOT) == 0
    t0 = time.monotonic()
    assert r.shmf(R, READ0_SLOT) == errno.EAGAIN
    assert 0.15 < time.monotonic() - t0 < SOON
    assert checkpointer.shmf(U, READ0_SLOT) == 0
    mgr.shutdown()


# -- what is learned, and forgotten -------------------------------------------------------------------


def test_what_an_owner_did_is_forgotten_with_its_last_handle(mgr: LockManager) -> None:
    r = reader(mgr, 1, wal=False)
    w = writer(mgr, 2, wal=False)
    assert w.begin() == 0
    assert r.begin() == 0  # beside the writer
    r.end()
    w.end()
    mgr.forget_handle(r.handle)
    fresh = Client(mgr, r.owner, handle=next(_handles))  # a new process got the same owner id
    assert w.begin() == 0
    assert w.dbf(W, RESERVED) == 0
    started = Bg(fresh.begin)
    assert started.blocked()  # NEW again: it queues for a turn
    w.write_and_commit()
    w.end()
    assert started.get() == 0
    fresh.end()


def test_state_stays_bounded_by_what_is_open() -> None:
    """Every file opened gets a name; every database that locked gets a state. After the last
    close of each, nothing is left but a bounded history of counters."""
    mgr = make()
    for i in range(3000):
        mgr.name_database((2, i), f"file-{i}")  # plain files, opened and closed
        mgr.release_file((2, i))
    for i in range(500):
        key = (3, i)
        c = Client(mgr, 7, db=key, handle=10_000 + i)
        mgr.name_database(key, f"db-{i}")
        assert c.lock(key, FileRole.DATABASE, R, PENDING) == 0
        assert c.lock(key, FileRole.DATABASE, R, SHARED) == 0
        assert c.lock(key, FileRole.DATABASE, U, WHOLE) == 0
        mgr.forget_handle(c.handle)
        mgr.release_file(key)
    sizes = mgr.table_sizes()
    assert sizes == {"files": 0, "databases": 0, "names": 0, "intents": 0, "handles": 0, "retired": 500}
    mgr.shutdown()


def test_the_report_names_readers_beside_and_writers(mgr: LockManager) -> None:
    r1, r2 = reader(mgr, 1, wal=True), reader(mgr, 2, wal=True)
    w = writer(mgr, 3, wal=True)
    assert r1.wal_begin() == (0, 0)
    time.sleep(0.02)
    assert r2.wal_begin() == (0, 0)
    snap = db_snapshot(mgr, "db")
    assert snap["beside"]["count"] == 2
    assert snap["beside"]["oldest_pid"] == r1.pid
    assert snap["beside"]["oldest_seconds"] >= 0.02
    assert snap["writers"] == [w.pid]
    assert r1.shmf(U, SLOT) == 0 and r2.shmf(U, SLOT) == 0
    assert db_snapshot(mgr, "db")["beside"] is None


def test_read_only_opens_run_beside_and_are_reported(mgr: LockManager) -> None:
    w = writer(mgr, 2, wal=False)
    ro = Client(mgr, 1, readonly=True, handle=next(_handles))
    assert w.begin() == 0
    assert ro.begin() == 0
    assert beside(mgr) == [ro.pid]
    ro.end()
    w.end()


def test_the_window_waits_while_the_client_thread_is_still_at_work() -> None:
    """On a loaded machine a new writer may wait for a CPU longer than its window: its turn must
    not pass on then, or its write would be refused."""
    busy = {"now": True}
    mgr = make(working=lambda pid: busy["now"])
    mgr.name_database(DB, "db")
    n, w = client(mgr, 1), writer(mgr, 2, wal=False)
    assert n.begin() == 0
    queued = Bg(w.begin)
    assert queued.blocked(settle=WINDOW * 4)
    busy["now"] = False  # asleep elsewhere: a reader taking its time
    assert queued.get() == 0
    assert beside(mgr) == [n.pid]
    n.end()
    w.end()
    mgr.shutdown()


def test_on_a_busy_host_a_sleeping_holder_keeps_its_turn_up_to_the_busy_window() -> None:
    """A read-then-write transaction whose next statement is late because the program feeding it
    waits for a CPU (its thread sleeps, reading its input): on a busy host its turn stays with it,
    so its write needs no second snapshot; for `busy_window` at most, then it passes on."""
    busy = {"now": True}
    mgr = make(working=lambda pid: False, host_busy=lambda: busy["now"], busy_window=WINDOW * 8)
    mgr.name_database(DB, "db")
    w, other = writer(mgr, 1, wal=True), writer(mgr, 2, wal=True)
    assert w.wal_begin() == (0, 0)  # BEGIN; SELECT ...
    queued = Bg(other.wal_begin)
    assert queued.blocked(settle=WINDOW * 4)  # well past its window
    w.wal_write()  # ... UPDATE ...; COMMIT: on the snapshot it read
    assert w.shmf(U, SLOT) == 0
    assert queued.get() == (0, 1)
    assert other.shmf(U, SLOT) == 0
    # A long read on a busy host: beside once the busy window is over.
    assert w.wal_begin() == (0, 0)
    t0 = time.monotonic()
    assert other.wal_begin() == (0, 1)
    assert WINDOW * 7 < time.monotonic() - t0 < SOON
    owners = {o["pid"]: o for o in db_snapshot(mgr, "db")["owners"]}
    assert (owners[w.pid]["state"], owners[w.pid]["why"]) == ("beside", "window passed")
    assert other.shmf(U, SLOT) == 0
    assert w.shmf(U, SLOT) == 0
    # On a quiet host the window is the window.
    busy["now"] = False
    assert w.wal_begin() == (0, 0)
    t0 = time.monotonic()
    assert other.wal_begin() == (0, 0)  # (no commit since it asked: granted as it asked)
    assert time.monotonic() - t0 < WINDOW * 4
    assert other.shmf(U, SLOT) == 0
    assert w.shmf(U, SLOT) == 0
    mgr.shutdown()


def test_on_a_busy_host_a_writer_counts_as_asleep_only_after_the_busy_patience() -> None:
    """A writer between two statements of its transaction, its program starved of CPU: readers
    wait for its commit (`busy_patience`) rather than read beside it after `reader_patience`."""
    busy = {"now": True}
    mgr = make(
        working=lambda pid: False, host_busy=lambda: busy["now"], reader_patience=0.1, busy_patience=0.6
    )
    mgr.name_database(DB, "db")
    holder, new = writer(mgr, 1, wal=True), client(mgr, 2)
    new.wal_open()
    assert holder.wal_begin() == (0, 0)
    assert holder.shmf(W, WRITE_LOCK) == 0  # its UPDATE; COMMIT comes late
    t0 = time.monotonic()
    read = Bg(new.wal_begin)
    assert read.blocked(settle=0.3)  # past reader_patience
    assert read.get() == (0, 0)  # beside it after busy_patience
    assert 0.5 < time.monotonic() - t0 < SOON
    assert new.shmf(U, SLOT) == 0
    assert holder.shmf(U, WRITE_LOCK) == 0
    assert holder.shmf(U, SLOT) == 0
    mgr.shutdown()


def test_a_recover_probe_waits_for_the_index_rebuild(mgr: LockManager) -> None:
    """A reader that finds the WAL index being rebuilt probes RECOVER; refused, SQLite answers
    SQLITE_BUSY_RECOVERY at once ("database is locked", even for -readonly)."""
    rebuilder = client(mgr, 1)
    ro = Client(mgr, 2, readonly=True, handle=next(_handles))
    assert rebuilder.begin() == 0
    assert rebuilder.shmf(R, DMS) == 0
    assert rebuilder.shmf(W, WRITE_LOCK) == 0
    recovering = (WRITE_LOCK[0] + 1, WRITE_LOCK[0] + 3)  # CKPT and RECOVER
    assert rebuilder.shmf(W, recovering) == 0
    assert ro.begin() == 0
    assert ro.shmf(R, DMS) == 0
    assert ro.shmf(W, WRITE_LOCK) == errno.EAGAIN  # (SQLite then probes RECOVER)
    probe = Bg(lambda: ro.shmf(R, (WRITE_LOCK[0] + 2, WRITE_LOCK[0] + 3)))
    assert probe.blocked()
    assert rebuilder.shmf(U, recovering) == 0
    assert probe.get() == 0
    assert ro.shmf(U, (WRITE_LOCK[0] + 2, WRITE_LOCK[0] + 3)) == 0
    assert rebuilder.shmf(U, WRITE_LOCK) == 0


# -- every turn has a window, and readers lead ----------------------------------------------------


def short_reader(mgr: LockManager, owner: int) -> Client:
    """A WAL client whose last transaction was a short read (after its connection's first)."""
    c = client(mgr, owner)
    c.wal_open()
    assert c.wal_begin() == (0, 0)
    assert c.shmf(U, SLOT) == 0
    return c


def test_a_known_writers_long_read_passes_the_turn_on_after_its_window(mgr: LockManager) -> None:
    """A backup tool or a report in a process that also writes: its read runs beside."""
    w, other = writer(mgr, 1, wal=True), writer(mgr, 2, wal=True)
    assert w.wal_begin() == (0, 0)  # a read transaction left open
    snap = db_snapshot(mgr, "db")
    assert snap["admitted"]["why"] == "writer" and snap["admitted"]["window"] is True
    t0 = time.monotonic()
    assert other.wal_begin() == (0, 1)  # queued until the window ran out
    assert time.monotonic() - t0 >= WINDOW * 0.8
    owners = {o["pid"]: o for o in db_snapshot(mgr, "db")["owners"]}
    assert owners[other.pid]["state"] == "turn"
    assert (owners[w.pid]["state"], owners[w.pid]["why"]) == ("beside", "window passed")
    other.wal_write()
    assert other.shmf(U, SLOT) == 0
    assert w.shmf(U, SLOT) == 0


def led_reader(mgr: LockManager) -> tuple[Client, Client, Bg]:
    """A predicted reader admitted ahead of a writer that waited with it: (reader, writer, the
    writer's queued start)."""
    holder, queued_writer = writer(mgr, 1, wal=True), writer(mgr, 2, wal=True)
    r = short_reader(mgr, 3)
    assert holder.wal_begin() == (0, 0)
    assert holder.shmf(W, WRITE_LOCK) == 0
    w2 = Bg(queued_writer.wal_begin)
    wait_until(lambda: waiting(mgr) == 1)
    read = Bg(r.wal_begin)
    wait_until(lambda: waiting(mgr) == 2)
    assert [x["why"] for x in db_snapshot(mgr, "db")["waiting"]] == ["predicted reader", "writer"]
    assert holder.shmf(U, WRITE_LOCK) == 0
    assert holder.shmf(U, SLOT) == 0
    assert read.get() == (0, 1)  # first: right behind the holder
    assert admitted_pid(mgr) == r.pid
    assert w2.blocked(settle=WINDOW / 3)
    return r, queued_writer, w2


def test_a_predicted_reader_waits_for_the_holder_not_for_the_writers_in_line(mgr: LockManager) -> None:
    r, queued_writer, w2 = led_reader(mgr)
    assert r.shmf(U, SLOT) == 0
    assert w2.get() == (0, 1)
    assert db_snapshot(mgr, "db")["counters"]["led"] == 1
    queued_writer.wal_write()
    assert queued_writer.shmf(U, SLOT) == 0


def test_a_wrong_guess_costs_fairness_not_an_error(mgr: LockManager) -> None:
    """A predicted reader holds a proper turn at a fresh snapshot: its write goes through."""
    r, queued_writer, w2 = led_reader(mgr)
    assert r.shmf(W, WRITE_LOCK) == 0  # it writes after all: granted, it holds the turn
    assert w2.blocked()
    assert r.shmf(U, WRITE_LOCK) == 0
    assert r.shmf(U, SLOT) == 0
    assert w2.get() == (0, 1)
    queued_writer.wal_write()
    assert queued_writer.shmf(U, SLOT) == 0


def test_readers_lead_only_writers_that_arrived_just_before_them() -> None:
    mgr = make(reader_lead=0.2)
    mgr.name_database(DB, "db")
    holder, queued_writer = writer(mgr, 1, wal=True), writer(mgr, 2, wal=True)
    r = short_reader(mgr, 3)
    assert holder.wal_begin() == (0, 0)
    assert holder.shmf(W, WRITE_LOCK) == 0
    w2 = Bg(queued_writer.wal_begin)
    wait_until(lambda: waiting(mgr) == 1)
    time.sleep(0.25)  # the writer in line arrived longer before the reader than readers may lead
    read = Bg(r.wal_begin)
    wait_until(lambda: waiting(mgr) == 2)
    assert holder.shmf(U, WRITE_LOCK) == 0
    assert holder.shmf(U, SLOT) == 0
    assert w2.get() == (0, 1)
    assert read.blocked(settle=WINDOW / 3)
    queued_writer.wal_write()
    assert queued_writer.shmf(U, SLOT) == 0
    assert read.get() == (0, 1)
    assert r.shmf(U, SLOT) == 0
    mgr.shutdown()


def test_a_process_reading_beside_writes_from_another_connection() -> None:
    """Litestream's shape: one connection holds a read transaction for ever (beside, once its
    window passed), another connection of the same process writes now and then. Its read slot
    is the owner's already, so the write has no visible start: the WRITE lock waits for the
    turn, the turn ends with the write, and is held a moment for a busy handler's retry."""
    mgr = make(write_retry_grace=0.3)
    mgr.name_database(DB, "db")
    lit, w = writer(mgr, 1, wal=True), writer(mgr, 2, wal=True)
    assert lit.wal_begin() == (0, 0)  # its long read
    assert w.wal_begin() == (0, 1)  # after lit's window
    assert w.shmf(W, WRITE_LOCK) == 0
    asked = Bg(lambda: lit.shmf(W, WRITE_LOCK))  # its other connection, on the same slot
    assert asked.blocked()
    assert w.shmf(U, WRITE_LOCK) == 0
    assert w.shmf(U, SLOT) == 0
    assert asked.get() == 0
    assert lit.shmf(U, WRITE_LOCK) == 0  # committed, or refused by SQLite: a stale snapshot
    snap = db_snapshot(mgr, "db")
    assert snap["admitted"]["pid"] == lit.pid and snap["admitted"]["reserved"] is True
    queued = Bg(w.wal_begin)
    wait_until(lambda: waiting(mgr) == 1)
    t0 = time.monotonic()
    assert lit.shmf(W, WRITE_LOCK) == 0  # the busy handler's retry: straight in
    assert time.monotonic() - t0 < 0.1
    assert lit.shmf(U, WRITE_LOCK) == 0
    assert queued.get(timeout=SOON) == (0, 1)  # once the grace ran out
    owners = {o["pid"]: o for o in db_snapshot(mgr, "db")["owners"]}
    assert (owners[lit.pid]["state"], owners[lit.pid]["why"]) == ("beside", "read after its write")
    w.wal_write()
    assert w.shmf(U, SLOT) == 0
    assert lit.shmf(U, SLOT) == 0
    assert db_snapshot(mgr, "db")["owners"] == [
        {"pid": lit.pid, "state": "idle", "why": "", "seconds": 0.0},
        {"pid": w.pid, "state": "idle", "why": "", "seconds": 0.0},
    ]
    mgr.shutdown()


def test_speculative_reads_run_beside_and_a_write_after_one_takes_a_turn() -> None:
    """`speculative_reads`: a predicted reader reads beside the writer holding the turn, as
    natively. If it writes after all, it waits for the turn (SQLite then checks its snapshot),
    and its next transaction takes a proper turn."""
    mgr = make(speculative_reads=True)
    mgr.name_database(DB, "db")
    holder, r = writer(mgr, 1, wal=True), short_reader(mgr, 2)
    assert holder.wal_begin() == (0, 0)
    assert holder.shmf(W, WRITE_LOCK) == 0
    t0 = time.monotonic()
    assert r.wal_begin() == (0, 0)  # beside the writer, at once
    assert time.monotonic() - t0 < WINDOW / 2
    owners = {o["pid"]: o for o in db_snapshot(mgr, "db")["owners"]}
    assert (owners[r.pid]["state"], owners[r.pid]["why"]) == ("beside", "predicted reader")
    asked = Bg(lambda: r.shmf(W, WRITE_LOCK))  # a wrong guess
    assert asked.blocked(settle=WINDOW / 3)
    assert holder.shmf(U, WRITE_LOCK) == 0
    assert holder.shmf(U, SLOT) == 0
    assert asked.get() == 0  # (SQLite finds its snapshot stale and lets go: SQLITE_BUSY_SNAPSHOT)
    assert r.shmf(U, WRITE_LOCK) == 0
    assert r.shmf(U, SLOT) == 0
    assert holder.wal_begin() == (0, 0)
    retried = Bg(r.wal_begin)  # its busy handler starts over: now in line, as a writer
    wait_until(lambda: waiting(mgr) == 1)
    assert [x["why"] for x in db_snapshot(mgr, "db")["waiting"]] == ["writer"]
    holder.wal_write()
    assert holder.shmf(U, SLOT) == 0
    assert retried.get() == (0, 1)
    r.wal_write()
    assert r.shmf(U, SLOT) == 0
    mgr.shutdown()


def test_readers_read_beside_a_writer_asleep_in_its_open_transaction() -> None:
    """A shell left at `BEGIN; INSERT ...`: natively WAL readers go on reading. A WAL transaction
    start waits `reader_patience` for that writer, then reads beside; a write (from beside, or a
    WRITE-lock start) is refused after as long. A writer at work is waited for."""
    asleep = {"now": False}
    mgr = make(working=lambda pid: not asleep["now"], reader_patience=0.2)
    mgr.name_database(DB, "db")
    holder, other_writer = writer(mgr, 1, wal=True), writer(mgr, 2, wal=True)
    new, checkpointer = client(mgr, 3), writer(mgr, 4, wal=True)
    new.wal_open()
    assert holder.wal_begin() == (0, 0)
    assert holder.shmf(W, WRITE_LOCK) == 0  # writing, then its client sits at a prompt
    read = Bg(new.wal_begin)
    write = Bg(other_writer.wal_begin)
    checkpoint = Bg(lambda: checkpointer.shmf(W, WRITE_LOCK))  # a FULL checkpoint's WRITE lock
    wait_until(lambda: waiting(mgr) == 3)
    assert read.blocked(settle=0.4)  # the writer is at work (runnable, or in a FUSE request)
    asleep["now"] = True
    t0 = time.monotonic()
    assert read.get() == (0, 0)
    assert write.get() == (0, 0)
    assert checkpoint.get() == errno.EAGAIN  # refused, as natively: its busy handler runs
    assert 0.15 < time.monotonic() - t0 < SOON
    owners = {o["pid"]: o for o in db_snapshot(mgr, "db")["owners"]}
    assert (owners[new.pid]["state"], owners[new.pid]["why"]) == ("beside", "writer asleep")
    assert (owners[other_writer.pid]["state"], owners[other_writer.pid]["why"]) == ("beside", "writer asleep")
    # It writes after all: refused, as natively (at once: the writer has slept long enough).
    assert other_writer.shmf(W, WRITE_LOCK) == errno.EAGAIN
    asleep["now"] = False
    time.sleep(WINDOW)  # (the writer's thread is looked at every half window)
    asked = Bg(lambda: other_writer.shmf(W, WRITE_LOCK))  # while the writer works, it waits
    assert asked.blocked()
    assert new.shmf(U, SLOT) == 0
    assert holder.shmf(U, WRITE_LOCK) == 0
    assert holder.shmf(U, SLOT) == 0
    assert asked.get() == 0  # (SQLite then finds its snapshot stale: SQLITE_BUSY_SNAPSHOT, as natively)
    assert other_writer.shmf(U, WRITE_LOCK) == 0
    assert other_writer.shmf(U, SLOT) == 0
    mgr.shutdown()


def test_readers_read_beside_a_checkpoint_asleep_with_the_write_lock() -> None:
    """A TRUNCATE checkpoint holds WRITE (its turn, though it holds no read slot: no window can
    pass it on) and waits for something else (in walro2.test, for the very reader, through the
    test's pipes): a read start reads beside it after `reader_patience`."""
    mgr = make(working=lambda pid: False, reader_patience=0.2)
    mgr.name_database(DB, "db")
    checkpointer, r = writer(mgr, 1, wal=True), client(mgr, 2)
    r.wal_open()
    assert checkpointer.shmf(W, WRITE_LOCK) == 0  # a start: its turn
    assert admitted_pid(mgr) == checkpointer.pid
    t0 = time.monotonic()
    assert r.wal_begin() == (0, 0)
    assert 0.15 < time.monotonic() - t0 < SOON
    assert r.shmf(U, SLOT) == 0
    assert checkpointer.shmf(U, WRITE_LOCK) == 0
    mgr.shutdown()


def test_a_wal_start_that_would_close_a_cycle_goes_on_beside(mgr: LockManager) -> None:
    """walthread.test: a connection switching the database to a rollback journal holds the turn
    and waits for EXCLUSIVE, while others still holding SHARED reopen the WAL (WRLCK DMS). A
    refused DMS is retried by SQLite until "locking protocol"; the holder waits for them anyway."""
    switcher, other = writer(mgr, 1, wal=False), client(mgr, 2)
    assert other.begin() == 0  # SHARED on the database
    assert other.dbf(U, PENDING) == 0
    assert switcher.begin() == 0
    assert switcher.dbf(W, RESERVED) == 0
    assert switcher.dbf(W, PENDING) == 0
    exclusive = Bg(lambda: switcher.dbf(W, SHARED))  # waits for other's SHARED
    assert exclusive.blocked()
    assert other.shmf(W, DMS) == 0  # would wait for the switcher, which waits for it: beside
    assert db_snapshot(mgr, "db")["counters"]["victims"] == 1  # (a cycle, not a refusal)
    assert other.shmf(U, DMS) == 0
    assert other.dbf(U, WHOLE) == 0
    assert exclusive.get() == 0
    switcher.end()
