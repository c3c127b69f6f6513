"""What the signals pending on a client thread ask of its lock request waiting in the daemon.

Any signal to a thread waiting for a FUSE answer makes the kernel send FUSE_INTERRUPT; the
thread then keeps waiting (only a fatal signal would end that wait, and not once the request
has reached the daemon), with the signal still pending, its handler not yet run. The kernel
turns an EINTR answer to a lock request into ERESTARTSYS ("locking is restartable", fuse_setlk):
the call restarts after a signal with no handler or an SA_RESTART handler, and fails with EINTR
after any other handler. SQLite calls that EINTR, like EAGAIN, "database is locked"; and an
EINTR with no signal pending would reach the program as errno 512.

So the daemon looks at the requesting thread's pending signals (the FUSE request's pid is the
thread's id) in /proc/<tid>/status, which also tells which the process catches or ignores, and
answers by the strongest of them (`answer`).
"""

from __future__ import annotations

import enum
import errno
import signal


class Pending(enum.IntEnum):
    """The strongest kind of signal pending on a thread; ordered, the strongest decides."""

    NOTHING = 0  # no signal it could take now (another thread of the process took it)
    HARMLESS = 1  # caught or ignored, not asking to stop: the handler can wait for the answer
    STOP = 2  # SIGSTOP, or SIGTSTP/SIGTTIN/SIGTTOU with their default action
    END = 3  # the program is asked to stop (caught SIGINT, SIGTERM, ...) or is dying


# Asking to stop when the program catches them; a program that doesn't dies of them.
STOP_REQUESTS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT})
JOB_CONTROL = frozenset({signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU})
# Default action "ignore": the kernel drops them unless caught, so they are seen here only
# while blocked (and then they are not deliverable anyway).
IGNORED_BY_DEFAULT = frozenset({signal.SIGCHLD, signal.SIGURG, signal.SIGWINCH, signal.SIGCONT})


def answer(tid: int, wait: bool) -> int | None:
    """The errno for an interrupted lock request of thread `tid`, or None to keep it waiting.

    F_SETLKW (`wait`) gets what a local file system gives a blocking lock: EINTR for any signal
    the thread can take, which the kernel restarts or hands to the program by its handler's
    SA_RESTART. F_SETLK keeps its place in the queue through harmless signals, is restarted by
    the kernel around a stop, and ends with EAGAIN ("database is locked") otherwise.
    """
    pending = pending_on(tid)
    if pending is None:  # /proc cannot tell: end the wait, as an interrupt always did
        return errno.EINTR if wait else errno.EAGAIN
    if pending is Pending.NOTHING or (pending is Pending.HARMLESS and not wait):
        return None
    if pending is Pending.END and not wait:
        return errno.EAGAIN
    return errno.EINTR


def _mask(value: str) -> int:
    return int(value, 16)


def _signals(mask: int) -> list[int]:
    return [bit + 1 for bit in range(mask.bit_length()) if mask >> bit & 1]


def pending_on(tid: int) -> Pending | None:
    """What is pending on thread `tid`; None when /proc cannot tell (the thread is in another
    pid namespace, so its id is 0 here, or /proc hides other users' processes)."""
    if tid <= 0:
        return None
    try:
        with open(f"/proc/{tid}/status", "rb") as f:
            fields = dict(line.decode().split(":\t", 1) for line in f if b":\t" in line)
        pending = _mask(fields["SigPnd"]) | _mask(fields["ShdPnd"])
        deliverable = pending & ~_mask(fields["SigBlk"])
        caught, ignored = _mask(fields["SigCgt"]), _mask(fields["SigIgn"])
    except (OSError, KeyError, ValueError):
        return None
    return max((_kind(sig, caught, ignored) for sig in _signals(deliverable)), default=Pending.NOTHING)


def _kind(sig: int, caught: int, ignored: int) -> Pending:
    bit = 1 << (sig - 1)
    if sig == signal.SIGKILL:
        return Pending.END  # the process is exiting: a fatal signal puts SIGKILL on every thread
    if sig == signal.SIGSTOP:
        return Pending.STOP
    if caught & bit:
        return Pending.END if sig in STOP_REQUESTS or sig in JOB_CONTROL else Pending.HARMLESS
    if ignored & bit or sig in IGNORED_BY_DEFAULT:
        return Pending.HARMLESS
    if sig in JOB_CONTROL:
        return Pending.STOP
    return Pending.END  # default action: terminate, or dump core
