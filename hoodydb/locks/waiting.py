"""Parked lock requests: the wait loop, its bounds and the global wait-for graph.

Every waiter sleeps on its own condition of the manager's one mutex, so that whoever lets go of a
lock or hands a turn over wakes exactly the requests concerned. A wait ends when its `done()` holds,
or with the outcome that says why not: the lock timeout, a cycle in the wait-for graph, the
adapter's abort check (signals, unmount), or the daemon closing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from hoodydb.locks.types import Outcome, Owner

log = logging.getLogger("hoodydb.locks.manager")

CYCLE_CHECK_SECONDS = 1.0

AbortCheck = Callable[[], bool]
"""Polled while a request waits: True to stop now. The adapter remembers why (its errno)."""

Tick = Callable[[float], float | None]
"""Called at every wake-up with the time: lets time-bound state run out (a held turn, a window)
and returns how long the waiter may sleep before the next such moment, or None."""


def never() -> bool:
    return False


@dataclass(eq=False)
class Waiter:
    owner: Owner
    cond: threading.Condition
    blockers: Callable[[], set[Owner]]  # whom it waits for now: its edges in the wait-for graph
    aborted: bool = False


class WaitRoom:
    """All parked requests of one lock manager. Every method runs under the manager's mutex."""

    def __init__(
        self, mutex: threading.Lock, clock: Callable[[], float], poll_interval: float, max_waiters: int
    ) -> None:
        self.mutex = mutex
        self.clock = clock
        self.poll_interval = poll_interval
        self.max_waiters = max_waiters
        self.parked = 0
        self.waits = 0  # requests that have had to wait, ever: a sign of contention to watch
        self.closing = False
        self._waiting: dict[Owner, set[Waiter]] = {}

    def waiter(self, owner: Owner, blockers: Callable[[], set[Owner]]) -> Waiter:
        return Waiter(owner, threading.Condition(self.mutex), blockers)

    def has_room(self, share: float = 1.0) -> bool:
        return self.parked < self.max_waiters * share

    def wait(
        self,
        waiter: Waiter,
        done: Callable[[], bool],
        deadline: float | None,
        abort: AbortCheck,
        tick: Tick | None = None,
    ) -> Outcome:
        """Sleep on `waiter.cond` until `done()`."""
        if not self.has_room():
            return Outcome.FULL  # each waiter holds a daemon thread: the bound keeps the mount alive
        self.parked += 1
        self.waits += 1
        self._waiting.setdefault(waiter.owner, set()).add(waiter)
        try:
            next_cycle_check = 0.0
            while not done():
                if self.closing:
                    return Outcome.CLOSING
                now = self.clock()
                # A cycle is almost always closed by the request that starts waiting; the
                # periodic re-check is a backstop, kept rare because it walks the whole graph.
                if now >= next_cycle_check:
                    if self.closes_cycle(waiter):
                        log.debug("victim: %s waits on %s", waiter.owner, waiter.blockers())
                        return Outcome.DEADLOCK
                    next_cycle_check = now + CYCLE_CHECK_SECONDS
                if abort():
                    log.debug("aborted: %s", waiter.owner)
                    waiter.aborted = True
                    return Outcome.ABORTED
                if deadline is not None and now >= deadline:
                    return Outcome.TIMEOUT
                timeout = self.poll_interval if deadline is None else min(self.poll_interval, deadline - now)
                if tick is not None:
                    sooner = tick(now)
                    if done():
                        break
                    if sooner is not None:
                        timeout = min(timeout, max(sooner, 0.0005))
                waiter.cond.wait(timeout)
            return Outcome.GRANTED
        finally:
            self.parked -= 1
            mine = self._waiting.get(waiter.owner)
            if mine is not None:
                mine.discard(waiter)
                if not mine:
                    del self._waiting[waiter.owner]

    def closes_cycle(self, waiter: Waiter) -> bool:
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

    def shutdown(self) -> None:
        """The daemon is exiting: every waiter gives up."""
        self.closing = True
        for waiters in self._waiting.values():
            for w in waiters:
                w.cond.notify_all()
