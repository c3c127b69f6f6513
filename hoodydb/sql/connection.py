"""Open apsw connections with the settings every API connection needs, and guard what SQL may do.

Settings and why:
- a busy timeout (default 30 s): under the mount, lock requests wait in the admission gate, but on a
  plain directory SQLite's own retry loop is all there is;
- no URI filenames, no extension loading, `trusted_schema=OFF` and defensive mode: an HTTP client
  must not reach files or code outside its database;
- an authorizer that refuses ATTACH (except SQLite's anonymous temporary databases, which plain
  VACUUM needs) so `ATTACH '/etc/…'` and `VACUUM INTO '/elsewhere'` cannot escape the roots, and
  refuses transaction control, because the executor owns BEGIN/COMMIT/ROLLBACK;
- a progress handler that interrupts a statement past its deadline, so one runaway query cannot
  hold a database (and the mount's admission) forever.
"""

from __future__ import annotations

import time
from pathlib import Path

import apsw

DEFAULT_BUSY_TIMEOUT_S = 30.0
DEFAULT_STATEMENT_TIMEOUT_S = 60.0
# How many SQLite VM steps run between deadline checks; a check costs one clock read.
_PROGRESS_STEPS = 10_000


class GuardedConnection:
    """An apsw connection plus the state of its guards. Used by one thread at a time."""

    def __init__(self, conn: apsw.Connection, *, statement_timeout: float) -> None:
        self.conn = conn
        self.statement_timeout = statement_timeout
        # While False, the authorizer refuses transaction control: only the executor sets it.
        self._control_allowed = False
        self._deadline: float | None = None
        # Seconds spent waiting for write locks since the owner last reset it (for metrics).
        self.lock_wait = 0.0
        conn.authorizer = self._authorize
        conn.set_progress_handler(self._progress, _PROGRESS_STEPS)

    def _authorize(
        self, op: int, arg1: str | None, arg2: str | None, db: str | None, trigger: str | None
    ) -> int:
        if op == apsw.SQLITE_ATTACH:
            return apsw.SQLITE_OK if arg1 in ("", None) else apsw.SQLITE_DENY
        if op in (apsw.SQLITE_TRANSACTION, apsw.SQLITE_SAVEPOINT):
            return apsw.SQLITE_OK if self._control_allowed else apsw.SQLITE_DENY
        return apsw.SQLITE_OK

    def _progress(self) -> bool:
        # Returning True interrupts the running statement (apsw.InterruptError).
        return self._deadline is not None and time.monotonic() > self._deadline

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

    def start_deadline(self) -> None:
        self._deadline = time.monotonic() + self.statement_timeout

    def clear_deadline(self) -> None:
        self._deadline = None

    @property
    def in_transaction(self) -> bool:
        return bool(self.conn.in_transaction)

    def close(self) -> None:
        self.conn.close()


def open_database(
    path: Path,
    *,
    create: bool = False,
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_S,
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
    return GuardedConnection(conn, statement_timeout=statement_timeout)
