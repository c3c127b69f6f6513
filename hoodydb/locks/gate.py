"""The admission gate of one database: one turn at a time, direct hand-off, two lanes.

Pure bookkeeping, no threads and no I/O: the lock manager asks it who may run and tells it when a
transaction ends; it answers which waiting ticket to wake. Tickets wait in one of two lanes:
writers, in arrival order, and a leading lane for transactions expected to be short (a predicted
reader) or already under way (a write from beside the turn). Turns go in arrival order, with a
head start of `reader_lead` for the leading lane: a read from a read-write connection waits for
the transaction holding the turn and the writers that arrived well before it, not for those
just ahead of it, and a writer is passed over by `reader_lead` at most. Invariants:
- at most one owner is admitted;
- every waiting ticket belongs to an owner that is not admitted;
- a reservation (the "WAL retry" rule in docs/architecture.md, or a grace) belongs to the admitted
  owner and ends when used or expired;
- a window (policy `beside`) belongs to an admission that has not written. The manager decides when
  it has run out (`window_over`) and calls `pass_on`.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hoodydb.locks.settings import LockSettings
from hoodydb.locks.types import Owner


class OnStall(enum.Enum):
    """What a waiting start does when the turn's writer sleeps in its open transaction."""

    WAIT = "wait"  # for the commit (rollback journal; DMS)
    READ_BESIDE = "read beside"  # a WAL read slot: read beside it, as natively
    REFUSE = "refuse"  # a WAL WRITE-lock start (a checkpoint): EAGAIN, SQLite's busy handler


class Reason(enum.Enum):
    """Why an owner holds, or waits for, the turn (`hoodydb locks` shows it)."""

    NEW = "new"  # nothing known of the owner yet
    WRITER = "writer"  # its last transaction wrote
    PREDICTED_READER = "predicted reader"  # its last transaction only read: it leads
    WRITE_FROM_BESIDE = "write from beside"  # a transaction beside the turn asked to write: it leads

    @property
    def leads(self) -> bool:
        return self in (Reason.PREDICTED_READER, Reason.WRITE_FROM_BESIDE)


@dataclass(eq=False, slots=True)
class Ticket:
    """One transaction start waiting for its turn."""

    owner: Owner
    pid: int
    since: float
    reserve_on_handoff: bool  # WAL read slot: answer EAGAIN and hold the turn for the retry
    reason: Reason = Reason.WRITER
    window: bool = False  # its turn is a window (policy `beside`)
    on_stall: OnStall = OnStall.WAIT  # if the turn's writer sleeps in its transaction (`release_stalled`)
    read0: bool = False  # a WAL read start on READ0: granted on hand-off with a retry grace instead
    # A WAL read start (its request carries a view of the WAL index): on hand-off `current` says
    # whether that view can still be the index's, and then it is granted as it asked.
    view: bool = False
    current: bool = False
    wake: Callable[[], None] = lambda: None  # it is admitted
    on_head: Callable[[], None] = lambda: None  # it became first in the queue (`AdmissionGate.head`)
    admitted: bool = False
    released: OnStall | None = None  # let go by `release_stalled`, to do this instead

    @property
    def looks_again(self) -> bool:
        """Admitted, is it answered EAGAIN (and its turn held) so that SQLite reads the WAL
        index again? Not if its view is still current."""
        return self.reserve_on_handoff and not self.current


@dataclass(slots=True)
class Admission:
    owner: Owner
    pid: int
    since: float
    reserved_until: float | None = None
    entered: bool = False  # WAL: has held a read slot or the WRITE lock during this admission
    wrote: bool = False  # has held a write lock of a write transaction (RESERVED and up, WAL WRITE)
    first_on_handle: bool = False  # started by a connection's first transaction: its schema read
    # READ0 granted on hand-off with no second look: if SQLite finds the WAL index changed it lets
    # go and asks again at once, and the turn waits for it a moment (`Database._end_turn`).
    retry_grace: bool = False
    priority_until: float | None = None  # newcomers wait behind its EXCLUSIVE until then (manager)
    reason: Reason = Reason.WRITER
    window_until: float | None = None  # a turn that has not written may pass on then (`beside`)
    ends_with_write: bool = False  # a write from beside: the turn ends when its WRITE lock goes
    asleep_since: float | None = None  # its thread was first seen asleep (while readers waited)
    asleep_looked: float = float("-inf")  # when its thread was last looked at
    thread: int = 0  # the client thread of its latest granted lock: the one to watch (0: `pid`)

    @property
    def held(self) -> bool:
        """Kept for the owner between transactions (a grace, a WAL hand-off's retry): it ends by
        itself, so it gives no right to wait and is no edge of the wait-for graph."""
        return self.reserved_until is not None


@dataclass(slots=True)
class GateCounters:
    transactions: int = 0  # admissions granted
    waits: int = 0  # transaction starts that had to queue
    timeouts: int = 0  # queued starts answered EAGAIN at the wait bound
    interrupts: int = 0  # queued starts whose client was interrupted (signal, kill)
    victims: int = 0  # queued starts refused to break a wait-for cycle
    passed_on: int = 0  # turns that had not written in their window: they went on beside
    beside: int = 0  # transactions of readers that ran beside the turn (policy `beside`)
    led: int = 0  # turns given to the leading lane while writers waited
    writes_from_beside: int = 0  # transactions beside the turn that asked to write and took it
    # writes from beside refused (rollback journal: another writer had the turn), and WAL WRITE-lock
    # starts refused behind a writer asleep in its transaction (`reader_patience`)
    refused_writes: int = 0
    refused_full: int = 0  # starts refused at once: as many requests were parked as the daemon allows
    expired_reservations: int = 0
    granted_as_asked: int = 0  # WAL read starts admitted after waiting with their view current
    wait_seconds: float = 0.0
    # How long the turn was held, summed over the turns that ended (graces and reservations
    # included: nobody else could have it; the report adds the running turn). Over a stretch of
    # time: how busy the turn was, and so whether the database's one-at-a-time turn is what its
    # clients wait for.
    turn_seconds: float = 0.0
    max_queue: int = 0

    def add(self, other: GateCounters) -> GateCounters:
        """The sum of two histories of one database (its file was replaced by a new inode)."""
        total = GateCounters(**{name: getattr(self, name) + getattr(other, name) for name in self.__slots__})
        total.max_queue = max(self.max_queue, other.max_queue)
        return total

    def as_dict(self) -> dict[str, float | int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class AdmissionGate:
    clock: Callable[[], float]
    settings: LockSettings = field(default_factory=LockSettings)
    admitted: Admission | None = None
    writers: deque[Ticket] = field(default_factory=deque)  # in arrival order
    leading: deque[Ticket] = field(default_factory=deque)  # predicted readers, writes from beside
    counters: GateCounters = field(default_factory=GateCounters)
    moved_at: float = 0.0  # when the turn last went to a transaction: queued waits are bound from it
    # How many tickets each waiting owner has: several when threads of one process wait. A
    # hand-off wakes them all, and looks through the lanes only for such an owner.
    _tickets: dict[Owner, int] = field(default_factory=dict)
    _stallable: int = 0  # waiting tickets that do not wait for a sleeping writer (`release_stalled`)
    # The WAL index changes only under the -shm's WRITE lock: when it was last taken or let go,
    # and whether it is held now (`index_write`).
    index_moved_at: float = float("-inf")
    index_writing: bool = False

    @property
    def queue(self) -> list[Ticket]:
        """Every waiting ticket, the leading lane first."""
        return [*self.leading, *self.writers]

    @property
    def waiting(self) -> int:
        return len(self.leading) + len(self.writers)

    def try_enter(self, owner: Owner, pid: int, reason: Reason = Reason.WRITER, window: bool = False) -> bool:
        """Admit `owner` if it already holds the turn, or if nobody holds or waits for it.

        `window`: its turn may pass on if it has not written when the window runs out."""
        now = self.clock()
        self.expire(now)
        current = self.admission_of(owner)
        if current is not None:
            current.reserved_until = None
            current.reason = reason
            current.ends_with_write = reason is Reason.WRITE_FROM_BESIDE  # a transaction of its own
            self._open_window(current, now, window)
            self.moved_at = now
            if current.window_until is not None:
                self.wake_head()  # a new timed moment for the head to keep
            return True
        if self.admitted is None and not self.waiting:
            self.admitted = Admission(
                owner, pid, now, reason=reason, ends_with_write=reason is Reason.WRITE_FROM_BESIDE
            )
            self.moved_at = now
            self._open_window(self.admitted, now, window)
            self.counters.transactions += 1
            return True
        return False

    def index_write(self, held: bool) -> None:
        """The -shm's WRITE lock was granted (`held`) or let go: the WAL index may change."""
        self.index_moved_at = self.clock()
        self.index_writing = held

    def _view_is_current(self, ticket: Ticket) -> bool:
        """Can the WAL index still be as the ticket's start saw it (`LockSettings.view_age`)?"""
        return (
            ticket.view
            and not self.index_writing
            and self.index_moved_at < ticket.since - self.settings.view_age
        )

    def _open_window(self, admission: Admission, now: float, window: bool) -> None:
        admission.window_until = now + self.settings.window if window and not admission.wrote else None

    def writing(self) -> None:
        """The admitted owner asked to write: its turn is no window any more, and a turn held for
        it (a grace) is in use again."""
        if self.admitted is not None:
            self.admitted.window_until = None
            self.admitted.reserved_until = None

    def window_over(self, now: float) -> bool:
        """The admitted owner's window ran out without a write: the manager may pass the turn on."""
        current = self.admitted
        return (
            current is not None
            and current.window_until is not None
            and current.reserved_until is None
            and not current.wrote
            and now >= current.window_until
        )

    def extend_window(self, until: float) -> None:
        if self.admitted is not None and self.admitted.window_until is not None:
            self.admitted.window_until = until

    def pass_on(self) -> Admission | None:
        """End the admitted owner's turn although its transaction goes on (beside, as a reader)."""
        current = self.admitted
        if current is None:
            return None
        self.counters.passed_on += 1
        self._end(current)
        self._hand_off()
        return current

    def is_admitted(self, owner: Owner) -> bool:
        return self.admitted is not None and self.admitted.owner == owner

    def admission_of(self, owner: Owner) -> Admission | None:
        """The admission, if `owner` holds the turn."""
        current = self.admitted
        return current if current is not None and current.owner == owner else None

    # What the admitted owner did in its turn (the manager sees its locks granted).

    def note_entered(self, owner: Owner) -> None:
        """It took a read slot or the WRITE lock: its WAL transaction is under way."""
        current = self.admission_of(owner)
        if current is not None:
            current.entered = True

    def note_write(self, owner: Owner) -> None:
        """It took a write transaction's lock (RESERVED and up, the WAL's WRITE in a transaction)."""
        current = self.admission_of(owner)
        if current is not None:
            current.wrote = True
            current.window_until = None

    def note_first_on_handle(self, owner: Owner) -> None:
        """Its turn is its connection's first transaction: the schema read of a statement."""
        current = self.admission_of(owner)
        if current is not None:
            current.first_on_handle = True

    def reserve(self, owner: Owner) -> None:
        """Keep the turn for its retry (a WAL client refused before its read slot comes back at
        once), but only for a while: one that never comes back must not hold everyone."""
        self.hold_for(owner, self.settings.reservation)

    def claim_priority(self, owner: Owner, now: float) -> bool:
        """It is about to wait for EXCLUSIVE straight from SHARED: may newcomers be held behind it?
        Yes for a while in each turn (`exclusive_priority`), never in a held turn."""
        current = self.admission_of(owner)
        if current is None or current.held:
            return False
        if current.priority_until is None:
            current.priority_until = now + self.settings.exclusive_priority
        return now < current.priority_until

    def has_priority(self, owner: Owner, now: float) -> bool:
        """Does `owner` hold the turn with its EXCLUSIVE priority still running?"""
        current = self.admission_of(owner)
        return current is not None and current.priority_until is not None and now < current.priority_until

    def note_thread(self, owner: Owner, tid: int) -> None:
        """A lock of the admitted owner was granted to thread `tid`: the one its transaction runs
        on now (Go moves a goroutine between threads)."""
        current = self.admission_of(owner)
        if current is not None and tid > 0:
            current.thread = tid

    def note_asleep(self, now: float, asleep: bool) -> float | None:
        """The holder's thread was seen asleep (or not): since when it has been, if it is. Looks
        more than a window apart do not make one sleep: what happened in between is unknown."""
        current = self.admitted
        if current is None:
            return None
        if not asleep:
            current.asleep_since = None
        elif current.asleep_since is None or now - current.asleep_looked > self.settings.window:
            current.asleep_since = now
        current.asleep_looked = now
        return current.asleep_since

    # -- the lanes -----------------------------------------------------------------------------

    def stallable_waiting(self) -> bool:
        """Is a start waiting that need not wait for a writer asleep in its transaction?"""
        return self._stallable > 0

    def release_stalled(self) -> list[Ticket]:
        """The turn's writer sleeps in its open transaction: let go every start that need not
        wait for it (`Ticket.on_stall`)."""
        released = []
        for lane in (self.leading, self.writers):
            kept = []
            for t in lane:
                if t.on_stall is not OnStall.WAIT:
                    t.released = t.on_stall
                    released.append(t)
                    self._forget_one(t.owner)
                else:
                    kept.append(t)
            lane.clear()
            lane.extend(kept)
        self._stallable = 0
        for t in released:
            self.counters.wait_seconds += self.clock() - t.since
            t.wake()
        self.wake_head()
        return released

    def enqueue(self, ticket: Ticket) -> None:
        self._tickets[ticket.owner] = self._tickets.get(ticket.owner, 0) + 1
        self._stallable += ticket.on_stall is not OnStall.WAIT
        self._lane(ticket).append(ticket)
        self.counters.waits += 1
        self.counters.max_queue = max(self.counters.max_queue, self.waiting)

    def cancel(self, ticket: Ticket) -> list[Ticket]:
        """Withdraw a waiting ticket (timeout, interrupt); returns the tickets woken, if any."""
        lane = self._lane(ticket)
        if ticket in lane:
            head = self.head(ticket)
            lane.remove(ticket)
            self._forget_one(ticket.owner)
            self._stallable -= ticket.on_stall is not OnStall.WAIT
            if head:
                self.wake_head()  # the new head keeps the gate's time
        self.counters.wait_seconds += self.clock() - ticket.since
        if self.admitted is None:
            return self._hand_off()
        return []

    def leave(self, owner: Owner) -> list[Ticket]:
        """The transaction of `owner` is over: give the turn to the next in line."""
        current = self.admission_of(owner)
        if current is None:
            return []
        self._end(current)
        return self._hand_off()

    def _end(self, admission: Admission) -> None:
        self.counters.turn_seconds += self.clock() - admission.since
        self.admitted = None

    def hold_for(self, owner: Owner, seconds: float) -> None:
        """Keep the turn of `owner`, between two of its transactions, for `seconds` at most."""
        current = self.admission_of(owner)
        if current is not None:
            current.entered = current.first_on_handle = current.retry_grace = current.wrote = False
            current.reserved_until = self.clock() + seconds
            self.wake_head()  # it sleeps until the hold runs out

    def expire(self, now: float) -> list[Ticket]:
        """End a reservation that was not used in time (its client went away or gave up)."""
        current = self.admitted
        if current is None or current.reserved_until is None or now < current.reserved_until:
            return []
        self.counters.expired_reservations += 1
        return self.leave(current.owner)

    def _lane(self, ticket: Ticket) -> deque[Ticket]:
        return self.leading if ticket.reason.leads else self.writers

    def _forget_one(self, owner: Owner) -> None:
        left = self._tickets.get(owner, 0) - 1
        if left > 0:
            self._tickets[owner] = left
        else:
            self._tickets.pop(owner, None)

    def _next_lane(self) -> deque[Ticket]:
        """Arrival order, with a head start of `reader_lead` for the leading lane: its first ticket
        goes ahead of writers that arrived less than that before it. (Not "ahead of writers that
        have waited less": in a long queue the first writer has always waited longer, and the
        leading lane would starve.)"""
        if not self.leading:
            return self.writers
        if self.writers and self.writers[0].since + self.settings.reader_lead < self.leading[0].since:
            return self.writers
        return self.leading

    def _hand_off(self) -> list[Ticket]:
        """Admit the next ticket's owner and wake its tickets (several when threads of one process wait)."""
        if not self.waiting:
            return []
        now = self.clock()
        lane = self._next_lane()
        if lane is self.leading and self.writers:
            self.counters.led += 1
        head = lane.popleft()
        self.moved_at = now
        head.current = self._view_is_current(head)
        self.counters.granted_as_asked += head.current
        self.admitted = Admission(
            head.owner,
            head.pid,
            now,
            reserved_until=now + self.settings.reservation if head.looks_again else None,
            reason=head.reason,
            ends_with_write=head.reason is Reason.WRITE_FROM_BESIDE,
            retry_grace=head.read0 and not head.current,
        )
        if not head.looks_again:  # (a reserved turn opens its window when it is used)
            self._open_window(self.admitted, now, head.window)
        self.counters.transactions += 1
        woken = [head]
        if self._tickets.pop(head.owner, 0) > 1:
            for each in (self.leading, self.writers):
                woken += [t for t in each if t.owner == head.owner]
                kept = [t for t in each if t.owner != head.owner]
                each.clear()
                each.extend(kept)
        for ticket in woken:
            self._stallable -= ticket.on_stall is not OnStall.WAIT
            ticket.admitted = True
            self.counters.wait_seconds += now - ticket.since
            ticket.wake()
        self.wake_head()  # the new head keeps the gate's time
        return woken

    def wake_head(self) -> None:
        """The head looks at the admitted owner's timed moments again (they changed, or it is new)."""
        head = self._head()
        if head is not None:
            head.on_head()

    def _head(self) -> Ticket | None:
        if self.leading:
            return self.leading[0]
        return self.writers[0] if self.writers else None

    def head(self, ticket: Ticket) -> bool:
        """Is `ticket` the one that keeps the gate's time? Only it wakes for the gate's timed moments
        (a window or a reservation running out); the other waiters sleep until they are woken."""
        return self._head() is ticket
