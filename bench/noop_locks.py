"""`python -m bench.noop_locks mount BACKING MOUNTPOINT --foreground`: the mount with free locks.

Every lock request is granted at once, with no bookkeeping and no gate: what the mount would cost
a lone client if lock decisions cost nothing. It arbitrates nothing, so it is only fit for the
single-process benchmark, where it shows how much of the mount's cost is the lock manager and how
much is the FUSE round trips themselves.
"""

from __future__ import annotations

from hoodydb.cli import main
from hoodydb.locks import Conflict, LockManager, LockRequest, Outcome


def _grant(self: LockManager, req: LockRequest, abort: object = None) -> Outcome:
    return Outcome.GRANTED


def _no_conflict(self: LockManager, req: LockRequest, abort: object = None) -> Conflict | None:
    return None


LockManager.setlk = _grant  # type: ignore[method-assign,assignment]
LockManager.getlk = _no_conflict  # type: ignore[method-assign,assignment]

if __name__ == "__main__":
    main()
