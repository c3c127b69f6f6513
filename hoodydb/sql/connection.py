"""Open apsw connections with the settings every API connection needs, and guard what SQL may do.

The API keeps one connection per database for every request, so nothing a request runs may change
that connection for the next one. Settings and why:
- a busy timeout (default 30 s): under the mount, lock requests wait in the admission gate, but on a
  plain directory SQLite's own retry loop is all there is;
- no URI filenames, no extension loading, `trusted_schema=OFF` and defensive mode: an HTTP client
  must not reach files or code outside its database;
- SQLite's LENGTH and LIKE-pattern limits (see `limits.py`), so no single VM step outlasts the
  statement timeout;
- an authorizer that refuses
  - every ATTACH and DETACH, so `ATTACH '/etc/…'`, `VACUUM INTO '/elsewhere'` and temporary
    databases (files that would outlive the request) are out of reach,
  - creating anything in the `temp` schema (tables, views, triggers, indexes): a TEMP trigger or a
    TEMP table shadowing a real one would change what every later request reads and writes,
  - every PRAGMA not on the allowlist in `pragmas.py`,
  - transaction control, because the executor owns BEGIN/COMMIT/ROLLBACK;
- while a read-only token's job runs (`read_only_job`), everything but reading: no statement that
  changes a database, no PRAGMA that changes anything (`pragma_reads_only`). SQLite asks the
  authorizer while it prepares, so its own parse decides, including the statements inside
  triggers, CTEs and RETURNING; `PRAGMA query_only` stands behind it at run time, and such jobs
  bypass apsw's statement cache so no statement prepared for an earlier (writing) job is reused
  without being authorized again;
- a progress handler that interrupts a statement past its deadline, or whose client went away, so
  one runaway query cannot hold a database (and the mount's admission) forever.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import apsw

from hoodydb.access.scope import WRITE
from hoodydb.sql.errors import READ_ONLY, ForbiddenError, SqlApiError
from hoodydb.sql.limits import ResultBudget, SqlLimits
from hoodydb.sql.pragmas import pragma_allowed, pragma_reads_only

T = TypeVar("T")

DEFAULT_BUSY_TIMEOUT_S = 30.0
# Below the mount's default lock timeout (`DEFAULT_LOCK_TIMEOUT`): a native writer queued behind
# an HTTP reader gets its turn before its own wait runs out. A lower `--lock-timeout` lowers it.
DEFAULT_STATEMENT_TIMEOUT_S = 20.0
# How many SQLite VM steps run between deadline checks; a check costs one clock read.
_PROGRESS_STEPS = 10_000


# Reading and calling functions is what queries do; nothing to check.
_READING = frozenset({apsw.SQLITE_SELECT, apsw.SQLITE_READ, apsw.SQLITE_FUNCTION, apsw.SQLITE_RECURSIVE})
_REFUSED = frozenset(
    {
        apsw.SQLITE_ATTACH,
        apsw.SQLITE_DETACH,
        apsw.SQLITE_CREATE_TEMP_INDEX,
        apsw.SQLITE_CREATE_TEMP_TABLE,
        apsw.SQLITE_CREATE_TEMP_TRIGGER,
        apsw.SQLITE_CREATE_TEMP_VIEW,
    }
)


class GuardedConnection:
    """An apsw connection plus the state of its guards. Used by one thread at a time."""

    def __init__(
        self, conn: apsw.Connection, *, statement_timeout: float, limits: SqlLimits | None = None
    ) -> None:
        self.conn = conn
        self.statement_timeout = statement_timeout
        self.limits = limits or SqlLimits()
        conn.limit(apsw.SQLITE_LIMIT_LENGTH, self.limits.max_value_bytes)
        conn.limit(apsw.SQLITE_LIMIT_LIKE_PATTERN_LENGTH, self.limits.max_like_pattern_bytes)
        conn.limit(apsw.SQLITE_LIMIT_ATTACHED, 0)
        # While False, the authorizer refuses transaction control: only the executor sets it.
        self._control_allowed = False
        # While True, the authorizer allows reading only (a read-only token's job).
        self.read_only = False
        # Set when the authorizer refused an action because the job is read-only.
        self.refused_write = False
        self._deadline: float | None = None
        # The running job's flag, set from the event loop's thread when its client went away.
        self.cancel_event = threading.Event()
        self.result_budget = ResultBudget(self.limits)
        # Seconds spent waiting for write locks since the owner last reset it (for metrics).
        self.lock_wait = 0.0
        conn.authorizer = self._authorize
        conn.set_progress_handler(self._progress, _PROGRESS_STEPS)

    def _authorize(
        self, op: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None
    ) -> int:
        if op in _READING or (self._control_allowed and op != apsw.SQLITE_ATTACH):
            # Under control() only the executor's own statements run (never user SQL).
            return apsw.SQLITE_OK
        if op == apsw.SQLITE_PRAGMA:
            if not arg1 or not pragma_allowed(arg1, arg2, db):
                return apsw.SQLITE_DENY
            return self._unless_read_only(not self.read_only or pragma_reads_only(arg1, arg2))
        if op in _REFUSED or db == "temp":
            return apsw.SQLITE_DENY
        if op in (apsw.SQLITE_TRANSACTION, apsw.SQLITE_SAVEPOINT):
            return apsw.SQLITE_DENY  # only under control(), above
        return self._unless_read_only(not self.read_only)

    def _unless_read_only(self, allowed: bool) -> int:
        if allowed:
            return apsw.SQLITE_OK
        self.refused_write = True
        return apsw.SQLITE_DENY

    def _set_query_only(self, on: bool) -> None:
        # Through the control path: the authorizer lets no request change this PRAGMA.
        self._control_allowed = True
        try:
            self.conn.execute(f"PRAGMA query_only = {int(on)}", can_cache=False)
        finally:
            self._control_allowed = False

    @property
    def can_cache(self) -> bool:
        """Whether user SQL may use apsw's statement cache (not while read-only: see above)."""
        return not self.read_only

    def _progress(self) -> bool:
        # Returning True interrupts the running statement (apsw.InterruptError).
        deadline = self._deadline
        return deadline is not None and (self.cancel_event.is_set() or time.monotonic() > deadline)

    def read_only_job(self, job: Callable[[GuardedConnection], T]) -> T:
        """Run `job` allowed to read only; a write it tried comes out as `ForbiddenError`."""
        self.read_only, self.refused_write = True, False
        self._set_query_only(True)
        try:
            return job(self)
        except (SqlApiError, apsw.Error) as exc:
            if isinstance(exc, ForbiddenError) or not self.write_refused(exc):
                raise
            raise forbidden_write(getattr(exc, "req_idx", None)) from None
        finally:
            self.read_only = False
            # No deadline may interrupt this: the next (writing) job needs query_only off.
            self.clear_deadline()
            self._set_query_only(False)

    def write_refused(self, exc: BaseException) -> bool:
        """Whether `exc` is SQLite refusing a read-only job's write: the authorizer's denial, or
        `query_only` stopping a statement prepared before (apsw's cache) at run time."""
        if not self.read_only:
            return False
        read_only_error = isinstance(exc, apsw.ReadOnlyError) or (
            isinstance(exc, SqlApiError) and exc.code == READ_ONLY
        )
        return self.refused_write or read_only_error

    def control(self, sql: str) -> None:
        """Run BEGIN/COMMIT/ROLLBACK. Never cached, so user SQL can never reuse these statements."""
        self._control_allowed = True
        started = time.monotonic()
        try:
            self.conn.execute(sql, can_cache=False)
        finally:
            self._control_allowed = False
            if sql == "BEGIN IMMEDIATE":
                # Where a writer waits for the database: SQLite's busy loop, or the mount's gate.
                self.lock_wait += time.monotonic() - started

    def start_request(self) -> None:
        """Start the request's clock and its result allowance afresh."""
        self.result_budget = ResultBudget(self.limits)
        self._deadline = time.monotonic() + self.statement_timeout

    def clear_deadline(self) -> None:
        self._deadline = None

    @property
    def in_transaction(self) -> bool:
        return bool(self.conn.in_transaction)

    def close(self) -> None:
        self.conn.close()


def forbidden_write(req_idx: int | None = None) -> ForbiddenError:
    return ForbiddenError(
        WRITE,
        "the token is read-only: SQLite refused a write (a statement that changes the database, "
        "or a PRAGMA that changes a setting)",
        req_idx=req_idx,
    )


def open_database(
    path: Path,
    *,
    create: bool = False,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_S,
    limits: SqlLimits | None = None,
) -> GuardedConnection:
    """Open (or, with `create`, create) the database at an already confined, resolved path."""
    flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_NOFOLLOW
    if create:
        flags |= apsw.SQLITE_OPEN_CREATE
    conn = apsw.Connection(str(path), flags=flags)
    try:
        conn.set_busy_timeout(int(busy_timeout * 1000))
        conn.config(apsw.SQLITE_DBCONFIG_DEFENSIVE, 1)
        conn.execute("PRAGMA trusted_schema = OFF")
        conn.execute("PRAGMA foreign_keys = ON")
        if create:
            # SQLite creates files lazily; writing the header makes the new database a real one.
            conn.execute("PRAGMA user_version = 0")
        else:
            # Fail here, not in the first request, when the file is not a database at all.
            conn.execute("SELECT count(*) FROM sqlite_schema").fetchall()
    except BaseException:
        conn.close()
        raise
    return GuardedConnection(conn, statement_timeout=statement_timeout, limits=limits)
