"""The transaction executor on real apsw connections to temporary files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import pytest

from hoodydb.sql import errors
from hoodydb.sql.connection import GuardedConnection, open_database
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.transaction import execute_transaction, parse_transaction


@pytest.fixture
def gc(tmp_path: Path) -> Iterator[GuardedConnection]:
    conn = open_database(tmp_path / "t.db", create=True, statement_timeout=2.0)
    conn.conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, val TEXT NOT NULL UNIQUE)")
    yield conn
    conn.close()


def run(gc: GuardedConnection, body: Any) -> list[dict[str, Any]]:
    return execute_transaction(gc, parse_transaction(body))


def count(gc: GuardedConnection) -> int:
    return int(gc.conn.execute("SELECT count(*) FROM t").fetchall()[0][0])


def fails(gc: GuardedConnection, body: Any) -> SqlApiError:
    with pytest.raises(SqlApiError) as info:
        run(gc, body)
    return info.value


def test_seed_shape_statement_and_query(gc: GuardedConnection) -> None:
    results = run(
        gc,
        {
            "transaction": [
                {"statement": "INSERT INTO t (val) VALUES (:v)", "values": {"v": "a"}},
                {"statement": "INSERT INTO t (val) VALUES (?)", "valuesBatch": [["b"], ["c"]]},
                {"query": "SELECT id, val FROM t ORDER BY id"},
            ]
        },
    )
    assert results[0] == {"success": True, "rowsUpdated": 1}
    assert results[1] == {"success": True, "rowsUpdatedBatch": [1, 1]}
    assert results[2]["resultSet"] == [{"id": 1, "val": "a"}, {"id": 2, "val": "b"}, {"id": 3, "val": "c"}]


def test_list_format_has_headers_even_when_empty(gc: GuardedConnection) -> None:
    (result,) = run(gc, {"transaction": [{"query": "SELECT id, val FROM t"}], "resultFormat": "list"})
    assert result == {"success": True, "resultHeaders": ["id", "val"], "resultSet": []}


def test_blobs_and_non_finite_floats_become_json(gc: GuardedConnection) -> None:
    (result,) = run(gc, {"transaction": [{"query": "SELECT x'00ff' AS b, 1e999 AS f, NULL AS n"}]})
    assert result["resultSet"] == [{"b": "AP8=", "f": None, "n": None}]


def test_failing_item_rolls_everything_back_and_names_its_index(gc: GuardedConnection) -> None:
    error = fails(
        gc,
        {
            "transaction": [
                {"statement": "INSERT INTO t (val) VALUES ('x')"},
                {"statement": "INSERT INTO nope VALUES (1)"},
            ]
        },
    )
    assert (error.code, error.req_idx) == (errors.SQL_ERROR, 1)
    assert count(gc) == 0
    assert not gc.in_transaction


def test_constraint_violation(gc: GuardedConnection) -> None:
    error = fails(gc, {"transaction": [{"statement": "INSERT INTO t (val) VALUES ('x'), ('x')"}]})
    assert (error.code, error.req_idx) == (errors.CONSTRAINT_VIOLATION, 0)
    assert count(gc) == 0


def test_no_fail_item_is_undone_alone(gc: GuardedConnection) -> None:
    results = run(
        gc,
        {
            "transaction": [
                {"statement": "INSERT INTO t (val) VALUES ('a')"},
                # A batch whose second row fails: its first row must not stay behind.
                {
                    "statement": "INSERT INTO t (val) VALUES (?)",
                    "valuesBatch": [["b"], ["a"]],
                    "noFail": True,
                },
                {"statement": "INSERT INTO t (val) VALUES ('c')"},
            ]
        },
    )
    assert results[1]["success"] is False and "UNIQUE" in results[1]["error"]
    assert [r[0] for r in gc.conn.execute("SELECT val FROM t ORDER BY val")] == ["a", "c"]


def test_or_rollback_inside_no_fail_fails_the_request(gc: GuardedConnection) -> None:
    run(gc, {"transaction": [{"statement": "INSERT INTO t (val) VALUES ('a')"}]})
    error = fails(
        gc,
        {
            "transaction": [
                {"statement": "INSERT INTO t (val) VALUES ('b')"},
                {"statement": "INSERT OR ROLLBACK INTO t (val) VALUES ('a')", "noFail": True},
                {"statement": "INSERT INTO t (val) VALUES ('c')"},
            ]
        },
    )
    assert error.req_idx == 1
    assert count(gc) == 1 and not gc.in_transaction


@pytest.mark.parametrize("sql", ["COMMIT", "BEGIN", "ROLLBACK", "SAVEPOINT x", "END"])
def test_transaction_control_is_refused(gc: GuardedConnection, sql: str) -> None:
    error = fails(
        gc, {"transaction": [{"statement": "INSERT INTO t (val) VALUES ('a')"}, {"statement": sql}]}
    )
    assert (error.code, error.req_idx) == (errors.SQL_ERROR, 1)
    assert count(gc) == 0


@pytest.mark.parametrize(
    "sql", ["ATTACH '/tmp/hoodydb-escape.db' AS x", "VACUUM INTO '/tmp/hoodydb-escape.db'"]
)
def test_attach_and_vacuum_into_cannot_escape(gc: GuardedConnection, sql: str) -> None:
    error = fails(gc, {"transaction": [{"query": sql}]})
    assert error.code == errors.SQL_ERROR
    assert not Path("/tmp/hoodydb-escape.db").exists()


def test_plain_vacuum_is_allowed_outside_a_transaction_only(gc: GuardedConnection) -> None:
    # VACUUM cannot run inside a transaction; it fails cleanly instead of breaking the connection.
    assert fails(gc, {"transaction": [{"query": "VACUUM"}]}).code == errors.SQL_ERROR
    run(gc, {"transaction": [{"query": "SELECT 1"}]})


def test_runaway_query_is_interrupted(gc: GuardedConnection) -> None:
    gc.statement_timeout = 0.2
    sql = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c"
    error = fails(gc, {"transaction": [{"statement": "INSERT INTO t (val) VALUES ('a')"}, {"query": sql}]})
    assert (error.code, error.req_idx) == (errors.STATEMENT_TIMEOUT, 1)
    assert count(gc) == 0
    run(gc, {"transaction": [{"statement": "INSERT INTO t (val) VALUES ('a')"}]})
    assert count(gc) == 1


def test_read_only_transactions_use_deferred_begin(gc: GuardedConnection) -> None:
    assert not parse_transaction({"transaction": [{"query": "SELECT 1"}]}).writes
    assert parse_transaction({"transaction": [{"query": "SELECT 1"}, {"statement": "SELECT 1"}]}).writes


@pytest.mark.parametrize(
    ("body", "code", "idx"),
    [
        ([], errors.BAD_REQUEST, None),
        ({}, errors.BAD_REQUEST, None),
        ({"transaction": []}, errors.BAD_REQUEST, None),
        ({"transaction": "SELECT 1"}, errors.BAD_REQUEST, None),
        ({"transaction": [{"query": "SELECT 1"}], "resultFormat": "xml"}, errors.BAD_REQUEST, None),
        ({"transaction": [{"query": "SELECT 1"}], "extra": 1}, errors.BAD_REQUEST, None),
        ({"transaction": [{"query": "SELECT 1"}, {"exec": "SELECT 1"}]}, errors.UNKNOWN_ITEM_KIND, 1),
        ({"transaction": [{"query": "SELECT 1", "statement": "SELECT 1"}]}, errors.UNKNOWN_ITEM_KIND, 0),
        ({"transaction": [5]}, errors.BAD_REQUEST, 0),
        ({"transaction": [{"query": ""}]}, errors.BAD_REQUEST, 0),
        ({"transaction": [{"query": 1}]}, errors.BAD_REQUEST, 0),
        ({"transaction": [{"query": "SELECT ?", "values": [[1]]}]}, errors.BAD_VALUES, 0),
        ({"transaction": [{"query": "SELECT ?", "values": 3}]}, errors.BAD_VALUES, 0),
        ({"transaction": [{"query": "SELECT ?", "values": [2**64]}]}, errors.BAD_VALUES, 0),
        ({"transaction": [{"query": "SELECT ?", "valuesBatch": [[1]]}]}, errors.BAD_REQUEST, 0),
        ({"transaction": [{"statement": "SELECT ?", "valuesBatch": 1}]}, errors.BAD_VALUES, 0),
        ({"transaction": [{"statement": "SELECT 1", "noFail": "yes"}]}, errors.BAD_REQUEST, 0),
        ({"transaction": [{"statement": "SELECT 1", "typo": 1}]}, errors.BAD_REQUEST, 0),
    ],
)
def test_malformed_requests(body: Any, code: str, idx: int | None) -> None:
    with pytest.raises(SqlApiError) as info:
        parse_transaction(body)
    assert (info.value.code, info.value.req_idx) == (code, idx)


@pytest.mark.parametrize(
    ("item", "code"),
    [
        ({"query": "SELECT :a, :b", "values": {"a": 1}}, errors.BAD_VALUES),
        ({"query": "SELECT ?, ?", "values": [1]}, errors.BAD_VALUES),
        ({"query": "SELEKT 1"}, errors.SQL_ERROR),
    ],
)
def test_binding_and_syntax_errors(gc: GuardedConnection, item: dict[str, Any], code: str) -> None:
    error = fails(gc, {"transaction": [{"query": "SELECT 1"}, item]})
    assert (error.code, error.req_idx) == (code, 1)


def test_rows_updated_counts_only_this_item(gc: GuardedConnection) -> None:
    results = run(
        gc,
        {
            "transaction": [
                {"statement": "INSERT INTO t (val) VALUES ('a'), ('b')"},
                {"statement": "CREATE TABLE u (x)"},
                {"statement": "INSERT INTO t (val) VALUES ('c') RETURNING id"},
            ]
        },
    )
    assert [r["rowsUpdated"] for r in results] == [2, 0, 1]


def test_a_transient_protocol_error_reruns_the_whole_transaction(gc: GuardedConnection) -> None:
    calls: list[int] = []

    def flaky() -> int:
        calls.append(1)
        if len(calls) < 3:
            raise apsw.ProtocolError("locking protocol")
        return 1

    gc.conn.create_scalar_function("flaky", flaky)
    results = run(
        gc,
        {
            "transaction": [
                {"statement": "INSERT INTO t (val) VALUES ('a')"},
                {"query": "SELECT flaky() AS f"},
            ]
        },
    )
    assert results[1]["resultSet"] == [{"f": 1}] and len(calls) == 3
    assert count(gc) == 1  # the failed attempts left nothing behind


def test_a_protocol_error_that_persists_is_503_class_not_a_client_error(gc: GuardedConnection) -> None:
    def always() -> int:
        raise apsw.ProtocolError("locking protocol")

    gc.conn.create_scalar_function("always", always)
    error = fails(
        gc, {"transaction": [{"statement": "INSERT INTO t (val) VALUES ('a')"}, {"query": "SELECT always()"}]}
    )
    assert (error.code, error.req_idx) == (errors.DATABASE_LOCKED, 1)
    assert count(gc) == 0
