"""A key-value store kept inside the database file itself, with versions (ETags) and optional TTL.

Schema: `hoodydb_kv(key, value, version, expires_at)` plus a one-row counter in `hoodydb_kv_meta`.
Versions come from that database-wide counter, never from the key's own history, so a key that is
deleted and created again never repeats a version an old `If-Match` could still match.
Values are stored as compact JSON text. An expired entry is treated as absent at once and removed
by later writes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import apsw

from hoodydb.sql import errors
from hoodydb.sql.connection import GuardedConnection
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.transaction import translate

MAX_KEY_BYTES = 4096
MAX_LIST_LIMIT = 1000
_PURGE_BATCH = 100

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hoodydb_kv (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    version INTEGER NOT NULL,
    expires_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS hoodydb_kv_expires ON hoodydb_kv (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS hoodydb_kv_meta (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO hoodydb_kv_meta (name, value) VALUES ('version', 0);
"""
_LIVE = "(expires_at IS NULL OR expires_at > :now)"


@dataclass(frozen=True)
class Entry:
    key: str
    value_json: str
    version: int
    expires_at: float | None


@dataclass(frozen=True)
class Precondition:
    """`If-Match` / `If-None-Match: *`. `match_versions` None means no If-Match was sent."""

    match_any: bool = False  # If-Match: *  (the key must exist)
    match_versions: frozenset[int] | None = None
    none_match_any: bool = False  # If-None-Match: *  (the key must not exist)
    none_match_versions: frozenset[int] | None = None

    def check(self, current: Entry | None) -> None:
        if self.none_match_any and current is not None:
            raise SqlApiError(errors.PRECONDITION_FAILED, "the key exists (If-None-Match: *)")
        if self.none_match_versions and current is not None and current.version in self.none_match_versions:
            raise SqlApiError(errors.PRECONDITION_FAILED, "If-None-Match matches the current version")
        if self.match_any and current is None:
            raise SqlApiError(errors.PRECONDITION_FAILED, "the key does not exist (If-Match: *)")
        if self.match_versions is not None and (
            current is None or current.version not in self.match_versions
        ):
            have = "absent" if current is None else f'"{current.version}"'
            raise SqlApiError(
                errors.PRECONDITION_FAILED, f"If-Match does not match the current version ({have})"
            )


def check_key(key: str) -> None:
    if not key:
        raise SqlApiError(errors.BAD_REQUEST, "the key is empty")
    if "\x00" in key:
        raise SqlApiError(errors.BAD_REQUEST, "keys may not contain NUL")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise SqlApiError(errors.BAD_REQUEST, f"keys are limited to {MAX_KEY_BYTES} bytes")


def encode_cursor(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor.encode("ascii"), altchars=b"-_", validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise SqlApiError(errors.BAD_REQUEST, "the cursor is not one this server handed out") from None


def _prefix_upper_bound(prefix: str) -> str | None:
    """The smallest string greater than every string starting with `prefix` (None: no bound).

    SQLite compares TEXT as UTF-8 bytes, whose order is code point order, so bumping the last code
    point that can be bumped gives an index-friendly range instead of a scan.
    """
    chars = list(prefix)
    while chars:
        last = ord(chars.pop()) + 1
        if 0xD800 <= last <= 0xDFFF:
            last = 0xE000
        if last <= 0x10FFFF:
            return "".join(chars) + chr(last)
    return None


@contextlib.contextmanager
def _transaction(gc: GuardedConnection, *, write: bool) -> Iterator[None]:
    """BEGIN IMMEDIATE … COMMIT to write, BEGIN … ROLLBACK to read; ROLLBACK on any error.

    SQLite's errors come out as SqlApiError with their machine-readable code.
    """
    try:
        gc.control("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield
            gc.control("COMMIT" if write else "ROLLBACK")
        except BaseException:
            if gc.in_transaction:
                gc.control("ROLLBACK")
            raise
    except (apsw.Error, UnicodeError) as exc:
        raise (translate(exc) or exc) from None


def _current(gc: GuardedConnection, key: str, now: float) -> Entry | None:
    row = gc.conn.execute(
        f"SELECT value, version, expires_at FROM hoodydb_kv WHERE key = :key AND {_LIVE}",
        {"key": key, "now": now},
    ).fetchone()
    return None if row is None else Entry(key, str(row[0]), int(row[1]), _float_or_none(row[2]))


def _float_or_none(value: object) -> float | None:
    return None if value is None else float(value)  # type: ignore[arg-type]


def _table_exists(gc: GuardedConnection) -> bool:
    row = gc.conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'hoodydb_kv'"
    ).fetchone()
    return row is not None


def get(gc: GuardedConnection, key: str, *, now: float) -> Entry | None:
    """The live entry for `key`, or None. Never writes (no table is created for a read)."""
    with _transaction(gc, write=False):
        return _current(gc, key, now) if _table_exists(gc) else None


def put(
    gc: GuardedConnection,
    key: str,
    value_json: str,
    *,
    now: float,
    ttl: float | None,
    precondition: Precondition,
) -> tuple[Entry, bool]:
    """Set `key`; returns the new entry and whether it was created (rather than replaced)."""
    with _transaction(gc, write=True):
        gc.conn.execute(_SCHEMA)
        current = _current(gc, key, now)
        precondition.check(current)
        # fetchall, not fetchone: the RETURNING statement must finish before COMMIT.
        ((counter,),) = gc.conn.execute(
            "UPDATE hoodydb_kv_meta SET value = value + 1 WHERE name = 'version' RETURNING value"
        ).fetchall()
        version = int(counter)  # type: ignore[arg-type]
        expires_at = None if ttl is None else now + ttl
        gc.conn.execute(
            "INSERT OR REPLACE INTO hoodydb_kv (key, value, version, expires_at) VALUES (?, ?, ?, ?)",
            (key, value_json, version, expires_at),
        )
        gc.conn.execute(
            "DELETE FROM hoodydb_kv WHERE key IN "
            "(SELECT key FROM hoodydb_kv WHERE expires_at <= :now LIMIT :n)",
            {"now": now, "n": _PURGE_BATCH},
        )
    return Entry(key, value_json, version, expires_at), current is None


def delete(gc: GuardedConnection, key: str, *, now: float, precondition: Precondition) -> Entry:
    """Delete `key`; `not_found` if there is no live entry."""
    with _transaction(gc, write=True):
        current = _current(gc, key, now) if _table_exists(gc) else None
        precondition.check(current)
        if current is None:
            raise SqlApiError(errors.NOT_FOUND, f"no key {key!r}")
        gc.conn.execute("DELETE FROM hoodydb_kv WHERE key = ?", (key,))
    return current


def list_entries(
    gc: GuardedConnection,
    *,
    prefix: str,
    limit: int,
    after: str | None,
    now: float,
    max_bytes: int | None = None,
) -> tuple[list[Entry], str | None]:
    """Live entries in key order, starting after the key `after`; returns (entries, next cursor).

    With `max_bytes`, the page ends early (never before its first entry) once the values it holds
    pass that size; the cursor then continues from there.
    """
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise SqlApiError(errors.BAD_REQUEST, f"limit must be between 1 and {MAX_LIST_LIMIT}")
    where = [_LIVE, "key >= :prefix"]
    params: dict[str, object] = {"now": now, "prefix": prefix, "n": limit + 1}
    upper = _prefix_upper_bound(prefix)
    if upper is not None:
        where.append("key < :upper")
        params["upper"] = upper
    if after is not None:
        where.append("key > :after")
        params["after"] = after
    columns = "key, value, version, expires_at"
    sql = f"SELECT {columns} FROM hoodydb_kv WHERE {' AND '.join(where)} ORDER BY key LIMIT :n"
    entries: list[Entry] = []
    more = False
    size = 0
    with _transaction(gc, write=False):
        if _table_exists(gc):
            cursor = gc.conn.execute(sql, params)
            for r in cursor:
                if len(entries) == limit or (max_bytes is not None and entries and size > max_bytes):
                    more = True
                    break
                entries.append(Entry(str(r[0]), str(r[1]), int(r[2]), _float_or_none(r[3])))
                size += len(entries[-1].value_json) + len(entries[-1].key)
            cursor.close()
    next_cursor = encode_cursor(entries[-1].key) if more else None
    return entries, next_cursor
