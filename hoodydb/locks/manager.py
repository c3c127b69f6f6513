"""The lock manager: the mutex, the registry of locked files and databases, and the entry points.

No FUSE here: the adapter turns each lock request into a named `LockRequest`, calls `setlk` or
`getlk`, and turns the `Outcome` into an errno (fs/answers.py). The manager applies POSIX
semantics to each file's table (`LockedFile`) and asks the file's `Database` for the policy: does
the request start a transaction (a turn, a window or beside), announce a write, may it wait.
Everything runs under one mutex, `_mu`.

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

from hoodydb.locks import protocol
from hoodydb.locks.database import Database, log, trace
from hoodydb.locks.files import LockedFile
from hoodydb.locks.gate import GateCounters
from hoodydb.locks.report import DatabaseReport
from hoodydb.locks.settings import LockSettings
from hoodydb.locks.types import (
    Conflict,
    FileKey,
    FileRole,
    Lock,
    LockKind,
    LockRequest,
    Outcome,
    Owner,
    Policy,
)
from hoodydb.locks.waiting import AbortCheck, WaitRoom, never

ALL_LOCKS = ~Lock.NONE
RETIRED_NAMES = 1024  # counters kept for databases that nobody has open, by path
OPEN_NAMES = 65536  # paths of open files that took no lock yet (bounded by open files anyway)


class LockManager:
    def __init__(
        self,
        settings: LockSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        working: Callable[[int], bool | None] | None = None,
        host_busy: Callable[[], bool] | None = None,
    ) -> None:
        """`working(pid)`: is that client thread still busy (runnable, or waiting for us)? A window
        does not pass the turn on while it is. `host_busy()`: are more threads runnable than there
        are CPUs (`LockSettings.busy_window`)? The adapter asks the kernel (fs/activity.py)."""
        self.settings = settings = settings or LockSettings()
        self.layout = settings.layout
        self.clock = clock
        self.working = working
        self.host_busy = host_busy or (lambda: False)
        self._mu = threading.Lock()
        self._room = WaitRoom(self._mu, clock, settings)
        self._files: dict[FileKey, LockedFile] = {}
        self._dbs: dict[FileKey, Database] = {}
        self._names: dict[FileKey, str] = {}  # open files that may be databases, until they lock
        self._handles: dict[int, FileKey] = {}  # open files that locked as part of a database: which
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
            return sum(db.gate.waiting for db in self._dbs.values())

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
                "intents": sum(len(db.intents) for db in self._dbs.values()),
                "handles": len(self._handles),
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
            if f.role is FileRole.SHM and req.locks == Lock.DMS and self.policy is not Policy.OFF:
                db = self._dbs.get(req.db) if req.db is not None else None
                if db is not None:
                    db.probe(f, req, self.clock() + self.settings.lock_timeout, abort)
                self._wait_out_shm_init(f, req.owner, abort)
            found = f.table.first_conflict(req.owner, req.start, req.end, req.kind)
            if found is None:
                return None
            other, seg = found
            return Conflict(seg.kind, seg.start, seg.end, f.table.pids.get(other, 0))

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
            key = self._handles.pop(handle, None)
            db = self._dbs.get(key) if key is not None else None
            if db is not None:
                db.forget_handle(handle)

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
            db.closed()
            if db.idle:
                self._retire(db)

    def shutdown(self) -> None:
        """The daemon is exiting: every waiting request gives up."""
        with self._mu:
            self._room.shutdown()
            for f in self._files.values():
                f.wake_waiters()

    # -- a lock or an unlock -------------------------------------------------------------------

    def _unlock(self, req: LockRequest) -> Outcome:
        unlocked = self._files.get(req.file)
        if unlocked is None:
            return Outcome.GRANTED  # nobody holds a lock on the file, so nobody waits on it either
        unlocked.table.set(req.owner, req.start, req.end, LockKind.UNLOCK)
        db = self._dbs.get(req.db) if req.db is not None else None
        self._after_release(unlocked, db, req.owner, req.locks)
        return Outcome.GRANTED

    def _lock(self, req: LockRequest, abort: AbortCheck) -> Outcome:
        f = self._files.get(req.file)
        if f is None or f.db != req.db:
            f = self._file(req)
        db = self._database(req.db) if req.db is not None else None
        deadline = None if req.wait else self.clock() + self.settings.lock_timeout
        if db is not None:
            db.classify(f, req)
        if db is not None and self.policy is not Policy.OFF:
            if db.starts_transaction(f, req):
                self._note_handle(db, req)
                outcome = db.start(f, req, deadline, abort)
                if outcome is not Outcome.GRANTED:
                    log.debug("turn refused %s (%s)", req, outcome.value)
                    return outcome
                # While this request waited, the file's state may have been emptied and
                # discarded by the previous holder's unlock: take the live one.
                if self._files.get(req.file) is not f:
                    f = self._file(req)
            elif db.is_write_intent(f, req):
                self._note_handle(db, req)
                outcome = db.write_intent(req, deadline, abort)
                if outcome is not Outcome.GRANTED:
                    log.debug("write refused %s: another writer has the turn", req)
                    return outcome
        outcome = self._acquire(f, db, req, deadline, abort)
        if outcome is not Outcome.GRANTED:
            if db is not None:
                db.refused(req.owner)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("refused %s (%s) holders=%s", req, outcome.value, dict(f.table.pids))
        return outcome

    def _note_handle(self, db: Database, req: LockRequest) -> None:
        if req.handle >= 0:
            self._handles[req.handle] = db.key
            db.note_handle(req.owner, req.handle)

    # -- POSIX acquisition ---------------------------------------------------------------------

    def _acquire(
        self, f: LockedFile, db: Database | None, req: LockRequest, deadline: float | None, abort: AbortCheck
    ) -> Outcome:
        gated = db is not None and db.sqlite and self.policy is not Policy.OFF and f.role is FileRole.DATABASE
        spans = protocol.spans(req, f) if gated else [(req.start, req.end)]
        table, owner, kind = f.table, req.owner, req.kind
        if not any(table.blocks(owner, start, end, kind) for start, end in spans):
            if db is None or db.exclusive_waiter is None or db.yields_to(f, req) is None:
                self._grant(f, db, req)
                return Outcome.GRANTED
            # Only the courtesy holds it back: it ends by itself, so it is no edge of the
            # wait-for graph and never a reason to refuse; nor to crowd out real waiters.
            if not self._may_wait(f, db, req) or not self._room.has_room(0.5):
                self._grant(f, db, req)
                return Outcome.GRANTED
        elif not self._may_wait(f, db, req) or (f.role is FileRole.SHM and req.locks == Lock.DMS):
            # (A DMS conflict means another connection got there first: SQLite looks again
            # with F_GETLK and joins it, so waiting for that connection to close is wrong.)
            return Outcome.BUSY

        def blockers() -> set[Owner]:
            return {other for start, end in spans for other, _ in table.conflicts(owner, start, end, kind)}

        def done() -> bool:
            return not blockers() and (db is None or db.yields_to(f, req) is None)

        if deadline is not None and protocol.waits_only_for_marks(f, req):
            # A mark is moved in a moment; one held longer is a checkpoint resetting the WAL (a
            # TRUNCATE holds READ0 while it works): SQLite then reads another way, as natively.
            deadline = min(deadline, self.clock() + self.settings.reader_patience)
        waiter = self._room.waiter(req.owner, blockers)
        claimed = db is not None and db.claim_priority(req, spans)
        f.waiters.add(waiter.cond.notify)
        try:
            tick = None if db is None else db.tick
            until = None if deadline is None else (lambda: deadline)
            outcome = self._room.wait(waiter, done, until, abort, tick)
        finally:
            f.waiters.discard(waiter.cond.notify)
            if claimed and db is not None and db.end_priority(req.owner):
                f.wake_waiters()  # the newcomers held behind it go on
        if outcome is Outcome.GRANTED:
            self._grant(f, db, req)
        return outcome

    def _may_wait(self, f: LockedFile, db: Database | None, req: LockRequest) -> bool:
        if req.wait:
            return True
        if self.policy is Policy.OFF or db is None:
            return False
        return db.may_wait(f, req)

    def _grant(self, f: LockedFile, db: Database | None, req: LockRequest) -> None:
        f.table.set(req.owner, req.start, req.end, req.kind, req.pid)
        self._room.granted(req.owner)
        if db is not None:
            db.granted(f, req)

    def _wait_out_shm_init(self, f: LockedFile, owner: Owner, abort: AbortCheck) -> None:
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
            while f.conflicts(owner, Lock.DMS, LockKind.READ):
                if self._room.closing or abort() or self.clock() >= deadline:
                    return
                cond.wait(self.settings.shm_init_poll)  # a downgrade does not notify
        finally:
            f.waiters.discard(cond.notify)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _file(self, req: LockRequest) -> LockedFile:
        f = self._files.get(req.file)
        if f is None:
            f = self._files[req.file] = LockedFile(req.file, req.role, req.db, self.layout)
        elif f.db != req.db:
            f.db = req.db  # a recreated -shm may get the inode of an old file
        return f

    def _database(self, key: FileKey) -> Database:
        db = self._dbs.get(key)
        if db is None:
            db = self._dbs[key] = Database(
                key,
                self.settings,
                self.clock,
                self._room,
                self._files,
                self.working,
                self.host_busy,
                self._names.pop(key, ""),
            )
        return db

    def _after_release(
        self, f: LockedFile, db: Database | None, owner: Owner, released: Lock = ALL_LOCKS
    ) -> None:
        """`owner` let go of `released` on `f` (everything it held, when its file was dropped)."""
        f.wake_waiters()
        if db is not None:
            db.released(f, owner, released)
        if not f.table and not f.waiters:
            del self._files[f.key]

    def _retire(self, db: Database) -> None:
        """Nobody has the database open: forget its inode (it may be deleted and the inode
        reused), keep its counters under its name."""
        del self._dbs[db.key]
        if not db.name:
            return
        _, before = self._retired.pop(db.name, ("", GateCounters()))
        self._retired[db.name] = (db.mode, before.add(db.counters))
        while len(self._retired) > RETIRED_NAMES:
            del self._retired[next(iter(self._retired))]

    # -- observation ---------------------------------------------------------------------------

    def snapshot(self) -> list[DatabaseReport]:
        """Per database: who holds the turn, who waits, who reads beside it, and the counters."""
        with self._mu:
            now = self.clock()
            out = []
            live = set()
            for db in self._dbs.values():
                if not db.sqlite and not db.counters.transactions:
                    continue  # a plain file that took a lock: not a database
                live.add(db.name)
                history = self._retired[db.name][1] if db.name in self._retired else None
                out.append(db.report(now, history))
            for name, (mode, counters) in self._retired.items():
                if name not in live:
                    out.append(DatabaseReport(name, mode, None, [], [], None, [], [], counters.as_dict()))
            out.sort(key=lambda d: d.database)
            return out
