"""The lock core's outcomes as the errnos a client gets: the one place that decides them.

SQLite only sends F_SETLK and reads any errno but EAGAIN, EACCES, EINTR, EBUSY, ETIMEDOUT and
ENOLCK as "disk I/O error"; so F_SETLK is answered 0 or EAGAIN ("database is locked"), or EINTR
where the client's signals ask the kernel to restart the call (signals.py). F_SETLKW gets POSIX's
answers.
"""

from __future__ import annotations

import errno

from hoodydb.locks import Outcome


def errno_for(outcome: Outcome, wait: bool, aborted: int | None = None) -> int:
    """`aborted`: the errno the abort check decided on, for an aborted wait."""
    if outcome is Outcome.GRANTED:
        return 0
    if outcome is Outcome.ABORTED and aborted is not None:
        return aborted
    if outcome is Outcome.DEADLOCK and wait:
        return errno.EDEADLK
    return errno.EAGAIN
