"""Keep the daemon on one CPU while clients queue for a database, and only then.

Under contention many libfuse workers run Python at once and hand the GIL to each other at every
callback and every system call. On different CPUs each hand-off is a cross-CPU wake-up (about
60 µs on the 2-vCPU development VM, more than a whole lock request costs); on one CPU it is a
context switch. A single client is the other way round: its round trip is shortest when the
worker runs wherever the client runs, which a pinned daemon prevents half the time. So the pin
follows the queue: on while requests wait for a turn, off once none has for `idle_seconds`.
docs/PERFORMANCE.md has the measurements.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)

PASSES = 5  # libfuse starts workers on demand: look again for threads started meanwhile


def _set_all_threads(cpus: set[int]) -> bool:
    """Give every thread of this process the CPU set `cpus`; False if the system refused it."""
    done: set[str] = set()
    try:
        for _ in range(PASSES):
            todo = set(os.listdir("/proc/self/task")) - done
            if not todo:
                return True
            for tid in todo:
                with contextlib.suppress(ProcessLookupError):  # the thread exited meanwhile
                    os.sched_setaffinity(int(tid), cpus)
            done |= todo
    except OSError as exc:
        log.warning("cannot set CPU affinity %s: %s", sorted(cpus), exc)
        return False
    return True


class ContentionPin:
    """Polls the lock manager and pins or unpins every thread of the process."""

    def __init__(
        self,
        waits: Callable[[], int],
        waiting: Callable[[], int],
        *,
        interval: float = 0.05,
        idle_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._waits = waits  # requests that have had to wait, ever
        self._waiting = waiting  # transaction starts queued for a turn now
        self._interval = interval
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._all = os.sched_getaffinity(0)
        # The last CPU: the first one usually takes more of the machine's interrupts.
        self.cpu = max(self._all)
        self._one = {self.cpu}
        self.pinned = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hoodydb-cpu-pin", daemon=True)

    def start(self) -> None:
        if len(self._all) > 1:
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.pinned:
            self._unpin()

    def _unpin(self) -> None:
        # The CPUs of the start may be gone (a cpuset changed): then every CPU the system allows.
        if not _set_all_threads(self._all):
            _set_all_threads(set(range(os.cpu_count() or 1)))
        self.pinned = False

    def _run(self) -> None:
        seen = self._waits()
        last_wait = float("-inf")
        while not self._stop.wait(self._interval):
            now, waits = self._clock(), self._waits()
            if waits != seen or self._waiting():
                seen, last_wait = waits, now
                if not self.pinned:
                    self.pinned = True  # before: a partial pass must still be undone
                    if not _set_all_threads(self._one):
                        self._unpin()
                        return  # refused once, refused again: run unpinned
                    log.debug("clients queue: daemon pinned to CPU %s", self._one)
            elif self.pinned and now - last_wait > self._idle_seconds:
                self._unpin()
                log.debug("queue idle: daemon free to use CPUs %s", self._all)
