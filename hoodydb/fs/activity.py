"""Is a client thread still at work, as far as the kernel can tell? For the lock manager's windows.

A transaction holds the turn for a window; when the window runs out without a write the turn
passes on, unless the thread that started the transaction is plainly still starting it: runnable
(waiting for a CPU, on a loaded machine its normal state) or waiting for this daemon's answer to
a FUSE request. A thread asleep anywhere else (a half-read cursor, a program waiting for input) is
a reader taking its time, and goes on beside; except on a busy host, where what it waits for may
itself wait for a CPU (`host_busy`), and the window stretches.
"""

from __future__ import annotations

import os

FUSE_WAITS = ("request_wait_answer", "fuse_")
CPUS = os.cpu_count() or 1  # (not this daemon's affinity: it pins itself to one CPU under contention)


def working(tid: int) -> bool | None:
    """True if runnable, in uninterruptible I/O or in a FUSE request; False if asleep elsewhere
    (interruptibly: a program waiting for input, a timer, a lock of its own); None if unknown."""
    if tid <= 0:
        return None  # a thread in a PID namespace we cannot see
    try:
        with open(f"/proc/{tid}/stat", "rb") as f:
            stat = f.read()
        state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
        if state in (b"R", b"D"):
            return True  # runnable, or in the kernel for I/O (a page fault on the mapped -shm)
        if state != b"S":
            return False  # stopped, traced, dying
        with open(f"/proc/{tid}/wchan", "rb") as f:
            wchan = f.read().decode(errors="replace")
    except (OSError, ValueError):
        return None
    return wchan.startswith(FUSE_WAITS)


def host_busy() -> bool:
    """More threads runnable on the host than it has CPUs (the one asking included): a client
    asleep may be waiting for another process that waits for a CPU."""
    try:
        with open("/proc/loadavg", "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
    except (OSError, ValueError, IndexError):
        return False
    return running > CPUS
