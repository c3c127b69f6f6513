"""The admission gate of one database: one turn at a time, FIFO, direct hand-off.

Pure bookkeeping, no threads and no I/O: the lock manager asks it who may run and tells it when a
transaction ends; it answers which waiting ticket to wake. Invariants:
- at most one owner is admitted;
- every ticket in the queue belongs to an owner that is not admitted;
- a reservation (the "WAL retry" rule in docs/architecture.md) belongs to the admitted owner and
  ends when used or expired;
- a window (policy `beside`) belongs to a tentative admission: an owner not yet known to write.
  The manager decides when it has run out (`window_over`) and calls `pass_on`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from hoodydb.locks.settings import LockSettings
from hoodydb.locks.types import Owner


@dataclass(eq=False, slots=True)
class Ticket:
    """One transaction start waiting for its turn."""

    owner: Owner
    pid: int
    since: float
    reserve_on_handoff: bool  # WAL read slot: answer EAGAIN and hold the turn for the retry
    tentative: bool = False  # its owner is not known to write: its turn is a window
    wake: Callable[[], None] = lambda: None  # it is admitted
    on_head: Callable[[], None] = lambda: None  # it became first in the queue (`AdmissionGate.head`)
    admitted: bool = False


@dataclass(slots=True)
class Admission:
    owner: Owner
    pid: int
    since: float
    reserved_until: float | None = None
    entered: bool = False  # WAL: has held a read slot or the WRITE lock during this admission
    wrote: bool = False  # has held a write lock of a write transaction (RESERVED and up, WAL WRITE)
    first_on_handle: bool = False  # started by a connection's first transaction: its schema read
    priority_until: float | None = None  # newcomers wait behind its EXCLUSIVE until then (manager)
    tentative: bool = False  # its owner is not known to write (policy `beside`)
    window_until: float | None = None  # a tentative turn that has not written may pass on then

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
    passed_on: int = 0  # tentative turns that had not written in their window: they went on beside
    beside: int = 0  # transactions of readers that ran beside the turn (policy `beside`)
    refused_writes: int = 0  # writes from beside refused because another writer had the turn
    refused_full: int = 0  # starts refused at once: as many requests were parked as the daemon allows
    expired_reservations: int = 0
    wait_seconds: float = 0.0
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
    queue: deque[Ticket] = field(default_factory=deque)
    counters: GateCounters = field(default_factory=GateCounters)
    moved_at: float = 0.0  # when the turn last went to a transaction: queued waits are bound from it

    def try_enter(self, owner: Owner, pid: int, tentative: bool = False) -> bool:
        """Admit `owner` if it already holds the turn, or if nobody holds or waits for it.

        `tentative`: the transaction starting may only read; its turn is a window."""
        now = self.clock()
        self.expire(now)
        current = self.admitted
        if current is not None and current.owner == owner:
            current.reserved_until = None
            self._open_window(current, now, tentative)
            self.moved_at = now
            if current.window_until is not None:
                self.wake_head()  # a new timed moment for the head to keep
            return True
        if current is None and not self.queue:
            self.admitted = Admission(owner, pid, now)
            self.moved_at = now
            self._open_window(self.admitted, now, tentative)
            self.counters.transactions += 1
            return True
        return False

    def _open_window(self, admission: Admission, now: float, tentative: bool) -> None:
        admission.tentative = tentative and not admission.wrote
        admission.window_until = now + self.settings.fresh_window if admission.tentative else None

    def known_writer(self) -> None:
        """The admitted owner asked to write: its turn is no window any more."""
        if self.admitted is not None:
            self.admitted.tentative = False
            self.admitted.window_until = None

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
        self.admitted = None
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

    def note_first_on_handle(self, owner: Owner) -> None:
        """Its turn is its connection's first transaction: the schema read of a statement."""
        current = self.admission_of(owner)
        if current is not None:
            current.first_on_handle = True

    def reserve(self, owner: Owner) -> None:
        """Keep the turn for its retry (a WAL client refused before its read slot comes back at
        once), but only for a while: one that never comes back must not hold everyone."""
        current = self.admission_of(owner)
        if current is not None:
            current.reserved_until = self.clock() + self.settings.reservation
            self.wake_head()

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

    def enqueue(self, ticket: Ticket) -> None:
        self.queue.append(ticket)
        self.counters.waits += 1
        self.counters.max_queue = max(self.counters.max_queue, len(self.queue))

    def cancel(self, ticket: Ticket) -> list[Ticket]:
        """Withdraw a waiting ticket (timeout, interrupt); returns the tickets woken, if any."""
        if ticket in self.queue:
            head = self.queue[0] is ticket
            self.queue.remove(ticket)
            if head:
                self.wake_head()  # the new head keeps the gate's time
        self.counters.wait_seconds += self.clock() - ticket.since
        if self.admitted is None:
            return self._hand_off()
        return []

    def leave(self, owner: Owner) -> list[Ticket]:
        """The transaction of `owner` is over: give the turn to the head of the queue."""
        if not self.is_admitted(owner):
            return []
        self.admitted = None
        return self._hand_off()

    def hold_for(self, owner: Owner, seconds: float) -> None:
        """Keep the turn of `owner`, between two of its transactions, for `seconds` at most."""
        current = self.admitted
        if current is not None and current.owner == owner:
            current.entered = current.first_on_handle = False  # once per connection
            current.reserved_until = self.clock() + seconds
            self.wake_head()  # it sleeps until the hold runs out

    def expire(self, now: float) -> list[Ticket]:
        """End a reservation that was not used in time (its client went away or gave up)."""
        current = self.admitted
        if current is None or current.reserved_until is None or now < current.reserved_until:
            return []
        self.counters.expired_reservations += 1
        return self.leave(current.owner)

    def _hand_off(self) -> list[Ticket]:
        """Admit the head ticket's owner and wake its tickets (several when threads of one process wait)."""
        if not self.queue:
            return []
        head = self.queue.popleft()
        now = self.clock()
        self.moved_at = now
        self.admitted = Admission(
            head.owner,
            head.pid,
            now,
            reserved_until=now + self.settings.reservation if head.reserve_on_handoff else None,
        )
        if not head.reserve_on_handoff:  # (a reserved turn opens its window when it is used)
            self._open_window(self.admitted, now, head.tentative)
        self.counters.transactions += 1
        woken = [head] + [t for t in self.queue if t.owner == head.owner]
        for ticket in woken:
            ticket.admitted = True
            self.counters.wait_seconds += now - ticket.since
            ticket.wake()
        self.queue = deque(t for t in self.queue if t.owner != head.owner)
        self.wake_head()  # the new head keeps the gate's time
        return woken

    def wake_head(self) -> None:
        """The head looks at the admitted owner's timed moments again (they changed, or it is new)."""
        if self.queue:
            self.queue[0].on_head()

    def head(self, ticket: Ticket) -> bool:
        """Is `ticket` first in the queue? Only the head wakes for the gate's timed moments (a
        window or a reservation running out): the other waiters sleep until they are woken."""
        return bool(self.queue) and self.queue[0] is ticket
