"""A read-only token's jobs, on real SQLite files: every write is refused by SQLite and changes nothing.

SQLite asks the authorizer while it prepares a statement, so these run the executor and the KV
functions exactly as the API does, on a connection whose earlier (writing) jobs filled apsw's
statement cache, and compare the file's full dump before and after.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hoodydb.sql import kv
from hoodydb.sql.connection import GuardedConnection, open_database
from hoodydb.sql.errors import ForbiddenError, SqlApiError
from hoodydb.sql.transaction import execute_transaction, parse_transaction

SCHEMA = [
    "CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)",
    "CREATE TABLE audit (what TEXT)",
    "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO audit VALUES ('insert'); END",
    "CREATE TRIGGER t_upd AFTER UPDATE ON t BEGIN INSERT INTO audit VALUES ('update'); END",
    "CREATE VIEW v AS SELECT id, x FROM t",
    "CREATE TRIGGER v_ins INSTEAD OF INSERT ON v BEGIN INSERT INTO t (x) VALUES (NEW.x); END",
    "INSERT INTO t (x) VALUES (1), (2)",
]
# (kind, SQL): each must come back `forbidden` (scope `write`) from a read-only job.
WRITES = [
    ("statement", "INSERT INTO t (x) VALUES (3)"),
    ("statement", "UPDATE t SET x = x + 1"),
    ("statement", "DELETE FROM t"),
    ("statement", "CREATE TABLE u (y)"),
    ("statement", "CREATE INDEX t_x ON t (x)"),
    ("statement", "DROP TABLE audit"),
    ("statement", "DROP TRIGGER t_ins"),
    ("statement", "ALTER TABLE t ADD COLUMN z"),
    ("statement", "INSERT INTO v (x) VALUES (5)"),  # the view's INSTEAD OF trigger would write
    ("statement", "REINDEX"),
    ("statement", "ANALYZE"),
    ("query", "INSERT INTO t (x) VALUES (4) RETURNING id"),
    ("query", "DELETE FROM t RETURNING *"),
    ("query", "WITH n(v) AS (SELECT 7) INSERT INTO t (x) SELECT v FROM n RETURNING x"),
    ("query", "PRAGMA user_version = 1"),
    ("query", "PRAGMA application_id = 5"),
    ("query", "PRAGMA journal_mode = DELETE"),
    ("query", "PRAGMA journal_mode = WAL"),
    ("query", "PRAGMA incremental_vacuum"),
    ("query", "PRAGMA optimize"),
]
# Refused for every token (admin too): they stay refused, as plain SQL errors.
REFUSED_FOR_ALL = [
    "PRAGMA writable_schema = ON",
    "PRAGMA query_only = OFF",
    "ATTACH 'other.db' AS o",
    "VACUUM",
    "CREATE TEMP TABLE tt (a)",
    "BEGIN",
    "COMMIT",
]
READS = [
    "SELECT * FROM t",
    "SELECT * FROM v",
    "PRAGMA user_version",
    "PRAGMA journal_mode",
    "PRAGMA integrity_check",
    "SELECT * FROM pragma_table_info('t')",
    "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 5) SELECT sum(n) FROM c",
]


def dump(path: Path) -> list[str]:
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        meta = [str(con.execute(f"PRAGMA {p}").fetchone()) for p in ("user_version", "journal_mode")]
        return [*meta, *con.iterdump()]
    finally:
        con.close()


@pytest.fixture(params=["delete", "wal"])
def gc(request: pytest.FixtureRequest, tmp_path: Path) -> GuardedConnection:
    path = tmp_path / "main.db"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA journal_mode = {request.param}")
    for sql in SCHEMA:
        con.execute(sql)
    con.commit()
    con.close()
    (tmp_path / "other.db").touch()
    conn = open_database(path)
    # Fill apsw's statement cache with the very writes the read-only jobs will try.
    for kind, sql in WRITES:
        if kind == "statement" and not sql.startswith(("DROP", "ALTER", "CREATE")):
            execute_transaction(conn, parse_transaction({"transaction": [{kind: sql}]}))
    kv.put(conn, "k", '"v"', now=0.0, ttl=None, precondition=kv.Precondition())
    return conn


def run(gc: GuardedConnection, items: list[dict[str, object]]) -> object:
    return gc.read_only_job(lambda c: execute_transaction(c, parse_transaction({"transaction": items})))


@pytest.mark.parametrize(("kind", "sql"), WRITES)
def test_a_read_only_job_cannot_write(gc: GuardedConnection, kind: str, sql: str) -> None:
    path = Path(gc.conn.filename)
    before = dump(path)
    for no_fail in (False, True):
        with pytest.raises(ForbiddenError) as refused:
            run(gc, [{"query": "SELECT 1"}, {kind: sql, "noFail": no_fail}])
        assert refused.value.scope == "write" and refused.value.req_idx == 1
    assert dump(path) == before
    # The connection is a writer again for the next (admin) job.
    assert not gc.read_only
    execute_transaction(
        gc, parse_transaction({"transaction": [{"statement": "INSERT INTO t (x) VALUES (9)"}]})
    )


@pytest.mark.parametrize("sql", REFUSED_FOR_ALL)
def test_what_nobody_may_do_stays_refused(gc: GuardedConnection, sql: str) -> None:
    path = Path(gc.conn.filename)
    before = dump(path)
    with pytest.raises(SqlApiError):
        run(gc, [{"query": sql}])
    assert dump(path) == before


@pytest.mark.parametrize("sql", READS)
def test_a_read_only_job_reads(gc: GuardedConnection, sql: str) -> None:
    results = run(gc, [{"query": sql}])
    assert isinstance(results, list) and results[0]["success"] is True


def test_kv_reads_work_and_writes_are_refused(gc: GuardedConnection) -> None:
    path = Path(gc.conn.filename)
    before = dump(path)
    entry = gc.read_only_job(lambda c: kv.get(c, "k", now=0.0))
    assert entry is not None and entry.value_json == '"v"'
    with pytest.raises(ForbiddenError):
        gc.read_only_job(lambda c: kv.put(c, "k", '"w"', now=0.0, ttl=None, precondition=kv.Precondition()))
    with pytest.raises(ForbiddenError):
        gc.read_only_job(lambda c: kv.delete(c, "k", now=0.0, precondition=kv.Precondition()))
    assert dump(path) == before


def test_query_only_is_off_again_after_a_failed_read_only_job(gc: GuardedConnection) -> None:
    with pytest.raises(ForbiddenError):
        run(gc, [{"statement": "DELETE FROM t"}])
    assert gc.conn.execute("PRAGMA query_only").fetchone() == (0,)
    gc.read_only_job(lambda c: c.conn.execute("PRAGMA query_only").fetchone() == (1,))
    assert gc.read_only_job(lambda c: c.conn.execute("PRAGMA query_only").fetchone()) == (1,)


def test_query_only_stops_a_cached_write_the_authorizer_never_saw(gc: GuardedConnection) -> None:
    # apsw reuses a prepared statement by its text without asking the authorizer again: the API's
    # read-only jobs bypass the cache, and query_only stops any that would not.
    path = Path(gc.conn.filename)
    gc.conn.execute("SELECT count(*) FROM audit").fetchall()
    gc.conn.execute("INSERT INTO audit VALUES ('cached')")
    before = dump(path)
    with pytest.raises(ForbiddenError):
        gc.read_only_job(lambda c: c.conn.execute("INSERT INTO audit VALUES ('cached')"))
    assert dump(path) == before


def test_a_read_only_job_that_times_out_leaves_the_connection_writable(gc: GuardedConnection) -> None:
    gc.statement_timeout = 0.05
    endless = "WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c) SELECT count(*) FROM c"
    with pytest.raises(SqlApiError) as stopped:
        run(gc, [{"query": endless}])
    assert stopped.value.code == "statement_timeout"
    assert not gc.read_only and gc.conn.execute("PRAGMA query_only").fetchone() == (0,)
    written = execute_transaction(
        gc, parse_transaction({"transaction": [{"statement": "DELETE FROM audit"}]})
    )
    assert written[0]["success"] is True
