"""AdmissionGate: pure bookkeeping with a fake clock (FIFO, direct hand-off, reservations)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hoodydb.locks.gate import AdmissionGate, GateCounters, Ticket
from hoodydb.locks.settings import LockSettings


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Woken:
    """Records every wake() call, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def ticket(self, gate: AdmissionGate, owner: int, name: str, *, reserve: bool = False) -> Ticket:
        t = Ticket(owner, owner * 10, gate.clock(), reserve, wake=lambda: self.calls.append(name))
        gate.enqueue(t)
        return t


def make_gate(reservation: float = 2.0) -> tuple[AdmissionGate, FakeClock]:
    clock = FakeClock()
    return AdmissionGate(clock, LockSettings(reservation=reservation)), clock


def test_first_comer_is_admitted_at_once_and_others_are_not() -> None:
    gate, _ = make_gate()
    assert gate.try_enter(1, 10)
    assert gate.is_admitted(1)
    assert gate.admitted is not None and gate.admitted.pid == 10
    assert not gate.try_enter(2, 20)
    assert not gate.is_admitted(2)
    assert gate.try_enter(1, 10)  # the holder re-enters freely
    assert gate.counters.transactions == 1


def test_leave_by_someone_not_admitted_changes_nothing() -> None:
    gate, _ = make_gate()
    w = Woken()
    gate.try_enter(1, 10)
    w.ticket(gate, 2, "b")
    assert gate.leave(2) == []
    assert gate.leave(3) == []
    assert gate.is_admitted(1)
    assert w.calls == []


def test_fifo_order_and_exactly_one_wake_per_hand_off() -> None:
    gate, clock = make_gate()
    w = Woken()
    gate.try_enter(1, 10)
    tickets = [w.ticket(gate, owner, name) for owner, name in ((2, "b"), (3, "c"), (4, "d"))]
    assert gate.counters.waits == 3
    assert gate.counters.max_queue == 3
    for i, (owner, name) in enumerate(((2, "b"), (3, "c"), (4, "d"))):
        clock.now += 1
        previous = gate.admitted
        assert previous is not None
        woken = gate.leave(previous.owner)
        assert woken == [tickets[i]]
        assert w.calls[-1] == name and len(w.calls) == i + 1  # exactly one wake per hand-off
        assert tickets[i].admitted
        assert all(not t.admitted for t in tickets[i + 1 :])
        assert gate.is_admitted(owner)
        assert gate.admitted is not None and gate.admitted.since == clock.now
        assert gate.admitted.reserved_until is None
    assert gate.leave(4) == []
    assert gate.admitted is None
    assert gate.counters.transactions == 4
    assert gate.try_enter(5, 50)


def test_a_newcomer_cannot_jump_the_queue() -> None:
    gate, _ = make_gate()
    w = Woken()
    gate.try_enter(1, 10)
    w.ticket(gate, 2, "b")
    w.ticket(gate, 3, "c")
    gate.leave(1)
    assert not gate.try_enter(9, 90)
    assert gate.is_admitted(2)


def test_hand_off_wakes_every_ticket_of_the_head_owner_only() -> None:
    gate, _ = make_gate()
    w = Woken()
    gate.try_enter(1, 10)
    t1 = w.ticket(gate, 2, "b1")
    t2 = w.ticket(gate, 3, "c")
    t3 = w.ticket(gate, 2, "b2")  # a second thread of the same process
    assert gate.leave(1) == [t1, t3]
    assert w.calls == ["b1", "b2"]
    assert list(gate.queue) == [t2]
    assert not t2.admitted


def test_wait_seconds_are_counted_at_hand_off() -> None:
    gate, clock = make_gate()
    w = Woken()
    gate.try_enter(1, 10)
    w.ticket(gate, 2, "b")
    clock.now += 3.5
    gate.leave(1)
    assert gate.counters.wait_seconds == 3.5


def test_turn_seconds_sum_every_ended_turn_from_its_admission() -> None:
    gate, clock = make_gate()
    w = Woken()
    gate.try_enter(1, 10)
    clock.now += 0.5
    gate.try_enter(1, 10)  # the holder's next start inside its turn: still the same turn
    w.ticket(gate, 2, "b")
    clock.now += 1.5
    gate.leave(1)  # 2 s, and the turn goes to 2 at once
    assert gate.counters.turn_seconds == 2
    clock.now += 0.25
    assert gate.pass_on() is not None  # a turn that passes on has ended too
    assert gate.counters.turn_seconds == 2.25
    clock.now += 10  # nobody holds it: idle time is not counted
    gate.try_enter(3, 30)
    clock.now += 1
    gate.leave(3)
    assert gate.counters.turn_seconds == 3.25
    assert gate.leave(3) == [] and gate.counters.turn_seconds == 3.25  # leaving twice counts once


def test_cancel_removes_a_ticket_and_hands_off_when_nobody_is_admitted() -> None:
    gate, clock = make_gate()
    w = Woken()
    gate.try_enter(1, 10)
    tb = w.ticket(gate, 2, "b")
    tc = w.ticket(gate, 3, "c")
    clock.now += 1
    assert gate.cancel(tb) == []
    assert list(gate.queue) == [tc]
    assert gate.counters.wait_seconds == 1
    assert w.calls == []
    gate.cancel(tb)  # twice is harmless
    assert list(gate.queue) == [tc]
    gate.leave(1)
    assert w.calls == ["c"]


def test_each_leave_hands_the_turn_to_the_next_in_line() -> None:
    gate, _ = make_gate()
    w = Woken()
    gate.try_enter(1, 10)
    tb = w.ticket(gate, 2, "b")
    tc = w.ticket(gate, 3, "c")
    gate.leave(1)
    gate.leave(2)  # b is admitted and leaves before c's turn
    assert gate.is_admitted(3)
    assert tc.admitted and tb.admitted
    assert w.calls == ["b", "c"]


def test_reservation_is_kept_for_the_retry_and_cleared_by_it() -> None:
    gate, clock = make_gate(reservation=2.0)
    w = Woken()
    gate.try_enter(1, 10)
    w.ticket(gate, 2, "b", reserve=True)
    w.ticket(gate, 3, "c")
    gate.leave(1)
    admitted = gate.admitted
    assert admitted is not None and admitted.owner == 2
    assert admitted.reserved_until == clock.now + 2.0
    clock.now += 1.9
    assert gate.expire(clock.now) == []
    assert not gate.try_enter(3, 30)
    assert gate.try_enter(2, 20)  # the retry gets straight in
    assert admitted.reserved_until is None
    clock.now += 100
    assert gate.expire(clock.now) == []  # a used reservation never expires
    assert gate.is_admitted(2)
    assert gate.counters.expired_reservations == 0


def test_unused_reservation_expires_and_the_turn_moves_on() -> None:
    gate, clock = make_gate(reservation=2.0)
    w = Woken()
    gate.try_enter(1, 10)
    w.ticket(gate, 2, "b", reserve=True)
    tc = w.ticket(gate, 3, "c")
    gate.leave(1)
    clock.now += 2.0
    assert gate.expire(clock.now) == [tc]
    assert gate.is_admitted(3)
    assert gate.counters.expired_reservations == 1
    assert w.calls == ["b", "c"]


def test_try_enter_expires_a_stale_reservation_first() -> None:
    gate, clock = make_gate(reservation=1.0)
    w = Woken()
    gate.try_enter(1, 10)
    w.ticket(gate, 2, "b", reserve=True)
    gate.leave(1)
    clock.now += 5
    assert gate.try_enter(7, 70)  # nobody waits, the reservation is gone: a newcomer enters
    assert gate.is_admitted(7)
    assert gate.counters.expired_reservations == 1


def test_late_retry_after_expiry_with_nobody_waiting_is_admitted_afresh() -> None:
    gate, clock = make_gate(reservation=1.0)
    w = Woken()
    gate.try_enter(1, 10)
    w.ticket(gate, 2, "b", reserve=True)
    gate.leave(1)
    clock.now += 5
    assert gate.try_enter(2, 20)
    assert gate.admitted is not None and gate.admitted.reserved_until is None
    assert gate.counters.transactions == 3


def test_counters_as_dict_lists_every_counter() -> None:
    d = GateCounters().as_dict()
    assert set(d) == {
        "transactions",
        "waits",
        "timeouts",
        "interrupts",
        "victims",
        "passed_on",
        "beside",
        "led",
        "writes_from_beside",
        "refused_writes",
        "refused_full",
        "expired_reservations",
        "granted_as_asked",
        "wait_seconds",
        "turn_seconds",
        "max_queue",
    }
    assert all(v == 0 for v in d.values())


# -- property: random traffic keeps the invariants and FIFO order ----------------------------------

GateOp = tuple[str, int]


@settings(max_examples=200, deadline=None)
@example([("arrive", 1), ("arrive", 2), ("arrive", 3), ("arrive", 4), ("cancel", 1)])  # mid-queue cancel
@given(
    st.lists(
        st.tuples(st.sampled_from(["arrive", "leave", "cancel", "tick", "retry"]), st.integers(1, 5)),
        max_size=60,
    )
)
def test_random_traffic_keeps_one_admitted_and_fifo(operations: list[GateOp]) -> None:
    gate, clock = make_gate(reservation=3.0)
    woken: list[int] = []
    expected: deque[int] = deque()  # queued owners, in the order they must be admitted

    def waker(owner: int) -> Callable[[], None]:
        return lambda: woken.append(owner)

    for op, n in operations:
        before = gate.admitted.owner if gate.admitted else None
        n_woken = len(woken)
        if op == "arrive":
            owner = n
            if gate.is_admitted(owner) or any(t.owner == owner for t in gate.queue):
                continue
            if not gate.try_enter(owner, owner):
                gate.enqueue(Ticket(owner, owner, clock(), n % 2 == 0, wake=waker(owner)))
                expected.append(owner)
        elif op == "leave" and gate.admitted is not None:
            gate.leave(gate.admitted.owner)
        elif op == "cancel" and gate.queue:
            ticket = list(gate.queue)[n % len(gate.queue)]
            gate.cancel(ticket)
            expected.remove(ticket.owner)
        elif op == "tick":
            clock.now += n
            gate.expire(clock.now)
        elif op == "retry" and gate.admitted is not None:
            assert gate.try_enter(gate.admitted.owner, 0)
        after = gate.admitted.owner if gate.admitted else None
        if len(woken) > n_woken:
            # A hand-off: exactly one wake, for the head of the queue, who now holds the turn.
            assert len(woken) == n_woken + 1
            assert woken[-1] == after == expected.popleft()
        else:
            assert after == before or after is None or op == "arrive"
        # Invariants: at most one admitted; nobody queued is admitted; the gate is never empty
        # while someone waits.
        assert gate.admitted is None or all(t.owner != gate.admitted.owner for t in gate.queue)
        assert gate.admitted is not None or not gate.queue
        assert [t.owner for t in gate.queue] == list(expected)
        assert all(not t.admitted for t in gate.queue)
        # Each ticket's wait-for edge points at the ticket just ahead of it, exactly.
        queue = list(gate.queue)
        assert [gate.head(t) for t in queue] == [True, *[False] * (len(queue) - 1)][: len(queue)]
