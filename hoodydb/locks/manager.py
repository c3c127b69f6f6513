"""The lock manager: POSIX lock tables of every file plus the admission gate of every database.

This module orchestrates; the pieces live beside it: `protocol` says what a request means in
SQLite's protocol, `gate` keeps each database's turn and queue, `intents` what each owner has
shown it does, `waiting` parks requests, `ranges` is one file's POSIX table and `report` what
`hoodydb locks` shows. No FUSE here: the adapter turns each lock request into a `LockRequest`,
calls `setlk`/`getlk`, and turns the `Outcome` into an errno (fs/answers.py). Everything runs
under one mutex, `_mu`.

Why a request may wait at all (docs/architecture.md, "The admission gate"): SQLite never blocks on
a lock, so a request that the daemon delays is one that would otherwise have failed with "database
is locked". Delaying is safe only where it cannot close a cycle: for the owner holding the
database's turn, for owners that hold nothing on that database yet, and for a read slot asked
while others only move read marks. Everyone else is answered at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from hoodydb.locks import protocol
from hoodydb.locks.gate import Admission, AdmissionGate, GateCounters, Ticket
from hoodydb.locks.intents import Beside, Intent, Intents
from hoodydb.locks.protocol import DMS_BYTE, READ_SLOTS, WRITE_BYTE
from hoodydb.locks.ranges import RangeTable
from hoodydb.locks.report import BesideReport, DatabaseReport, TurnReport, WaiterReport
from hoodydb.locks.settings import LockSettings
from hoodydb.locks.types import (
    Conflict,
    FileKey,
    FileRole,
    LockKind,
    LockRequest,
    Outcome,
    Owner,
    Policy,
)
from hoodydb.locks.waiting import AbortCheck, WaitRoom, never

log = logging.getLogger(__name__)
trace = logging.getLogger(__name__ + ".trace")  # every decision, for debugging the protocol

RETIRED_NAMES = 1024  # counters kept for databases that nobody has open, by path
OPEN_NAMES = 65536  # paths of open files that took no lock yet (bounded by open files anyway)


@dataclass(eq=False)
class _FileState:
    key: FileKey
    role: FileRole
    db: FileKey | None
    table: RangeTable = field(default_factory=RangeTable)
    waiters: set[Callable[[], None]] = field(default_factory=set)  # wake-ups of requests waiting here


@dataclass(eq=False)
class _DatabaseState:
    key: FileKey
    gate: AdmissionGate
    name: str = ""
    shm: FileKey | None = None
    sqlite: bool = False  # has shown SQLite's lock protocol: only then may the gate park requests
    wal_ready: bool = False  # WAL mode, and a transaction has run since the -shm was last (re)built
    ro_owners: set[Owner] = field(default_factory=set)  # db-file locks only through read-only handles
    rw_owners: set[Owner] = field(default_factory=set)
    beside: dict[Owner, Beside] = field(default_factory=dict)  # transactions running beside the turn
    # The admitted owner, while it waits for EXCLUSIVE straight from SHARED (_claim_priority).
    exclusive_waiter: Owner | None = None


class LockManager:
    def __init__(
        self,
        settings: LockSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        working: Callable[[int], bool | None] | None = None,
    ) -> None:
        """`working(pid)`: is that client thread still busy (runnable, or waiting for us)? A window
        does not pass the turn on while it is (the adapter asks the kernel: fs/activity.py)."""
        self.settings = settings = settings or LockSettings()
        self.layout = settings.layout
        self.clock = clock
        self.working = working
        self._mu = threading.Lock()
        self._room = WaitRoom(self._mu, clock, settings)
        self._files: dict[FileKey, _FileState] = {}
        self._dbs: dict[FileKey, _DatabaseState] = {}
        self._names: dict[FileKey, str] = {}  # open files that may be databases, until they lock
        self._intents = Intents()
        self._started_handles: set[int] = set()  # open files that have started a transaction
        self._retired: dict[str, tuple[str, GateCounters]] = {}  # name -> (mode, counters)

    @property
    def policy(self) -> Policy:
        return self.settings.policy

    @property
    def waits(self) -> int:
        """Requests that have had to wait, ever: a sign of contention to watch."""
        return self._room.waits

    @property
    def waiting(self) -> int:
        """Transaction starts queued for a turn now, over every database (F_SETLKW waiters on
        other files are not contention for a database)."""
        with self._mu:
            return sum(len(db.gate.queue) for db in self._dbs.values())

    def parked(self) -> dict[str, int]:
        """Requests parked now, the most at once, the bound, and how many it refused."""
        with self._mu:
            room = self._room
            return {
                "now": room.parked,
                "peak": room.peak,
                "bound": room.max_waiters,
                "refused": room.refused_full,
            }

    def table_sizes(self) -> dict[str, int]:
        """How much state the manager keeps: bounded by what is open and locked now."""
        with self._mu:
            return {
                "files": len(self._files),
                "databases": len(self._dbs),
                "names": len(self._names),
                "intents": len(self._intents),
                "handles": len(self._started_handles),
                "retired": len(self._retired),
            }

    # -- the adapter's entry points ------------------------------------------------------------

    def setlk(self, req: LockRequest, abort: AbortCheck = never) -> Outcome:
        with self._mu:
            outcome = self._unlock(req) if req.kind is LockKind.UNLOCK else self._lock(req, abort)
            if trace.isEnabledFor(logging.DEBUG):
                db = self._dbs.get(req.db) if req.db is not None else None
                admitted = db.gate.admitted.pid if db is not None and db.gate.admitted is not None else None
                trace.debug(
                    "pid %d %s %s [%d, %d) -> %s (turn: pid %s)",
                    req.pid,
                    req.role.value,
                    req.kind.value,
                    req.start,
                    req.end,
                    outcome.value,
                    admitted,
                )
            return outcome

    def getlk(self, req: LockRequest, abort: AbortCheck = never) -> Conflict | None:
        """F_GETLK: the first lock of another owner that conflicts with `req`, exactly as held."""
        with self._mu:
            f = self._files.get(req.file)
            if f is None:
                return None
            if f.role is FileRole.SHM and (req.start, req.end) == DMS_BYTE and self.policy is not Policy.OFF:
                self._wait_out_shm_init(f, req.owner, abort)
            for other, seg in f.table.conflicts(req.owner, req.start, req.end, req.kind):
                return Conflict(seg.kind, seg.start, seg.end, f.table.pids.get(other, 0))
            return None

    def name_database(self, db: FileKey, name: str) -> None:
        """Remember a path for `db`, for `hoodydb locks`, while the file is open."""
        with self._mu:
            state = self._dbs.get(db)
            if state is not None:
                state.name = name
            elif len(self._names) < OPEN_NAMES or db in self._names:
                self._names[db] = name

    def forget_handle(self, handle: int) -> None:
        """`handle` was closed; its number may come back as a new connection's."""
        with self._mu:
            self._started_handles.discard(handle)
            self._intents.forget_handle(handle)

    def release_file(self, file: FileKey) -> None:
        """The last open handle of `file` is gone: no owner can still hold a lock on it, and a
        database nobody has open is forgotten (its inode may be reused by another file)."""
        with self._mu:
            self._names.pop(file, None)
            f = self._files.get(file)
            if f is not None:
                db = self._dbs.get(f.db) if f.db is not None else None
                for owner in list(f.table.owners()):
                    f.table.drop(owner)
                    self._after_release(f, db, owner)
                    if f.key not in self._files:
                        break
            db = self._dbs.get(file)
            if db is None:
                return
            admission = db.gate.admitted
            if admission is not None and admission.held:
                db.gate.leave(admission.owner)  # a grace for a connection that closed
            if db.gate.admitted is None and not db.gate.queue:
                self._retire(db)

    def shutdown(self) -> None:
        """The daemon is exiting: every waiting request gives up."""
        with self._mu:
            self._room.shutdown()
            for f in self._files.values():
                for wake in f.waiters:
                    wake()

    # -- a lock or an unlock -------------------------------------------------------------------

    def _unlock(self, req: LockRequest) -> Outcome:
        unlocked = self._files.get(req.file)
        if unlocked is None:
            return Outcome.GRANTED  # nobody holds a lock on the file, so nobody waits on it either
        unlocked.table.set(req.owner, req.start, req.end, LockKind.UNLOCK)
        dms = req.start < DMS_BYTE[1] and DMS_BYTE[0] < req.end
        db = self._dbs.get(req.db) if req.db is not None else None
        self._after_release(unlocked, db, req.owner, released_dms=dms)
        return Outcome.GRANTED

    def _lock(self, req: LockRequest, abort: AbortCheck) -> Outcome:
        f = self._files.get(req.file)
        if f is None or f.db != req.db:
            f = self._file(req)
        db = self._database(req.db) if req.db is not None else None
        deadline = None if req.wait else self.clock() + self.settings.lock_timeout
        if db is not None:
            self._classify(db, f, req)
        if db is not None and self.policy is not Policy.OFF:
            if protocol.starts_transaction(self.layout, req, f.table, db.wal_ready, self._table(db.shm)):
                self._intents.note_handle(db.key, req.owner, req.handle)
                outcome = self._start(db, f, req, deadline, abort)
                if outcome is not Outcome.GRANTED:
                    log.debug("turn refused %s (%s)", req, outcome.value)
                    return outcome
                # While this request waited, the file's state may have been emptied and
                # discarded by the previous holder's unlock: take the live one.
                if self._files.get(req.file) is not f:
                    f = self._file(req)
            elif protocol.is_write_intent(self.layout, req) and (
                req.role is FileRole.DATABASE or f.table.holds(req.owner, *READ_SLOTS)
            ):
                self._intents.note_handle(db.key, req.owner, req.handle)
                outcome = self._write_intent(db, req)
                if outcome is not Outcome.GRANTED:
                    log.debug("write refused %s: another writer has the turn", req)
                    return outcome
        outcome = self._acquire(f, db, req, deadline, abort)
        if outcome is not Outcome.GRANTED:
            if db is not None:
                self._after_refusal(db, req.owner)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("refused %s (%s) holders=%s", req, outcome.value, dict(f.table.pids))
        return outcome

    # -- the policy ----------------------------------------------------------------------------

    def _start(
        self, db: _DatabaseState, f: _FileState, req: LockRequest, deadline: float | None, abort: AbortCheck
    ) -> Outcome:
        """A transaction starts: take a turn, a window, or go beside."""
        if req.owner in db.ro_owners:
            # A read-only open cannot write: it never takes a turn.
            if req.kind is LockKind.READ:
                self._begin_beside(db, req, learn=False)
            return Outcome.GRANTED
        tentative = False
        if self.policy is Policy.BESIDE:
            intent = self._intents.of(db.key, req.owner)
            if (
                intent is Intent.READER
                and not protocol.is_write_start(req)
                and not db.gate.is_admitted(req.owner)
            ):
                self._begin_beside(db, req, learn=True)
                return Outcome.GRANTED
            tentative = intent is not Intent.WRITER
        outcome = self._admit(db, f, req, deadline, abort, tentative)
        if outcome is Outcome.GRANTED:
            self._note_first_transaction(db, req)
        return outcome

    def _begin_beside(self, db: _DatabaseState, req: LockRequest, *, learn: bool) -> None:
        if req.owner not in db.beside:
            db.beside[req.owner] = Beside(req.pid, self.clock(), learn)
            db.gate.counters.beside += 1

    def _write_intent(self, db: _DatabaseState, req: LockRequest) -> Outcome:
        """RESERVED, or the WAL's WRITE lock inside a transaction: the owner writes.

        From the owner holding the turn this is what the turn is for. From a transaction beside
        it (a reader turned writer), SQLite already holds a snapshot that nobody checked: it may
        write only if nobody holds or waits for the turn; otherwise the answer is "database is
        locked", as natively (with a busy timeout an autocommit statement then starts over, now
        as a known writer, and queues)."""
        self._intents.learn(db.key, req.owner, Intent.WRITER)
        if req.owner in db.ro_owners or self.policy is not Policy.BESIDE:
            return Outcome.GRANTED  # (serial: the writer holds the turn; read-only: SQLite refuses)
        gate = db.gate
        if gate.is_admitted(req.owner):
            gate.known_writer()
            return Outcome.GRANTED
        self._tick(db, self.clock())
        if gate.try_enter(req.owner, req.pid):
            self._room.granted(req.owner)
            db.beside.pop(req.owner, None)
            admission = gate.admitted
            if admission is not None:
                admission.entered = True  # its snapshot is taken: the transaction is under way
            return Outcome.GRANTED
        gate.counters.refused_writes += 1
        return Outcome.BUSY

    def _tick(self, db: _DatabaseState, now: float) -> float | None:
        """Let time-bound turns run out; how long until the next one may."""
        gate = db.gate
        gate.expire(now)
        if gate.window_over(now):
            admission = gate.admitted
            assert admission is not None
            if self.working is not None and self.working(admission.pid):
                # Starting a write, most likely, on a machine too busy to run it: look again soon.
                gate.extend_window(now + self.settings.fresh_window / 2)
            # Never while it rebuilds the index or writes: others would run on a half-done state.
            elif not protocol.changes_the_index(self._table(db.shm), self._table(db.key), admission.owner):
                gate.pass_on()
                db.beside[admission.owner] = Beside(
                    admission.pid, admission.since, not admission.first_on_handle
                )
                trace.debug("pid %d: window over, reads on beside", admission.pid)
        admitted = gate.admitted
        if admitted is None:
            return None
        moments = [
            t - now
            for t in (admitted.reserved_until, admitted.window_until, admitted.priority_until)
            if t is not None and t > now
        ]
        return min(moments, default=None)

    def _admit(
        self,
        db: _DatabaseState,
        f: _FileState,
        req: LockRequest,
        deadline: float | None,
        abort: AbortCheck,
        tentative: bool,
    ) -> Outcome:
        gate = db.gate
        self._tick(db, self.clock())
        if gate.try_enter(req.owner, req.pid, tentative):
            self._room.granted(req.owner)
            return Outcome.GRANTED
        waiter = self._room.waiter(req.owner, lambda: set())
        ticket = Ticket(
            req.owner,
            req.pid,
            self.clock(),
            # Rule 3: a read slot or DMS asked for with a view of the -shm from before the last
            # commit must look again; the WRITE lock makes SQLite re-read it anyway.
            reserve_on_handoff=f.role is FileRole.SHM and (req.start, req.end) != WRITE_BYTE,
            tentative=tentative,
            wake=waiter.cond.notify,
            on_head=waiter.cond.notify,
        )
        gate.enqueue(ticket)

        def blockers() -> set[Owner]:
            # One edge, to the admitted owner: a ticket's wait on those ahead of it becomes an edge
            # when one of them is admitted, and the room looks for cycles then (`granted`).
            admitted = gate.admitted
            # No edge to a held turn, or a client of two databases would be taken for a deadlock.
            if ticket.admitted or admitted is None or admitted.held or admitted.owner == req.owner:
                return set()
            return {admitted.owner}

        def tick(now: float) -> float | None:
            if not gate.head(ticket):
                return None
            sooner = self._tick(db, now)
            return self.settings.head_tick if sooner is None else min(sooner, self.settings.head_tick)

        waiter.blockers = blockers
        # Behind a queue that moves nobody times out: only a turn that stays with one transaction
        # for the whole lock timeout (a stuck holder) does.
        progress = (
            None if deadline is None else (lambda: max(deadline, gate.moved_at + self.settings.lock_timeout))
        )
        outcome = self._room.wait(waiter, lambda: ticket.admitted, progress, abort, tick)
        if outcome is Outcome.GRANTED:
            self._room.granted(req.owner)
        else:
            if not ticket.admitted:
                gate.cancel(ticket)
            elif gate.is_admitted(req.owner):
                gate.leave(req.owner)  # admitted at the last moment but giving up: pass the turn on
            counters = gate.counters
            if outcome is Outcome.ABORTED:
                counters.interrupts += 1
            elif outcome is Outcome.DEADLOCK:
                counters.victims += 1
            elif outcome is Outcome.FULL:
                counters.refused_full += 1
            else:
                counters.timeouts += 1
            if outcome is Outcome.TIMEOUT and protocol.is_read_slot(req):
                # WAL: SQLite retries a refused read slot 100 times, silently, then fails with
                # "locking protocol". Read beside instead: a writer is then refused its WRITE lock
                # ("database is locked", as natively behind a stuck writer), a reader reads.
                self._begin_beside(db, req, learn=False)
                return Outcome.GRANTED
            return outcome
        if ticket.reserve_on_handoff:
            # EAGAIN makes SQLite re-read the WAL header and ask again; the turn waits for it.
            return Outcome.BUSY
        return Outcome.GRANTED

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
        # A short read in the turn teaches nothing: an owner that polls with quick reads and then
        # writes (BEGIN IMMEDIATE at busy timeout 0, as task queues do) must keep finding its turn.
        if admission.first_on_handle and not admission.wrote and self.settings.schema_grace > 0:
            db.gate.hold_for(admission.owner, self.settings.schema_grace)
        else:
            db.gate.leave(admission.owner)

    def _transaction_over(self, db: _DatabaseState, owner: Owner) -> bool:
        """Rule 4: the admitted owner holds no transaction locks any more."""
        shm = self._table(db.shm)
        if protocol.in_transaction(self._table(db.key), shm, owner):
            return False
        if protocol.in_wal_mode(shm, owner):
            # WAL: the connection keeps SHARED on the database between transactions. The
            # transaction is over once it has held a read slot and let it go again.
            return db.gate.admitted is None or db.gate.admitted.entered
        return True

    def _end_beside(self, db: _DatabaseState, owner: Owner) -> Beside | None:
        """Drop the owner's transaction beside the turn if it is over; returns what it was."""
        beside = db.beside.get(owner)
        if beside is None or protocol.in_transaction(self._table(db.key), self._table(db.shm), owner):
            return None
        del db.beside[owner]
        return beside

    def _after_refusal(self, db: _DatabaseState, owner: Owner) -> None:
        """An owner was refused a lock: make sure no turn or beside entry stays stuck with it."""
        self._end_beside(db, owner)
        admission = db.gate.admitted
        if admission is None or admission.owner != owner:
            return
        if self._transaction_over(db, owner):
            db.gate.leave(owner)
        elif (
            not admission.entered
            and admission.reserved_until is None
            and protocol.in_wal_mode(self._table(db.shm), owner)
        ):
            # A WAL client refused before its read slot retries at once; one that does not come
            # back (gave up, crashed) must not keep everyone else waiting for the full bound.
            admission.reserved_until = self.clock() + self.settings.reservation
            db.gate.wake_head()

    # -- POSIX acquisition ---------------------------------------------------------------------

    def _acquire(
        self,
        f: _FileState,
        db: _DatabaseState | None,
        req: LockRequest,
        deadline: float | None,
        abort: AbortCheck,
    ) -> Outcome:
        gated = db is not None and db.sqlite and self.policy is not Policy.OFF and f.role is FileRole.DATABASE
        spans = protocol.spans(self.layout, req, f.table) if gated else [(req.start, req.end)]
        table, owner, kind = f.table, req.owner, req.kind
        if not any(table.blocks(owner, start, end, kind) for start, end in spans):
            if db is None or db.exclusive_waiter is None or self._yields_to(f, db, req) is None:
                self._grant(f, db, req)
                return Outcome.GRANTED
            # Only the courtesy holds it back: it ends by itself, so it is no edge of the
            # wait-for graph and never a reason to refuse; nor to crowd out real waiters.
            if not self._may_wait(f, db, req) or not self._room.has_room(0.5):
                self._grant(f, db, req)
                return Outcome.GRANTED
        elif not self._may_wait(f, db, req) or (f.role is FileRole.SHM and (req.start, req.end) == DMS_BYTE):
            # (A DMS conflict means another connection got there first: SQLite looks again
            # with F_GETLK and joins it, so waiting for that connection to close is wrong.)
            return Outcome.BUSY

        def blockers() -> set[Owner]:
            return {other for start, end in spans for other, _ in table.conflicts(owner, start, end, kind)}

        def done() -> bool:
            return not blockers() and self._yields_to(f, db, req) is None

        waiter = self._room.waiter(req.owner, blockers)
        claimed = self._claim_priority(db, req, spans)
        f.waiters.add(waiter.cond.notify)
        try:
            tick = None if db is None else (lambda now: self._tick(db, now))
            until = None if deadline is None else (lambda: deadline)
            outcome = self._room.wait(waiter, done, until, abort, tick)
        finally:
            f.waiters.discard(waiter.cond.notify)
            if claimed and db is not None and db.exclusive_waiter == req.owner:
                db.exclusive_waiter = None
                for wake in f.waiters:
                    wake()  # the newcomers held behind it go on
        if outcome is Outcome.GRANTED:
            self._grant(f, db, req)
        return outcome

    def _may_wait(self, f: _FileState, db: _DatabaseState | None, req: LockRequest) -> bool:
        if req.wait:
            return True
        if self.policy is Policy.OFF or db is None or not db.sqlite or protocol.is_mark_write(req):
            return False
        if protocol.is_recover_probe(req):
            return True
        admission = db.gate.admitted
        if admission is not None and admission.owner == req.owner and not admission.held:
            return True
        if protocol.waits_only_for_marks(f.table, req):
            return True
        # A held turn is for starting a transaction, not for waiting inside one: a connection
        # that closes in its grace tries EXCLUSIVE and must fail at once.
        return not self._holds_any(db, req.owner)

    def _grant(self, f: _FileState, db: _DatabaseState | None, req: LockRequest) -> None:
        f.table.set(req.owner, req.start, req.end, req.kind, req.pid)
        self._room.granted(req.owner)
        if db is None:
            return
        admission = db.gate.admitted
        if admission is None or admission.owner != req.owner:
            return
        if f.role is FileRole.DATABASE:
            if req.kind is LockKind.WRITE:
                admission.wrote = True
                self._intents.learn(db.key, req.owner, Intent.WRITER)
            return
        if f.role is not FileRole.SHM:
            return
        in_slots = req.start < READ_SLOTS[1] and req.end > READ_SLOTS[0]
        on_write = req.start < WRITE_BYTE[1] and req.end > WRITE_BYTE[0]
        if req.kind is LockKind.WRITE and on_write:
            admission.entered = True
            # Inside a transaction (a read slot held) WRITE means a write; before one it is the
            # index being rebuilt (recovery), which any reader may have to do.
            if f.table.holds(req.owner, *READ_SLOTS):
                admission.wrote = True
                self._intents.learn(db.key, req.owner, Intent.WRITER)
        elif req.kind is LockKind.READ and in_slots:
            admission.entered = True

    # -- EXCLUSIVE straight from SHARED --------------------------------------------------------

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
            admission.priority_until = now + self.settings.exclusive_priority
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

    def _wait_out_shm_init(self, f: _FileState, owner: Owner, abort: AbortCheck) -> None:
        """Let a connection that is (re)building the -shm finish before answering a DMS probe.

        The first connection to map the -shm holds DMS exclusively for a moment (truncate, then
        downgrade to shared). A probe that saw that WRLCK would make SQLite answer SQLITE_BUSY;
        one answered a moment later sees the shared lock and joins. The holder waits on nobody
        meanwhile, so waiting on it cannot close a cycle.
        """
        deadline = self.clock() + self.settings.lock_timeout
        cond = threading.Condition(self._mu)
        f.waiters.add(cond.notify)
        try:
            while f.table.conflicts(owner, *DMS_BYTE, LockKind.READ):
                if self._room.closing or abort() or self.clock() >= deadline:
                    return
                cond.wait(self.settings.shm_init_poll)  # a downgrade does not notify
        finally:
            f.waiters.discard(cond.notify)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _table(self, key: FileKey | None) -> RangeTable | None:
        f = self._files.get(key) if key is not None else None
        return f.table if f is not None else None

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
            gate = AdmissionGate(self.clock, self.settings)
            db = self._dbs[key] = _DatabaseState(key, gate, name=self._names.pop(key, ""))
        return db

    def _classify(self, db: _DatabaseState, f: _FileState, req: LockRequest) -> None:
        if f.role is FileRole.SHM:
            db.sqlite = True
            db.shm = f.key
        elif f.role is FileRole.DATABASE:
            if self.layout.is_pending_byte(req.start, req.end):
                db.sqlite = True
            if not req.readonly:
                db.rw_owners.add(req.owner)
                db.ro_owners.discard(req.owner)
            elif req.owner not in db.rw_owners:
                db.ro_owners.add(req.owner)

    def _holds_any(self, db: _DatabaseState, owner: Owner) -> bool:
        for key in (db.key, db.shm):
            table = self._table(key)
            if table is not None and table.holds(owner):
                return True
        return False

    def _after_release(
        self, f: _FileState, db: _DatabaseState | None, owner: Owner, released_dms: bool = True
    ) -> None:
        for wake in f.waiters:
            wake()
        if db is not None:
            admission = db.gate.admitted
            if admission is not None and admission.owner == owner and self._transaction_over(db, owner):
                if protocol.in_wal_mode(self._table(db.shm), owner):
                    db.wal_ready = True  # a WAL transaction completed: the index is built
                self._end_turn(db, admission)
            ended = self._end_beside(db, owner)
            if ended is not None and ended.learn:
                self._intents.learn(db.key, owner, Intent.READER)
            if (
                f.role is FileRole.SHM
                and released_dms
                and db.wal_ready
                and not protocol.wal_active(self._table(db.shm))
            ):
                # The last connection let go of the -shm: the next one rebuilds the index
                # (recovery), and that must happen inside a turn, not beside one.
                db.wal_ready = False
            if (
                not f.table.holds(owner)
                and (owner in db.ro_owners or owner in db.rw_owners)
                and not self._holds_any(db, owner)
            ):
                db.ro_owners.discard(owner)
                db.rw_owners.discard(owner)
        if not f.table and not f.waiters:
            del self._files[f.key]

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

    # -- observation ---------------------------------------------------------------------------

    @staticmethod
    def _mode(db: _DatabaseState) -> str:
        return "wal" if db.shm is not None else "rollback"

    def snapshot(self) -> list[DatabaseReport]:
        """Per database: who holds the turn, who waits, who reads beside it, and the counters."""
        with self._mu:
            now = self.clock()
            out = []
            live = set()
            for db in self._dbs.values():
                if not db.sqlite and not db.gate.counters.transactions:
                    continue  # a plain file that took a lock: not a database
                gate = db.gate
                holders: dict[Owner, int] = {}
                for key in (db.key, db.shm):
                    table = self._table(key)
                    if table is not None:
                        holders.update(table.pids)
                counters = gate.counters
                if db.name in self._retired:
                    counters = counters.add(self._retired[db.name][1])
                live.add(db.name)
                admitted = gate.admitted
                oldest = min(db.beside.values(), key=lambda b: b.since, default=None)
                out.append(
                    DatabaseReport(
                        database=db.name or f"inode {db.key[1]}",
                        mode=self._mode(db),
                        admitted=None
                        if admitted is None
                        else TurnReport(
                            pid=admitted.pid,
                            seconds=round(now - admitted.since, 3),
                            reserved=admitted.reserved_until is not None,
                            exclusive_first=self._priority_owner(db, now) is not None,
                            tentative=admitted.tentative,
                        ),
                        waiting=[WaiterReport(t.pid, round(now - t.since, 3)) for t in gate.queue],
                        readers=sorted(b.pid for b in db.beside.values()),
                        beside=None
                        if oldest is None
                        else BesideReport(len(db.beside), oldest.pid, round(now - oldest.since, 3)),
                        writers=sorted(holders[o] for o in self._intents.writers(db.key) if o in holders),
                        holders=sorted(set(holders.values())),
                        counters=counters.as_dict(),
                        still_seconds=round(now - gate.moved_at, 3) if gate.queue else None,
                    )
                )
            for name, (mode, counters) in self._retired.items():
                if name not in live:
                    out.append(DatabaseReport(name, mode, None, [], [], None, [], [], counters.as_dict()))
            out.sort(key=lambda d: d.database)
            return out
