"""One SQLite database as the lock core sees it: its turn, the transactions beside it, what each
owner has shown it does, and its counters. It decides the policy for its own requests.

Why turns at all (docs/architecture.md, "Writers take turns, readers run beside"): a transaction
that writes needs a snapshot taken after the previous commit, so writers are serialized at their
snapshot, before they have read anything; readers need no turn. When a transaction takes its
snapshot the daemon cannot know whether it will write, so it goes by what the owner did before
(`Intents`): an owner whose last transaction only read leads the writers in line, and every turn
has a window after which a transaction that has not asked to write, its thread asleep, goes on
beside and the turn passes on.

Every method runs under the lock manager's mutex. The database reads its files' tables through
the manager's registry (`files`) and never changes them: the manager applies every grant and unlock.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from hoodydb.locks import protocol
from hoodydb.locks.files import LockedFile
from hoodydb.locks.gate import Admission, AdmissionGate, GateCounters, OnStall, Reason, Ticket
from hoodydb.locks.intents import Aside, Beside, Intent, Intents
from hoodydb.locks.report import BesideReport, DatabaseReport, OwnerReport, TurnReport, WaiterReport
from hoodydb.locks.settings import LockSettings
from hoodydb.locks.types import FileKey, FileRole, Lock, LockKind, LockRequest, Outcome, Owner, Policy
from hoodydb.locks.waiting import AbortCheck, WaitRoom

log = logging.getLogger("hoodydb.locks.manager")
trace = logging.getLogger("hoodydb.locks.manager.trace")  # every decision, for debugging the protocol


class Database:
    def __init__(
        self,
        key: FileKey,
        settings: LockSettings,
        clock: Callable[[], float],
        room: WaitRoom,
        files: Mapping[FileKey, LockedFile],
        working: Callable[[int], bool | None] | None,
        host_busy: Callable[[], bool],
        name: str = "",
    ) -> None:
        self.key = key
        self.name = name
        self.settings = settings
        self.clock = clock
        self.working = working
        self.host_busy = host_busy
        self.gate = AdmissionGate(clock, settings)
        self.intents = Intents()
        self.beside: dict[Owner, Beside] = {}  # transactions running beside the turn
        self.started_handles: set[int] = set()  # open files that have started a transaction
        self.shm_key: FileKey | None = None
        self.sqlite = False  # has shown SQLite's lock protocol: only then may the gate park requests
        self.wal_ready = False  # WAL mode, and a transaction has run since the -shm was last (re)built
        self.ro_owners: set[Owner] = set()  # its locks only through read-only handles
        self.rw_owners: set[Owner] = set()
        # The admitted owner, while it waits for EXCLUSIVE straight from SHARED (claim_priority).
        self.exclusive_waiter: Owner | None = None
        self._room = room
        self._files = files

    @property
    def dbf(self) -> LockedFile | None:
        return self._files.get(self.key)

    @property
    def shm(self) -> LockedFile | None:
        return self._files.get(self.shm_key) if self.shm_key is not None else None

    @property
    def mode(self) -> str:
        return "wal" if self.shm_key is not None else "rollback"

    @property
    def counters(self) -> GateCounters:
        return self.gate.counters

    @property
    def idle(self) -> bool:
        """Nobody holds or waits for the turn: the database may be forgotten once nobody has it open."""
        return self.gate.admitted is None and not self.gate.waiting

    # -- what a request tells about its owner ---------------------------------------------------

    def classify(self, f: LockedFile, req: LockRequest) -> None:
        if f.role is FileRole.SHM:
            self.sqlite = True
            self.shm_key = f.key
        elif f.role is FileRole.DATABASE:
            if req.locks == Lock.PENDING:
                self.sqlite = True
            if not req.readonly:
                self.rw_owners.add(req.owner)
                self.ro_owners.discard(req.owner)
            elif req.owner not in self.rw_owners:
                self.ro_owners.add(req.owner)

    def note_handle(self, owner: Owner, handle: int) -> None:
        self.intents.note_handle(owner, handle)

    def forget_handle(self, handle: int) -> None:
        self.started_handles.discard(handle)
        self.intents.forget_handle(handle)

    def holds_any(self, owner: Owner) -> bool:
        return any(f is not None and f.holds(owner) for f in (self.dbf, self.shm))

    def starts_transaction(self, f: LockedFile, req: LockRequest) -> bool:
        return protocol.starts_transaction(req, f, self.wal_ready, self.shm)

    def is_write_intent(self, f: LockedFile, req: LockRequest) -> bool:
        return protocol.is_write_intent(req) and (
            req.role is FileRole.DATABASE or f.holds(req.owner, Lock.READ_SLOTS)
        )

    # -- the policy ----------------------------------------------------------------------------

    def start(self, f: LockedFile, req: LockRequest, deadline: float | None, abort: AbortCheck) -> Outcome:
        """A transaction starts: take a turn (with a window, under `beside`) or go beside."""
        if req.owner in self.ro_owners:
            # A read-only open cannot write: it never takes a turn.
            if req.kind is LockKind.READ:
                self._begin_beside(req, Aside.READ_ONLY, learn=False)
            return Outcome.GRANTED
        beside = self.settings.policy is Policy.BESIDE
        if beside:
            reads = not protocol.is_write_start(req) and not self.gate.is_admitted(req.owner)
            if self.intents.of(req.owner) is Intent.READER and reads:
                self._begin_beside(req, Aside.READER, learn=True)
                return Outcome.GRANTED
            predicted = self.intents.predicts_read(req.owner) and not protocol.is_write_start(req)
            if predicted and reads and self.settings.speculative_reads and protocol.is_read_slot(req):
                self._begin_beside(req, Aside.SPECULATIVE, learn=False)
                return Outcome.GRANTED
        ticket = Ticket(
            req.owner,
            req.pid,
            self.clock(),
            # Rule 3: a read slot or DMS asked for with a view of the -shm from before a commit
            # must look again; the WRITE lock makes SQLite re-read it anyway. Not READ0, the slot
            # of a fully checkpointed WAL: refused, SQLite does not look again but reads on a
            # read-mark slot, which keeps the next writer from restarting the WAL. READ0 is
            # granted, and if SQLite finds the index changed and lets go, the turn waits for its
            # retry (`retry_grace`).
            reserve_on_handoff=f.role is FileRole.SHM and req.locks not in (Lock.WRITE, Lock.READ0),
            read0=req.locks == Lock.READ0,
            view=protocol.is_read_slot(req),
            reason=self._reason(req.owner, write_start=protocol.is_write_start(req)),
            window=beside,
            on_stall=self._on_stall(req) if beside else OnStall.WAIT,
        )
        outcome = self._take_turn(ticket, req, deadline, abort)
        if outcome is Outcome.GRANTED:
            self._note_first_transaction(req)
        return outcome

    def probe(self, f: LockedFile, req: LockRequest, deadline: float, abort: AbortCheck) -> None:
        """A new connection asks who holds DMS (F_GETLK), its first step before it maps the -shm.

        In a crowd (`LockSettings.crowd` starts waiting) it waits in line here rather than at
        its read slot, so the waiting clients have not mapped the -shm: each mapping makes every
        writeback of the -shm's pages cost more (the kernel write-protects each dirty page in
        every mapping), and a FUSE shared mapping is written back at every unmap and close.
        Admitted, the turn is kept for its read slot (`reservation`). Whatever the wait's end,
        the probe is answered: it starts no transaction, and its read slot decides."""
        crowd = self.settings.crowd
        if not crowd or self.gate.waiting < crowd or f.holds(req.owner):
            return
        if req.owner in self.ro_owners or req.owner in self.beside or self.gate.is_admitted(req.owner):
            return
        beside = self.settings.policy is Policy.BESIDE
        if beside and self.intents.of(req.owner) is Intent.READER:
            return  # its transactions run beside: nothing to wait for
        ticket = Ticket(
            req.owner,
            req.pid,
            self.clock(),
            reserve_on_handoff=True,
            reason=self._reason(req.owner, write_start=False),
            window=beside,
            on_stall=OnStall.READ_BESIDE if beside else OnStall.WAIT,
        )
        self._take_turn(ticket, req, deadline, abort, start=False)

    def _reason(self, owner: Owner, *, write_start: bool) -> Reason:
        """Where a start of `owner` waits: what its last transaction did decides (`beside`)."""
        if self.settings.policy is not Policy.BESIDE:
            return Reason.WRITER
        if self.intents.predicts_read(owner) and not write_start:
            return Reason.PREDICTED_READER
        return Reason.NEW if self.intents.of(owner) is Intent.NEW else Reason.WRITER

    @staticmethod
    def _on_stall(req: LockRequest) -> OnStall:
        """What a start does if the turn's writer sleeps in its open transaction (WAL only: with
        a rollback journal that writer's locks keep readers out natively too)."""
        if protocol.is_read_slot(req):
            return OnStall.READ_BESIDE
        if req.role is FileRole.SHM and req.locks == Lock.WRITE:
            return OnStall.REFUSE
        return OnStall.WAIT

    def _begin_beside(self, req: LockRequest, why: Aside, *, learn: bool) -> None:
        if req.owner not in self.beside:
            self.beside[req.owner] = Beside(req.pid, self.clock(), learn, why)
            self.gate.counters.beside += 1

    def write_intent(self, req: LockRequest, deadline: float | None, abort: AbortCheck) -> Outcome:
        """RESERVED, or the WAL's WRITE lock inside a transaction: the owner writes.

        From the owner holding the turn this is what the turn is for. From a transaction beside
        it (a reader turned writer, or another connection of a process that reads beside),
        SQLite already holds a snapshot that nobody checked. It takes the turn if nobody holds
        or waits for it. Otherwise, in WAL mode, it waits for the turn in the leading lane and
        SQLite checks its snapshot once it has the WRITE lock: still the latest commit, the write
        goes through; stale, SQLite answers SQLITE_BUSY_SNAPSHOT as natively (and with a busy
        timeout an autocommit statement starts over, the turn held for it meanwhile). With a
        rollback journal it may not wait (the writer holding the turn waits for its SHARED lock
        to commit): "database is locked" at once, as natively."""
        self.intents.learn(req.owner, Intent.WRITER)
        if req.owner in self.ro_owners or self.settings.policy is not Policy.BESIDE:
            return Outcome.GRANTED  # (serial: the writer holds the turn; read-only: SQLite refuses)
        gate = self.gate
        if gate.is_admitted(req.owner):
            gate.writing()
            return Outcome.GRANTED
        self.tick(self.clock())
        if gate.try_enter(req.owner, req.pid, Reason.WRITE_FROM_BESIDE):
            self._room.granted(req.owner)
            outcome = Outcome.GRANTED
        elif req.role is FileRole.DATABASE:
            gate.counters.refused_writes += 1
            return Outcome.BUSY
        else:
            # (Behind a writer asleep in its transaction, refused after reader_patience, as natively.)
            ticket = Ticket(
                req.owner, req.pid, self.clock(), False, Reason.WRITE_FROM_BESIDE, on_stall=OnStall.REFUSE
            )
            outcome = self._take_turn(ticket, req, deadline, abort)
            if outcome is not Outcome.GRANTED:
                return outcome
        gate.counters.writes_from_beside += 1
        self.beside.pop(req.owner, None)
        gate.note_entered(req.owner)  # its snapshot is taken: the transaction is under way
        return outcome

    def tick(self, now: float) -> float | None:
        """Let time-bound turns run out; how long until the next one may."""
        gate = self.gate
        gate.expire(now)
        if gate.window_over(now):
            admission = gate.admitted
            assert admission is not None
            if (self.working is not None and self.working(admission.thread or admission.pid)) or (
                now - admission.since < self.settings.busy_window and self.host_busy()
            ):
                # Starting a write, most likely, on a machine too busy to run it (or to run the
                # program that tells it what to do next): look again soon.
                gate.extend_window(now + self.settings.window / 2)
            # Never while it rebuilds the index or writes: others would run on a half-done state.
            elif not protocol.changes_the_index(self.shm, self.dbf, admission.owner):
                gate.pass_on()
                learn = not admission.first_on_handle
                self.beside[admission.owner] = Beside(
                    admission.pid, admission.since, learn, Aside.WINDOW_PASSED
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
        if (
            gate.stallable_waiting()
            and not admitted.held
            and (
                admitted.window_until is None
                or protocol.changes_the_index(self.shm, self.dbf, admitted.owner)
            )
        ):
            # A writer holds the turn (its window cannot pass it on): others wait for its commit,
            # unless it sleeps in its open transaction (a shell left at `BEGIN; INSERT ...`):
            # then they get native SQLite's answers (`reader_patience`): a read reads beside it,
            # a write is refused.
            since = admitted.asleep_since
            if now - admitted.asleep_looked >= self.settings.window / 2:  # (/proc costs a few syscalls)
                thread = admitted.thread or admitted.pid
                since = gate.note_asleep(now, self.working is not None and self.working(thread) is False)
            if since is not None and now - since >= self._patience():
                trace.debug("pid %d sleeps in its write transaction: readers read beside", admitted.pid)
                gate.release_stalled()
            else:
                moments.append(self.settings.window / 2)  # look again
        return min(moments, default=None)

    def _patience(self) -> float:
        """How long the turn's writer must have slept in its transaction to count as asleep."""
        settings = self.settings
        return settings.busy_patience if self.host_busy() else settings.reader_patience

    def _take_turn(
        self, ticket: Ticket, req: LockRequest, deadline: float | None, abort: AbortCheck, start: bool = True
    ) -> Outcome:
        """Admit the ticket's owner at once if nobody holds or waits for the turn, else wait in line.

        `start`: a transaction start, which reads beside instead where waiting cannot help (not
        a DMS probe: it has no transaction to run)."""
        gate = self.gate
        self.tick(self.clock())
        if gate.try_enter(req.owner, req.pid, ticket.reason, ticket.window):
            self._room.granted(req.owner)
            return Outcome.GRANTED
        waiter = self._room.waiter(req.owner, lambda: set())
        ticket.wake = ticket.on_head = waiter.cond.notify
        gate.enqueue(ticket)

        def blockers() -> set[Owner]:
            # One edge, to the admitted owner: a ticket's wait on those ahead of it becomes an edge
            # when one of them is admitted, and the room looks for cycles then (`granted`).
            admitted = gate.admitted
            # No edge to a held turn, or a client of two databases would be taken for a deadlock.
            if ticket.admitted or admitted is None or admitted.held or admitted.owner == req.owner:
                return set()
            return {admitted.owner}

        head_tick = self.settings.head_tick

        def tick(now: float) -> float | None:
            if not gate.head(ticket):
                return None
            sooner = self.tick(now)
            return head_tick if sooner is None else min(sooner, head_tick)

        waiter.blockers = blockers
        # Behind a queue that moves nobody times out: only a turn that stays with one transaction
        # for the whole lock timeout (a stuck holder) does.
        bound = self.settings.lock_timeout
        progress = None if deadline is None else (lambda: max(deadline, gate.moved_at + bound))
        outcome = self._room.wait(
            waiter, lambda: ticket.admitted or ticket.released is not None, progress, abort, tick
        )
        if ticket.released is OnStall.READ_BESIDE:
            if start:
                self._begin_beside(req, Aside.WRITER_ASLEEP, learn=False)
            return Outcome.GRANTED
        if ticket.released is OnStall.REFUSE:
            gate.counters.refused_writes += 1
            return Outcome.BUSY
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
            if not start:
                return outcome
            if outcome is Outcome.TIMEOUT and protocol.is_read_slot(req):
                # WAL: SQLite retries a refused read slot 100 times, silently, then fails with
                # "locking protocol". Read beside instead: a writer is then refused its WRITE lock
                # ("database is locked", as natively behind a stuck writer), a reader reads.
                self._begin_beside(req, Aside.TIMED_OUT, learn=False)
                return Outcome.GRANTED
            if outcome is Outcome.DEADLOCK and req.role is FileRole.SHM:
                # The holder waits for this owner's locks (a connection switching the database
                # to a rollback journal waits for EXCLUSIVE while the others reopen the WAL):
                # holding it back cannot help, and SQLite would retry a refused WAL start until
                # "locking protocol". It goes on beside, as natively.
                self._begin_beside(req, Aside.CYCLE, learn=False)
                return Outcome.GRANTED
            return outcome
        if ticket.looks_again:
            # EAGAIN makes SQLite re-read the WAL header and ask again; the turn waits for it.
            return Outcome.BUSY
        return Outcome.GRANTED

    def _note_first_transaction(self, req: LockRequest) -> None:
        """Mark an admission that is its connection's first transaction.

        A connection's first transaction is always the schema read of the statement it is
        preparing (BEGIN IMMEDIATE aside, which writes and so never gets the grace below); that
        statement runs right after, as a second transaction. Handing the turn on in between
        would send the client to the back of the queue for it: two turns per statement.
        """
        if req.handle < 0 or req.handle in self.started_handles:
            return
        self.started_handles.add(req.handle)
        self.gate.note_first_on_handle(req.owner)

    def _end_turn(self, admission: Admission) -> None:
        owner = admission.owner
        if admission.held:
            self.gate.leave(owner)  # held for a transaction that did not come (its owner let go)
            return
        # A short read in the turn teaches nothing: an owner that polls with quick reads and then
        # writes (BEGIN IMMEDIATE at busy timeout 0, as task queues do) must keep finding its turn.
        # A schema read (the statement runs right after), or READ0 let go at once for a retry:
        # the turn waits a moment for what follows, and the read teaches nothing.
        prelude = (admission.first_on_handle or admission.retry_grace) and not admission.wrote
        if prelude and self.settings.schema_grace > 0:
            self.gate.hold_for(owner, self.settings.schema_grace)
            return
        if not prelude:
            self.intents.ended(owner, admission.wrote)
        if admission.ends_with_write and protocol.in_transaction(self.dbf, self.shm, owner):
            # Its process reads on (another connection's read slot), or SQLite refused the write
            # of a stale snapshot and its busy handler is about to start over: its retry has no
            # visible start, so the turn waits for it a moment.
            self.gate.hold_for(owner, self.settings.write_retry_grace)
            self.beside[owner] = Beside(admission.pid, self.clock(), False, Aside.AFTER_WRITE)
            return
        self.gate.leave(owner)

    def _transaction_over(self, owner: Owner) -> bool:
        """Rule 4: the admitted owner holds no transaction locks any more. A write from beside
        is over when it lets go of the WRITE lock (its process may read on)."""
        shm = self.shm
        admission = self.gate.admission_of(owner)
        if protocol.in_transaction(self.dbf, shm, owner):
            return (
                admission is not None
                and admission.ends_with_write
                and admission.wrote
                and not (shm is not None and shm.holds(owner, Lock.WRITE))
            )
        if admission is not None and admission.ends_with_write:
            return True  # nothing left: a retry would start with a read slot of its own
        if protocol.in_wal_mode(shm, owner):
            # WAL: the connection keeps SHARED on the database between transactions. The
            # transaction is over once it has held a read slot and let it go again.
            return admission is None or admission.entered
        return True

    def _end_beside(self, owner: Owner) -> Beside | None:
        """Drop the owner's transaction beside the turn if it is over; returns what it was."""
        beside = self.beside.get(owner)
        if beside is None or protocol.in_transaction(self.dbf, self.shm, owner):
            return None
        del self.beside[owner]
        return beside

    # -- what the manager tells it --------------------------------------------------------------

    def granted(self, f: LockedFile, req: LockRequest) -> None:
        """`req` was granted: what it tells about the admitted owner's transaction."""
        owner = req.owner
        wal_write = f.role is FileRole.SHM and req.kind is LockKind.WRITE and Lock.WRITE in req.locks
        if wal_write:
            self.gate.index_write(held=True)
        if not self.gate.is_admitted(owner):
            return
        self.gate.note_thread(owner, req.pid)
        if f.role is FileRole.DATABASE:
            if req.kind is LockKind.WRITE:
                self.gate.note_write(owner)
                self.intents.learn(owner, Intent.WRITER)
        elif f.role is FileRole.SHM:
            if wal_write:
                self.gate.note_entered(owner)
                # Inside a transaction (a read slot held) WRITE means a write; before one it is
                # the index being rebuilt (recovery), which any reader may have to do.
                if f.holds(owner, Lock.READ_SLOTS):
                    self.gate.note_write(owner)
                    self.intents.learn(owner, Intent.WRITER)
            elif req.kind is LockKind.READ and req.locks & Lock.READ_SLOTS:
                self.gate.note_entered(owner)

    def released(self, f: LockedFile, owner: Owner, locks: Lock) -> None:
        """`owner` let go of `locks` on `f` (an unlock, a close, a dropped file)."""
        if f.role is FileRole.SHM and Lock.WRITE in locks:
            self.gate.index_write(held=f.held_by_anyone(Lock.WRITE))
        admission = self.gate.admission_of(owner)
        if admission is not None and self._transaction_over(owner):
            if protocol.in_wal_mode(self.shm, owner):
                self.wal_ready = True  # a WAL transaction completed: the index is built
            self._end_turn(admission)
        ended = self._end_beside(owner)
        if ended is not None:
            if ended.why is not Aside.AFTER_WRITE:  # (that one ended with a write)
                self.intents.ended(owner, wrote=False)
            if ended.learn:
                self.intents.learn(owner, Intent.READER)
        if (
            f.role is FileRole.SHM
            and Lock.DMS in locks
            and self.wal_ready
            and not protocol.wal_active(self.shm)
        ):
            # The last connection let go of the -shm: the next one rebuilds the index
            # (recovery), and that must happen inside a turn, not beside one.
            self.wal_ready = False
        if (
            not f.table.holds(owner)
            and (owner in self.ro_owners or owner in self.rw_owners)
            and not self.holds_any(owner)
        ):
            self.ro_owners.discard(owner)
            self.rw_owners.discard(owner)

    def refused(self, owner: Owner) -> None:
        """`owner` was refused a lock: make sure no turn or beside entry stays stuck with it."""
        self._end_beside(owner)
        admission = self.gate.admission_of(owner)
        if admission is None:
            return
        if self._transaction_over(owner) or (admission.ends_with_write and not admission.wrote):
            self.gate.leave(owner)
        elif (
            not admission.entered
            and admission.reserved_until is None
            and protocol.in_wal_mode(self.shm, owner)
        ):
            # A WAL client refused before its read slot retries at once; one that does not come
            # back (gave up, crashed) must not keep everyone else waiting for the full bound.
            self.gate.reserve(owner)

    def closed(self) -> None:
        """The database file's last handle was released: a grace for a connection that closed ends."""
        admission = self.gate.admitted
        if admission is not None and admission.held:
            self.gate.leave(admission.owner)

    # -- may a request wait ---------------------------------------------------------------------

    def may_wait(self, f: LockedFile, req: LockRequest) -> bool:
        """May a conflicting request wait here rather than be refused at once (it cannot close a cycle)?"""
        if not self.sqlite or protocol.is_mark_write(req):
            return False
        if protocol.is_recover_probe(req):
            return True
        admission = self.gate.admission_of(req.owner)
        if admission is not None and not admission.held:
            return True
        if protocol.waits_only_for_marks(f, req):
            return True
        # A held turn is for starting a transaction, not for waiting inside one: a connection
        # that closes in its grace tries EXCLUSIVE and must fail at once.
        return not self.holds_any(req.owner)

    # -- EXCLUSIVE straight from SHARED --------------------------------------------------------

    def claim_priority(self, req: LockRequest, spans: list[tuple[int, int]]) -> bool:
        """The admitted owner is about to wait for EXCLUSIVE straight from SHARED: let it go first.

        SQLite 3.42 and later take that step (rolling back a hot journal) without the PENDING
        byte, so nothing keeps new readers from taking SHARED meanwhile, and readers that keep
        overlapping would hold the range until the lock timeout. While the owner waits,
        newcomers' first step to SHARED waits behind it; only for a while in each turn, because
        readers that stay would keep it waiting anyway.
        """
        if len(spans) != 2 or req.kind is not LockKind.WRITE:
            return False  # (two spans: the database's SHARED range, asked without PENDING)
        if not self.gate.claim_priority(req.owner, self.clock()):
            return False
        self.exclusive_waiter = req.owner
        return True

    def end_priority(self, owner: Owner) -> bool:
        """`owner` stops waiting for its EXCLUSIVE; True if newcomers were held behind it."""
        if self.exclusive_waiter != owner:
            return False
        self.exclusive_waiter = None
        return True

    def yields_to(self, f: LockedFile, req: LockRequest) -> Owner | None:
        """The owner waiting for EXCLUSIVE that this newcomer's first step to SHARED waits behind."""
        if (
            req.kind is not LockKind.READ
            or f.role is not FileRole.DATABASE
            or req.locks != Lock.PENDING
            or f.holds(req.owner)
        ):
            return None
        waiter = self._priority_owner(self.clock())
        return None if waiter == req.owner else waiter

    def _priority_owner(self, now: float) -> Owner | None:
        """The owner newcomers wait behind now, if any: admitted, waiting for EXCLUSIVE, in time."""
        waiter = self.exclusive_waiter
        return waiter if waiter is not None and self.gate.has_priority(waiter, now) else None

    # -- observation ---------------------------------------------------------------------------

    def report(self, now: float, history: GateCounters | None = None) -> DatabaseReport:
        """What `hoodydb locks` shows; `history`: counters of earlier files of the same name."""
        gate = self.gate
        holders: dict[Owner, int] = {}
        for f in (self.dbf, self.shm):
            if f is not None:
                holders.update(f.table.pids)
        counters = gate.counters if history is None else gate.counters.add(history)
        admitted = gate.admitted
        turn = None
        owners: dict[Owner, OwnerReport] = {}
        if admitted is not None:
            why = "writing" if admitted.wrote else admitted.reason.value
            turn = TurnReport(
                pid=admitted.pid,
                seconds=round(now - admitted.since, 3),
                reserved=admitted.reserved_until is not None,
                exclusive_first=self._priority_owner(now) is not None,
                why=why,
                window=admitted.window_until is not None,
            )
            owners[admitted.owner] = OwnerReport(admitted.pid, "turn", why, turn.seconds)
        waiting = [WaiterReport(t.pid, round(now - t.since, 3), t.reason.value) for t in gate.queue]
        for t, w in zip(gate.queue, waiting, strict=True):
            owners.setdefault(t.owner, OwnerReport(w.pid, "waiting", w.why, w.seconds))
        for owner, b in self.beside.items():
            owners.setdefault(owner, OwnerReport(b.pid, "beside", b.why.value, round(now - b.since, 3)))
        for owner, pid in holders.items():
            owners.setdefault(owner, OwnerReport(pid, "idle", "", 0.0))
        oldest = min(self.beside.values(), key=lambda b: b.since, default=None)
        shown = counters.as_dict()
        if admitted is not None:  # the running turn too, so that the count moves while it lasts
            shown["turn_seconds"] += now - admitted.since
        return DatabaseReport(
            database=self.name or f"inode {self.key[1]}",
            mode=self.mode,
            admitted=turn,
            waiting=waiting,
            readers=sorted(b.pid for b in self.beside.values()),
            beside=None
            if oldest is None
            else BesideReport(len(self.beside), oldest.pid, round(now - oldest.since, 3)),
            writers=sorted(holders[o] for o in self.intents.writers() if o in holders),
            holders=sorted(set(holders.values())),
            counters=shown,
            still_seconds=round(now - gate.moved_at, 3) if gate.waiting else None,
            owners=sorted(owners.values(), key=lambda o: (o.state, o.pid)),
        )
