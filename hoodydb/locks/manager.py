"""The lock manager: POSIX lock tables of every file plus the admission gate of every database.

This is the whole of hoodydb's concurrency logic, with no FUSE in it: the filesystem adapter turns
each lock request into a `LockRequest`, calls `setlk`/`getlk`, and maps the integer it gets back to
an errno. Everything runs under one mutex, `_mu`; waiting requests sleep on their own condition
of that mutex so that a hand-off wakes exactly one of them.

Why a request may wait at all (docs/architecture.md, "The admission gate"): SQLite never blocks on
a lock, so a request that the daemon delays is one that would otherwise have failed with "database
is locked". Delaying is safe only where it cannot close a cycle: for the owner holding the
database's admission, and for owners that hold nothing on that database yet. Everyone else is
answered EAGAIN at once.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hoodydb.locks.gate import Admission, AdmissionGate, GateCounters, Ticket
from hoodydb.locks.layout import SHARED_SIZE, SHM_DMS, SHM_READ_COUNT, SHM_READ_FIRST, SHM_WRITE, LockLayout
from hoodydb.locks.ranges import RangeTable
from hoodydb.locks.types import (
    Conflict,
    FileKey,
    FileRole,
    LockKind,
    LockRequest,
    Owner,
    Policy,
)

log = logging.getLogger(__name__)
trace = logging.getLogger(__name__ + ".trace")  # every decision, for debugging the protocol

# The longest a request waits for its turn before it is answered EAGAIN (`--lock-timeout`).
DEFAULT_LOCK_TIMEOUT_S = 30.0

CYCLE_CHECK_SECONDS = 1.0
SHM_INIT_POLL_SECONDS = 0.002
RETIRED_NAMES = 1024  # counters kept for databases that nobody has open, by path

READ_SLOTS = (SHM_READ_FIRST, SHM_READ_FIRST + SHM_READ_COUNT)
WRITE_BYTE = (SHM_WRITE, SHM_WRITE + 1)
DMS_BYTE = (SHM_DMS, SHM_DMS + 1)

AbortCheck = Callable[[], int | None]
"""Polled while a request waits: None to go on, or the errno to answer at once, as it is (the
adapter knows what the client's signals ask, and what the kernel does with each answer)."""


def _never() -> int | None:
    return None


@dataclass(eq=False)
class _FileState:
    key: FileKey
    role: FileRole
    db: FileKey | None
    table: RangeTable = field(default_factory=RangeTable)
    waiters: set[_Waiter] = field(default_factory=set)  # requests waiting for a holder here to let go


@dataclass(eq=False)
class _DatabaseState:
    key: FileKey
    gate: AdmissionGate
    name: str = ""
    shm: FileKey | None = None
    sqlite: bool = False  # has shown SQLite's lock protocol: only then may the gate park requests
    wal_ready: bool = False  # WAL mode, and a transaction has run since the -shm was last (re)built
    readers: set[Owner] = field(default_factory=set)  # db-file locks only through read-only handles
    writers: set[Owner] = field(default_factory=set)
    # The admitted owner, while it waits for EXCLUSIVE straight from SHARED (_claim_priority).
    exclusive_waiter: Owner | None = None


@dataclass(eq=False)
class _Waiter:
    owner: Owner
    cond: threading.Condition
    blockers: Callable[[], set[Owner]]
    aborted: bool = False  # the abort check ended the wait: its errno is the answer


class LockManager:
    def __init__(
        self,
        *,
        policy: Policy = Policy.SERIAL,
        layout: LockLayout | None = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        reservation_seconds: float = 2.0,
        exclusive_priority_seconds: float = 1.0,
        schema_grace: float = 0.005,
        poll_interval: float = 0.1,
        max_waiters: int = 200,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.layout = layout or LockLayout()
        self.lock_timeout = lock_timeout
        self.reservation_seconds = reservation_seconds
        self.exclusive_priority_seconds = exclusive_priority_seconds
        self.schema_grace = schema_grace
        self.poll_interval = poll_interval
        self.max_waiters = max_waiters
        self._n_waiters = 0
        self.waits = 0  # requests that have had to wait, ever: a sign of contention to watch
        self.clock = clock
        self._mu = threading.Lock()
        self._files: dict[FileKey, _FileState] = {}
        self._dbs: dict[FileKey, _DatabaseState] = {}
        self._waiting: dict[Owner, set[_Waiter]] = {}
        self._started_handles: set[int] = set()  # open files that have started a transaction
        self._retired: dict[str, tuple[str, GateCounters]] = {}  # name -> (mode, counters)
        self._closing = False

    @property
    def waiting(self) -> int:
        """Transaction starts queued for a turn now, over every database (F_SETLKW waiters on
        other files are not contention for a database)."""
        with self._mu:
            return sum(len(db.gate.queue) for db in self._dbs.values())

    # -- the adapter's entry points ------------------------------------------------------------

    def setlk(self, req: LockRequest, abort: AbortCheck = _never) -> int:
        """F_SETLK / F_SETLKW. Returns 0, or the errno to answer.

        F_SETLK gets EAGAIN, or the abort check's errno: SQLite calls EDEADLK an I/O error.
        F_SETLKW gets POSIX's answers: EINTR when interrupted, EDEADLK for a cycle.
        """
        with self._mu:
            err = self._unlock(req) if req.kind is LockKind.UNLOCK else self._lock(req, abort)
            if trace.isEnabledFor(logging.DEBUG):
                db = self._dbs.get(req.db) if req.db is not None else None
                admitted = db.gate.admitted.pid if db is not None and db.gate.admitted is not None else None
                trace.debug(
                    "pid %d %s %s [%d, %d) -> %d (turn: pid %s)",
                    req.pid,
                    req.role.value,
                    req.kind.value,
                    req.start,
                    req.end,
                    err,
                    admitted,
                )
            return err

    def _unlock(self, req: LockRequest) -> int:
        unlocked = self._files.get(req.file)
        if unlocked is None:
            return 0  # nobody holds a lock on the file, so nobody waits on it either
        unlocked.table.set(req.owner, req.start, req.end, LockKind.UNLOCK)
        dms = req.start < DMS_BYTE[1] and DMS_BYTE[0] < req.end
        db = self._dbs.get(req.db) if req.db is not None else None
        self._after_release(unlocked, db, req.owner, released_dms=dms)
        return 0

    def _lock(self, req: LockRequest, abort: AbortCheck) -> int:
        f = self._files.get(req.file)
        if f is None or f.db != req.db:
            f = self._file(req)
        db = self._database(req.db) if req.db is not None else None
        if db is not None:
            self._classify(db, f, req)
        deadline = None if req.wait else self.clock() + self.lock_timeout
        if (
            db is not None
            and self.policy is Policy.SERIAL
            and req.owner not in db.readers
            and self._starts_transaction(db, f, req)
        ):
            err = self._admit(db, f, req, deadline, abort)
            if err:
                log.debug("turn refused %s (errno %d)", req, err)
                return err
            self._note_first_transaction(db, req)
            # While this request waited, the file's state may have been emptied and
            # discarded by the previous holder's unlock: take the live one.
            if self._files.get(req.file) is not f:
                f = self._file(req)
        err = self._acquire(f, db, req, deadline, abort)
        if err and db is not None:
            self._after_refusal(db, req.owner)
        if err and log.isEnabledFor(logging.DEBUG):
            log.debug("refused %s (errno %d) holders=%s", req, err, dict(f.table.pids))
        return err

    def getlk(self, req: LockRequest, abort: AbortCheck = _never) -> Conflict | None:
        """F_GETLK: the first lock of another owner that conflicts with `req`, exactly as held."""
        with self._mu:
            f = self._files.get(req.file)
            if f is None:
                return None
            if f.role is FileRole.SHM and (req.start, req.end) == DMS_BYTE and self.policy is Policy.SERIAL:
                self._wait_out_shm_init(f, req.owner, abort)
            for other, seg in f.table.conflicts(req.owner, req.start, req.end, req.kind):
                return Conflict(seg.kind, seg.start, seg.end, f.table.pids.get(other, 0))
            return None

    def _wait_out_shm_init(self, f: _FileState, owner: Owner, abort: AbortCheck) -> None:
        """Let a connection that is (re)building the -shm finish before answering a DMS probe.

        The first connection to map the -shm holds DMS exclusively for a moment (truncate, then
        downgrade to shared). A probe that saw that WRLCK would make SQLite answer SQLITE_BUSY;
        one answered a moment later sees the shared lock and joins. The holder waits on nobody
        meanwhile, so waiting on it cannot close a cycle.
        """
        deadline = self.clock() + self.lock_timeout
        waiter = _Waiter(owner, threading.Condition(self._mu), lambda: set())
        f.waiters.add(waiter)
        try:
            while f.table.conflicts(owner, *DMS_BYTE, LockKind.READ):
                if self._closing or abort() or self.clock() >= deadline:
                    return
                waiter.cond.wait(SHM_INIT_POLL_SECONDS)  # a downgrade does not notify
        finally:
            f.waiters.discard(waiter)

    def forget_handle(self, handle: int) -> None:
        """`handle` was closed; its number may come back as a new connection's."""
        with self._mu:
            self._started_handles.discard(handle)

    def release_file(self, file: FileKey) -> None:
        """The last open handle of `file` is gone: no owner can still hold a lock on it."""
        with self._mu:
            f = self._files.get(file)
            if f is None:
                return
            db = self._dbs.get(f.db) if f.db is not None else None
            for owner in list(f.table.owners()):
                f.table.drop(owner)
                self._after_release(f, db, owner)
                if f.key not in self._files:
                    break
            if db is not None and db.key == file and db.gate.admitted is None and not db.gate.queue:
                self._retire(db)

    def _retire(self, db: _DatabaseState) -> None:
        """Nobody has the database open: forget its inode (it may be deleted and the inode
        reused), keep its counters under its name."""
        del self._dbs[db.key]
        if not db.name:
            return
        _, before = self._retired.pop(db.name, ("", GateCounters()))
        self._retired[db.name] = (self._mode(db), before.add(db.gate.counters))
        while len(self._retired) > RETIRED_NAMES:
            del self._retired[next(iter(self._retired))]

    def name_database(self, db: FileKey, name: str) -> None:
        """Remember a path for `db`, for `hoodydb locks`."""
        with self._mu:
            self._database(db).name = name

    def shutdown(self) -> None:
        """The daemon is exiting: every waiting request gives up with EAGAIN."""
        with self._mu:
            self._closing = True
            for waiters in self._waiting.values():
                for w in waiters:
                    w.cond.notify_all()

    # -- the gate ------------------------------------------------------------------------------

    def _starts_transaction(self, db: _DatabaseState, f: _FileState, req: LockRequest) -> bool:
        """The gate's "start" rule: the first lock of a transaction, taken while holding nothing of one."""
        if f.role is FileRole.SHM and req.kind is LockKind.WRITE:
            # The first connection to map the -shm resets it and rebuilds the WAL index: that
            # is a transaction of its own, or later connections would see it half built.
            # The WAL's WRITE lock may come before the read slot (SQLite's recovery path, and
            # builds with SQLITE_ENABLE_SETLK_TIMEOUT such as apsw's): a connection that took
            # it outside its turn would leave the admitted writer waiting on it, and itself
            # waiting for the turn.
            return (req.start, req.end) in (DMS_BYTE, WRITE_BYTE)
        if req.kind is not LockKind.READ:
            return False
        if f.role is FileRole.DATABASE:
            # While the database is in WAL mode with a working WAL index, a new connection's
            # first read of the database file is not yet its transaction: its snapshot is
            # taken at the read slot, where the gate stops it. Opening the WAL and -shm then
            # happens beside the running transaction instead of inside everyone's turn.
            return (
                self.layout.is_pending_byte(req.start, req.end)
                and not f.table.holds(req.owner)
                and not (db.wal_ready and self._wal_active(db))
            )
        if f.role is FileRole.SHM:
            return self.layout.is_read_slot(req.start, req.end) and not f.table.holds(req.owner, *READ_SLOTS)
        return False

    def _admit(
        self, db: _DatabaseState, f: _FileState, req: LockRequest, deadline: float | None, abort: AbortCheck
    ) -> int:
        gate = db.gate
        if gate.try_enter(req.owner, req.pid):
            return 0
        cond = threading.Condition(self._mu)
        ticket = Ticket(
            req.owner,
            req.pid,
            self.clock(),
            # Rule 3: a read slot or DMS asked for with a view of the -shm from before the last
            # commit must look again; the WRITE lock makes SQLite re-read it anyway.
            reserve_on_handoff=f.role is FileRole.SHM and (req.start, req.end) != WRITE_BYTE,
            wake=cond.notify,
        )
        gate.enqueue(ticket)

        def blockers() -> set[Owner]:
            if ticket.admitted:
                return set()  # woken, not yet running: waits on nobody
            # The admitted owner and the ticket just ahead: that one waits on the rest ahead,
            # so the graph stays as connected with two edges per ticket instead of n.
            admitted = gate.admitted
            # No edge to a held turn, or a client of two databases would be taken for a deadlock.
            ahead = {admitted.owner} if admitted is not None and not admitted.held else set()
            if ticket.ahead is not None:
                ahead.add(ticket.ahead.owner)
            ahead.discard(req.owner)
            return ahead

        waiter = _Waiter(req.owner, cond, blockers)
        err = self._wait(waiter, lambda: ticket.admitted, deadline, abort, gate)
        if err:
            if not ticket.admitted:
                gate.cancel(ticket)
            elif gate.is_admitted(req.owner):
                gate.leave(req.owner)  # admitted at the last moment but giving up: pass the turn on
            counters = gate.counters
            if waiter.aborted:
                counters.interrupts += 1
                return err
            if err == errno.EDEADLK:
                counters.victims += 1
            else:
                counters.timeouts += 1
            return err if req.wait and err != errno.EAGAIN else errno.EAGAIN
        if ticket.reserve_on_handoff:
            # EAGAIN makes SQLite re-read the WAL header and ask again; the turn waits for it.
            return errno.EAGAIN
        return 0

    def _note_first_transaction(self, db: _DatabaseState, req: LockRequest) -> None:
        """Mark an admission that is its connection's first transaction.

        A connection's first transaction is always the schema read of the statement it is
        preparing (BEGIN IMMEDIATE aside, which writes and so never gets the grace below); that
        statement runs right after, as a second transaction. Handing the turn on in between
        would send the client to the back of the queue for it: two turns per statement.
        """
        if req.handle < 0 or req.handle in self._started_handles:
            return
        self._started_handles.add(req.handle)
        admission = db.gate.admitted
        if admission is not None and admission.owner == req.owner:
            admission.first_on_handle = True

    def _end_turn(self, db: _DatabaseState, admission: Admission) -> None:
        if admission.first_on_handle and not admission.wrote and self.schema_grace > 0:
            db.gate.hold_for(admission.owner, self.schema_grace)
        else:
            db.gate.leave(admission.owner)

    def _transaction_over(self, db: _DatabaseState, owner: Owner) -> bool:
        """Rule 4: the admitted owner holds no transaction locks any more."""
        shm = self._files.get(db.shm) if db.shm is not None else None
        if shm is not None:
            if shm.table.holds(owner, *READ_SLOTS) or shm.table.holds(owner, *WRITE_BYTE):
                return False
            if self._in_wal_mode(db, owner):
                # WAL: the connection keeps SHARED on the database between transactions. The
                # transaction is over once it has held a read slot and let it go again.
                return db.gate.admitted is None or db.gate.admitted.entered
        dbf = self._files.get(db.key)
        return dbf is None or not dbf.table.holds(owner)

    def _after_refusal(self, db: _DatabaseState, owner: Owner) -> None:
        """The admitted owner was refused a lock: make sure the turn cannot stay stuck with it."""
        admission = db.gate.admitted
        if admission is None or admission.owner != owner:
            return
        if self._transaction_over(db, owner):
            db.gate.leave(owner)
        elif not admission.entered and admission.reserved_until is None and self._in_wal_mode(db, owner):
            # A WAL client refused before its read slot retries at once; one that does not come
            # back (gave up, crashed) must not keep everyone else waiting for the full bound.
            admission.reserved_until = self.clock() + self.reservation_seconds

    def _wal_active(self, db: _DatabaseState) -> bool:
        shm = self._files.get(db.shm) if db.shm is not None else None
        return shm is not None and shm.table.held_by_anyone(*DMS_BYTE)

    def _in_wal_mode(self, db: _DatabaseState, owner: Owner) -> bool:
        shm = self._files.get(db.shm) if db.shm is not None else None
        return shm is not None and shm.table.holds(owner, *DMS_BYTE)

    # -- POSIX acquisition ---------------------------------------------------------------------

    def _acquire(
        self,
        f: _FileState,
        db: _DatabaseState | None,
        req: LockRequest,
        deadline: float | None,
        abort: AbortCheck,
    ) -> int:
        spans = self._spans(f, db, req)
        table, owner, kind = f.table, req.owner, req.kind
        if not any(table.blocks(owner, start, end, kind) for start, end in spans):
            if db is None or db.exclusive_waiter is None or self._yields_to(f, db, req) is None:
                self._grant(f, db, req)
                return 0
            # Only the courtesy holds it back: it ends by itself, so it is no edge of the
            # wait-for graph and never a reason to refuse; nor to crowd out real waiters.
            if not self._may_wait(f, db, req) or self._n_waiters >= self.max_waiters // 2:
                self._grant(f, db, req)
                return 0
        elif not self._may_wait(f, db, req) or (f.role is FileRole.SHM and (req.start, req.end) == DMS_BYTE):
            # (A DMS conflict means another connection got there first: SQLite looks again
            # with F_GETLK and joins it, so waiting for that connection to close is wrong.)
            return errno.EAGAIN

        def blockers() -> set[Owner]:
            return {other for start, end in spans for other, _ in table.conflicts(owner, start, end, kind)}

        def done() -> bool:
            return not blockers() and self._yields_to(f, db, req) is None

        waiter = _Waiter(req.owner, threading.Condition(self._mu), blockers)
        claimed = self._claim_priority(db, req, spans)
        f.waiters.add(waiter)
        try:
            err = self._wait(waiter, done, deadline, abort, db.gate if db else None)
        finally:
            f.waiters.discard(waiter)
            if claimed and db is not None and db.exclusive_waiter == req.owner:
                db.exclusive_waiter = None
                for other in f.waiters:
                    other.cond.notify()  # the newcomers held behind it go on
        if err:
            return err if req.wait or waiter.aborted else errno.EAGAIN
        self._grant(f, db, req)
        return 0

    def _claim_priority(
        self, db: _DatabaseState | None, req: LockRequest, spans: list[tuple[int, int]]
    ) -> bool:
        """The admitted owner is about to wait for EXCLUSIVE straight from SHARED: let it go first.

        SQLite 3.42 and later take that step (rolling back a hot journal) without the PENDING
        byte, so nothing keeps new readers from taking SHARED meanwhile, and readers that keep
        overlapping would hold the range until the lock timeout. While the owner waits,
        newcomers' first step to SHARED waits behind it; only for a while in each turn, because
        readers that stay would keep it waiting anyway.
        """
        if db is None or len(spans) != 2 or req.kind is not LockKind.WRITE:
            return False  # (two spans: the database's SHARED range, asked without PENDING)
        admission = db.gate.admitted
        if admission is None or admission.owner != req.owner or admission.held:
            return False
        now = self.clock()
        if admission.priority_until is None:
            admission.priority_until = now + self.exclusive_priority_seconds
        if now >= admission.priority_until:
            return False
        db.exclusive_waiter = req.owner
        return True

    def _yields_to(self, f: _FileState, db: _DatabaseState | None, req: LockRequest) -> Owner | None:
        """The owner waiting for EXCLUSIVE that this newcomer's first step to SHARED waits behind."""
        if (
            db is None
            or req.kind is not LockKind.READ
            or f.role is not FileRole.DATABASE
            or not self.layout.is_pending_byte(req.start, req.end)
            or f.table.holds(req.owner)
        ):
            return None
        waiter = self._priority_owner(db, self.clock())
        return None if waiter == req.owner else waiter

    @staticmethod
    def _priority_owner(db: _DatabaseState, now: float) -> Owner | None:
        """The owner newcomers wait behind now, if any: admitted, waiting for EXCLUSIVE, in time."""
        waiter, admission = db.exclusive_waiter, db.gate.admitted
        if (
            waiter is None
            or admission is None
            or admission.owner != waiter  # its turn is over: no priority left
            or admission.priority_until is None
            or now >= admission.priority_until
        ):
            return None
        return waiter

    def _spans(self, f: _FileState, db: _DatabaseState | None, req: LockRequest) -> list[tuple[int, int]]:
        """The ranges `req` must find free: its own, plus one where SQLite's protocol needs it.

        SQLite takes SHARED as the PENDING byte, then the SHARED range. Holding PENDING, a
        client may no longer wait, so it gets PENDING only once the range is free as well.
        Conversely an EXCLUSIVE taken without PENDING (SQLite 3.42 and later, going straight
        from SHARED: the last WAL connection's checkpoint on close) must see a newcomer halfway
        through that sequence as the connection it is. Older SQLite lets go of PENDING before
        the range when it unlocks; newer never takes it: either way a newcomer could end up
        holding PENDING with the range write-locked, and be refused SHARED at once.
        """
        spans = [(req.start, req.end)]
        if f.role is not FileRole.DATABASE or db is None or not db.sqlite or self.policy is not Policy.SERIAL:
            return spans  # plain POSIX
        pending = (self.layout.pending, self.layout.pending + 1)
        shared = (self.layout.shared_first, self.layout.shared_first + SHARED_SIZE)
        if req.kind is LockKind.READ and spans[0] == pending and not f.table.holds(req.owner):
            spans.append(shared)
        elif (
            req.kind is LockKind.WRITE
            and spans[0] == shared
            and not f.table.holds(req.owner, *pending, LockKind.WRITE)
        ):
            spans.append(pending)
        return spans

    def _may_wait(self, f: _FileState, db: _DatabaseState | None, req: LockRequest) -> bool:
        if req.wait:
            return True
        if self.policy is Policy.OFF or db is None or not db.sqlite:
            return False
        admission = db.gate.admitted
        if admission is not None and admission.owner == req.owner and not admission.held:
            return True
        # A held turn is for starting a transaction, not for waiting inside one: a connection
        # that closes in its grace tries EXCLUSIVE and must fail at once.
        return not self._holds_any(db, req.owner)

    def _grant(self, f: _FileState, db: _DatabaseState | None, req: LockRequest) -> None:
        f.table.set(req.owner, req.start, req.end, req.kind, req.pid)
        if db is None:
            return
        admission = db.gate.admitted
        if admission is None or admission.owner != req.owner:
            return
        if f.role is FileRole.DATABASE:
            if req.kind is LockKind.WRITE:
                admission.wrote = True
            return
        if f.role is not FileRole.SHM:
            return
        in_slots = req.start < READ_SLOTS[1] and req.end > READ_SLOTS[0]
        on_write = req.start < WRITE_BYTE[1] and req.end > WRITE_BYTE[0]
        if req.kind is LockKind.WRITE and on_write:
            admission.entered = admission.wrote = True
        elif req.kind is LockKind.READ and in_slots:
            admission.entered = True

    # -- waiting -------------------------------------------------------------------------------

    def _wait(
        self,
        waiter: _Waiter,
        done: Callable[[], bool],
        deadline: float | None,
        abort: AbortCheck,
        gate: AdmissionGate | None,
    ) -> int:
        """Sleep on `waiter.cond` until `done()`. Returns 0 or the errno to give up with."""
        if self._n_waiters >= self.max_waiters:
            return errno.EAGAIN  # each waiter holds a daemon thread: the bound keeps the mount alive
        self._n_waiters += 1
        self.waits += 1
        self._waiting.setdefault(waiter.owner, set()).add(waiter)
        try:
            next_cycle_check = 0.0
            while not done():
                if self._closing:
                    return errno.EAGAIN
                now = self.clock()
                # A cycle is almost always closed by the request that starts waiting; the
                # periodic re-check is a backstop, kept rare because it walks the whole graph.
                if now >= next_cycle_check:
                    if self._closes_cycle(waiter):
                        log.debug("victim: %s waits on %s", waiter.owner, waiter.blockers())
                        return errno.EDEADLK
                    next_cycle_check = now + CYCLE_CHECK_SECONDS
                err = abort()
                if err:
                    log.debug("aborted: %s errno %d", waiter.owner, err)
                    waiter.aborted = True
                    return err
                if deadline is not None and now >= deadline:
                    return errno.EAGAIN
                timeout = self.poll_interval if deadline is None else min(self.poll_interval, deadline - now)
                if gate is not None:
                    gate.expire(now)
                    if done():
                        break
                    admitted = gate.admitted
                    if admitted is not None and admitted.reserved_until is not None:
                        # Wake when a held turn runs out, not a poll interval later.
                        timeout = min(timeout, max(admitted.reserved_until - now, 0.0005))
                    if (
                        admitted is not None
                        and admitted.priority_until is not None
                        and now < admitted.priority_until
                    ):
                        timeout = min(timeout, max(admitted.priority_until - now, 0.0005))
                waiter.cond.wait(timeout)
            return 0
        finally:
            self._n_waiters -= 1
            mine = self._waiting.get(waiter.owner)
            if mine is not None:
                mine.discard(waiter)
                if not mine:
                    del self._waiting[waiter.owner]

    def _closes_cycle(self, waiter: _Waiter) -> bool:
        """Would `waiter` waiting on its blockers close a cycle in the global wait-for graph?"""
        seen: set[Owner] = set()
        stack = list(waiter.blockers())
        while stack:
            owner = stack.pop()
            if owner == waiter.owner:
                return True
            if owner in seen:
                continue
            seen.add(owner)
            for other in self._waiting.get(owner, ()):
                stack.extend(other.blockers())
        return False

    # -- bookkeeping ---------------------------------------------------------------------------

    def _file(self, req: LockRequest) -> _FileState:
        f = self._files.get(req.file)
        if f is None:
            f = self._files[req.file] = _FileState(req.file, req.role, req.db)
        elif f.db != req.db:
            f.db = req.db  # a recreated -shm may get the inode of an old file
        return f

    def _database(self, key: FileKey) -> _DatabaseState:
        db = self._dbs.get(key)
        if db is None:
            gate = AdmissionGate(clock=self.clock, reservation_seconds=self.reservation_seconds)
            db = self._dbs[key] = _DatabaseState(key, gate)
        return db

    def _classify(self, db: _DatabaseState, f: _FileState, req: LockRequest) -> None:
        if f.role is FileRole.SHM:
            db.sqlite = True
            db.shm = f.key
        elif f.role is FileRole.DATABASE:
            if self.layout.is_pending_byte(req.start, req.end):
                db.sqlite = True
            if not req.readonly:
                db.writers.add(req.owner)
                db.readers.discard(req.owner)
            elif req.owner not in db.writers:
                db.readers.add(req.owner)

    def _holds_any(self, db: _DatabaseState, owner: Owner) -> bool:
        for key in (db.key, db.shm):
            f = self._files.get(key) if key is not None else None
            if f is not None and f.table.holds(owner):
                return True
        return False

    def _after_release(
        self, f: _FileState, db: _DatabaseState | None, owner: Owner, released_dms: bool = True
    ) -> None:
        for waiter in f.waiters:
            waiter.cond.notify()
        if db is not None:
            admission = db.gate.admitted
            if admission is not None and admission.owner == owner and self._transaction_over(db, owner):
                if self._in_wal_mode(db, owner):
                    db.wal_ready = True  # a WAL transaction completed: the index is built
                self._end_turn(db, admission)
            if f.role is FileRole.SHM and released_dms and db.wal_ready and not self._wal_active(db):
                # The last connection let go of the -shm: the next one rebuilds the index
                # (recovery), and that must happen inside a turn, not beside one.
                db.wal_ready = False
            if (
                not f.table.holds(owner)
                and (owner in db.readers or owner in db.writers)
                and not self._holds_any(db, owner)
            ):
                db.readers.discard(owner)
                db.writers.discard(owner)
        if not f.table and not f.waiters:
            del self._files[f.key]

    # -- observation ---------------------------------------------------------------------------

    def _mode(self, db: _DatabaseState) -> str:
        return "wal" if db.shm is not None else "rollback"

    def snapshot(self) -> list[dict[str, Any]]:
        """Per database: who holds the turn, who waits, who reads beside it, and the counters."""
        with self._mu:
            now = self.clock()
            out = []
            live = set()
            for db in self._dbs.values():
                gate = db.gate
                holders: dict[Owner, int] = {}
                for key in (db.key, db.shm):
                    state = self._files.get(key) if key is not None else None
                    if state is not None:
                        holders.update(state.table.pids)
                counters = gate.counters
                if db.name in self._retired:
                    counters = counters.add(self._retired[db.name][1])
                live.add(db.name)
                admitted = gate.admitted
                out.append(
                    {
                        "database": db.name or f"inode {db.key[1]}",
                        "mode": self._mode(db),
                        "admitted": None
                        if admitted is None
                        else {
                            "pid": admitted.pid,
                            "seconds": round(now - admitted.since, 3),
                            "reserved": admitted.reserved_until is not None,
                            # waiting for EXCLUSIVE straight from SHARED, newcomers held behind it
                            "exclusive_first": self._priority_owner(db, now) is not None,
                        },
                        "waiting": [{"pid": t.pid, "seconds": round(now - t.since, 3)} for t in gate.queue],
                        "readers": sorted(holders[o] for o in db.readers if o in holders),
                        "holders": sorted(set(holders.values())),
                        "counters": counters.as_dict(),
                    }
                )
            for name, (mode, counters) in self._retired.items():
                if name not in live:
                    out.append(
                        {
                            "database": name,
                            "mode": mode,
                            "admitted": None,
                            "waiting": [],
                            "readers": [],
                            "holders": [],
                            "counters": counters.as_dict(),
                        }
                    )
            out.sort(key=lambda d: str(d["database"]))
            return out
