"""Parked lock requests: the wait loop, its bounds and the global wait-for graph.

Every waiter sleeps on its own condition of the manager's one mutex, so that whoever lets go of a
lock or hands a turn over wakes exactly the requests concerned. A parked request costs nothing
while it sleeps: it is woken by the event it waits for, by its deadline, by its abort check
telling it to look (`Watchable.watch`: the adapter learns of a client's signal from libfuse, not
by asking), or by the daemon closing; never on a polling interval. Only abort checks that cannot
be told (plain callables, as in tests) are polled.

A wait ends when its `done()` holds, or with the outcome that says why not: the deadline, a cycle
in the wait-for graph, the abort check, or the daemon closing. Cycles are looked for when a
request parks and when a lock or turn is granted to an owner that has requests parked: the only
two moments a new edge can close one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hoodydb.locks.settings import LockSettings
from hoodydb.locks.types import Outcome, Owner

log = logging.getLogger(__name__)

AbortCheck = Callable[[], bool]
"""Asked at every wake-up of a waiting request: True to stop now. The adapter remembers why."""


@runtime_checkable
class Watchable(Protocol):
    """An abort check that says when to ask it, so a parked request need not poll it."""

    recheck: float | None  # ask again after this many seconds even if not woken (None: only when woken)

    def __call__(self) -> bool: ...

    def watch(self, wake: Callable[[], None]) -> None:
        """The request parks: call `wake` (from any thread, without the manager's mutex) when the
        check may have changed its mind. May be called under the manager's mutex."""

    def unwatch(self) -> None:
        """The request stops waiting: `wake` must not be called any more after this returns."""


Deadline = Callable[[], float | None]
"""When the wait runs out, asked at every wake-up: it may move (a queue that makes progress)."""

Tick = Callable[[float], float | None]
"""Called at every wake-up with the time: lets time-bound state run out (a held turn, a window)
and returns how long the waiter may sleep before the next such moment, or None."""


class _Never:
    """The abort check of requests that nobody can interrupt: never true, never polled."""

    recheck: float | None = None

    def __call__(self) -> bool:
        return False

    def watch(self, wake: Callable[[], None]) -> None:
        pass

    def unwatch(self) -> None:
        pass


never = _Never()


@dataclass(eq=False)
class Waiter:
    owner: Owner
    cond: threading.Condition
    blockers: Callable[[], set[Owner]]  # whom it waits for now: its edges in the wait-for graph
    aborted: bool = False
    victim: bool = False  # a grant closed a cycle through it: it gives up (Outcome.DEADLOCK)


class WaitRoom:
    """All parked requests of one lock manager. Every method runs under the manager's mutex,
    except `poke`, which takes it."""

    def __init__(self, mutex: threading.Lock, clock: Callable[[], float], settings: LockSettings) -> None:
        self.mutex = mutex
        self.clock = clock
        self.poll_interval = settings.poll_interval  # for abort checks that cannot be watched
        self.max_waiters = settings.max_waiters
        self.parked = 0
        self.peak = 0  # most requests parked at once
        self.waits = 0  # requests that have had to wait, ever: a sign of contention to watch
        self.refused_full = 0  # requests refused because the bound was reached
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
        deadline: Deadline | None,
        abort: AbortCheck,
        tick: Tick | None = None,
    ) -> Outcome:
        """Sleep on `waiter.cond` until `done()`."""
        if done():
            return Outcome.GRANTED
        if not self.has_room():
            # Each waiter holds a daemon thread: the bound keeps the mount alive.
            self.refused_full += 1
            if self.refused_full == 1 or self.refused_full % 1000 == 0:
                log.warning(
                    "%d lock requests wait: the bound (--max-threads less a reserve) is reached; "
                    "further transaction starts get 'database is locked' (%d so far)",
                    self.parked,
                    self.refused_full,
                )
            return Outcome.FULL
        if self.closes_cycle(waiter):
            log.debug("victim: %s waits on %s", waiter.owner, waiter.blockers())
            return Outcome.DEADLOCK
        self.parked += 1
        self.peak = max(self.peak, self.parked)
        self.waits += 1
        self._waiting.setdefault(waiter.owner, set()).add(waiter)
        watched = abort if isinstance(abort, Watchable) else None
        if watched is not None:
            watched.watch(lambda: self.poke(waiter))
        try:
            while not done():
                if self.closing:
                    return Outcome.CLOSING
                if waiter.victim:
                    log.debug("victim: %s waits on %s", waiter.owner, waiter.blockers())
                    return Outcome.DEADLOCK
                if abort():
                    log.debug("aborted: %s", waiter.owner)
                    waiter.aborted = True
                    return Outcome.ABORTED
                now = self.clock()
                until = deadline() if deadline is not None else None
                if until is not None and now >= until:
                    return Outcome.TIMEOUT
                timeout = None if until is None else until - now
                recheck = self.poll_interval if watched is None else watched.recheck
                if recheck is not None:
                    timeout = recheck if timeout is None else min(timeout, recheck)
                if tick is not None:
                    sooner = tick(now)
                    if done():
                        break
                    if sooner is not None:
                        sooner = max(sooner, 0.0005)
                        timeout = sooner if timeout is None else min(timeout, sooner)
                waiter.cond.wait(timeout)
            return Outcome.GRANTED
        finally:
            if watched is not None:
                watched.unwatch()
            self.parked -= 1
            mine = self._waiting.get(waiter.owner)
            if mine is not None:
                mine.discard(waiter)
                if not mine:
                    del self._waiting[waiter.owner]

    def poke(self, waiter: Waiter) -> None:
        """Wake one parked request to look at its abort check (from any thread)."""
        with self.mutex:
            waiter.cond.notify()

    def granted(self, owner: Owner) -> None:
        """`owner` was just granted a lock or a turn: others that wait for it gained an edge to
        it, and if it has requests parked itself, that edge may close a cycle through them."""
        for waiter in self._waiting.get(owner, ()):
            if not waiter.victim and self.closes_cycle(waiter):
                waiter.victim = True
                waiter.cond.notify()

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
