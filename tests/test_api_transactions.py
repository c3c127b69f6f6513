"""`POST /api/v1/sqlite/db` and `POST /api/v1/sqlite/databases` through a real `hoodydb serve`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_process import ServeProcess

DB = "/api/v1/sqlite/db"
DATABASES = "/api/v1/sqlite/databases"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("root")


@pytest.fixture(scope="module")
def api(root: Path) -> Iterator[ServeProcess]:
    with ServeProcess(
        ["--no-mount", "--root", str(root), "--max-body-bytes", "100000"], root.parent
    ) as server:
        yield server


@pytest.fixture
def db(api: ServeProcess, request: pytest.FixtureRequest) -> str:
    """A fresh database with table t(id, val UNIQUE), named after the test."""
    name = f"{request.node.name.replace('[', '_').replace(']', '_')}.db"
    assert api.client.post(DATABASES, json={"path": name}).status_code == 201
    tx(api, name, [{"statement": "CREATE TABLE t (id INTEGER PRIMARY KEY, val TEXT NOT NULL UNIQUE)"}])
    return name


def tx(api: ServeProcess, db: str, items: list[dict[str, Any]], **extra: Any) -> list[dict[str, Any]]:
    response = api.client.post(DB, params={"db": db}, json={"transaction": items, **extra})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


def error(response: httpx.Response, status: int, code: str, req_idx: int | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code and isinstance(body["error"], str) and body["error"]
    assert body.get("reqIdx") == req_idx
    return body


def vals(api: ServeProcess, db: str) -> list[str]:
    rows = tx(api, db, [{"query": "SELECT val FROM t ORDER BY val"}])[0]["resultSet"]
    return [r["val"] for r in rows]


def test_seed_flow_create_insert_query(api: ServeProcess) -> None:
    created = api.client.post(DATABASES, json={"path": "seed.db"})
    assert created.status_code == 201 and created.json() == {"path": "seed.db", "created": True}
    results = tx(
        api,
        "seed.db",
        [
            {"statement": "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)"},
            {"statement": "INSERT INTO people (name) VALUES (:name)", "values": {"name": "Ada"}},
            {"statement": "INSERT INTO people (name) VALUES (?)", "valuesBatch": [["Brian"], ["Carla"]]},
        ],
    )
    assert results == [
        {"success": True, "rowsUpdated": 0},
        {"success": True, "rowsUpdated": 1},
        {"success": True, "rowsUpdatedBatch": [1, 1]},
    ]
    (query,) = tx(api, "seed.db", [{"query": "SELECT * FROM people ORDER BY id"}])
    assert query["resultSet"] == [
        {"id": 1, "name": "Ada"},
        {"id": 2, "name": "Brian"},
        {"id": 3, "name": "Carla"},
    ]
    (listed,) = tx(
        api,
        "seed.db",
        [{"query": "SELECT name FROM people WHERE id = ?", "values": [2]}],
        resultFormat="list",
    )
    assert listed == {"success": True, "resultHeaders": ["name"], "resultSet": [["Brian"]]}


def test_absolute_path_under_the_root(api: ServeProcess, root: Path, db: str) -> None:
    tx(api, str(root / db), [{"statement": "INSERT INTO t (val) VALUES ('abs')"}])
    assert vals(api, db) == ["abs"]


def test_sql_error_points_at_the_item_and_commits_nothing(api: ServeProcess, db: str) -> None:
    items = [
        {"statement": "INSERT INTO t (val) VALUES ('a')"},
        {"statement": "INSERT INTO missing VALUES (1)"},
    ]
    error(api.client.post(DB, params={"db": db}, json={"transaction": items}), 400, "sql_error", 1)
    assert vals(api, db) == []


def test_constraint_violation_is_409_and_commits_nothing(api: ServeProcess, db: str) -> None:
    items = [
        {"statement": "INSERT INTO t (val) VALUES ('a')"},
        {"statement": "INSERT INTO t (val) VALUES ('b')"},
        {"statement": "INSERT INTO t (val) VALUES ('a')"},
    ]
    error(api.client.post(DB, params={"db": db}, json={"transaction": items}), 409, "constraint_violation", 2)
    assert vals(api, db) == []


def test_no_fail_keeps_going(api: ServeProcess, db: str) -> None:
    results = tx(
        api,
        db,
        [
            {"statement": "INSERT INTO t (val) VALUES ('a')"},
            {"statement": "INSERT INTO t (val) VALUES ('a')", "noFail": True},
            {"statement": "INSERT INTO nope VALUES (1)", "noFail": True},
            {"statement": "INSERT INTO t (val) VALUES ('b')"},
        ],
    )
    assert [r["success"] for r in results] == [True, False, False, True]
    assert "error" in results[1] and "error" in results[2]
    assert vals(api, db) == ["a", "b"]


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"not json",
        b'{"transaction": [}',
        b"\xff\xfe",
        b'{"transaction": [{"query": NaN}]}',
        b"[" * 100000,
    ],
)
def test_bad_json(api: ServeProcess, db: str, content: bytes) -> None:
    response = api.client.post(DB, params={"db": db}, content=content)
    error(
        response,
        413 if len(content) > 100000 else 400,
        "body_too_large" if len(content) > 100000 else "bad_json",
    )


def test_deeply_nested_json_is_bad_json_not_a_crash(api: ServeProcess, db: str) -> None:
    response = api.client.post(DB, params={"db": db}, content=b"[" * 50000 + b"]" * 50000)
    error(response, 400, "bad_json")


@pytest.mark.parametrize(
    ("body", "code", "idx"),
    [
        ({"transaction": [{"query": "SELECT 1"}, {"exec": "SELECT 1"}]}, "unknown_item_kind", 1),
        ({"transaction": [{"query": "SELECT 1", "statement": "SELECT 1"}]}, "unknown_item_kind", 0),
        ({"transaction": []}, "bad_request", None),
        ({"transactions": []}, "bad_request", None),
        ([1, 2], "bad_request", None),
        ("SELECT 1", "bad_request", None),
        ({"transaction": [{"query": "SELECT ?", "values": [{"nested": 1}]}]}, "bad_values", 0),
        ({"transaction": [{"query": "SELECT :a", "values": {}}]}, "bad_values", 0),
        ({"transaction": [{"query": "SELECT 1"}], "resultFormat": "csv"}, "bad_request", None),
        ({"transaction": [{"statement": "COMMIT"}]}, "sql_error", 0),
        ({"transaction": [{"query": "ATTACH '/tmp/x.db' AS x"}]}, "sql_error", 0),
    ],
)
def test_malformed_transactions(api: ServeProcess, db: str, body: Any, code: str, idx: int | None) -> None:
    error(api.client.post(DB, params={"db": db}, json=body), 400, code, idx)


def test_missing_and_unknown_database(api: ServeProcess) -> None:
    body = {"transaction": [{"query": "SELECT 1"}]}
    error(api.client.post(DB, json=body), 400, "bad_request")
    error(api.client.post(DB, params={"db": "nope.db"}, json=body), 404, "db_not_found")


@pytest.mark.parametrize(
    "db", ["../outside.db", "a/../../outside.db", "/etc/passwd", "/tmp/x.db", "%2e%2e/outside.db"]
)
def test_paths_outside_the_roots(api: ServeProcess, db: str) -> None:
    body = {"transaction": [{"query": "SELECT 1"}]}
    response = api.client.post(DB, params={"db": db}, json=body)
    if db.startswith("%"):  # the server gets the literal name '%2e%2e/…' (query values are decoded once)
        error(response, 404, "db_not_found")
    else:
        error(response, 400, "path_outside_roots")


def test_symlink_escape(api: ServeProcess, root: Path) -> None:
    outside = root.parent / "outside.db"
    outside.write_bytes(b"")
    os.symlink(outside, root / "escape.db")
    response = api.client.post(DB, params={"db": "escape.db"}, json={"transaction": [{"query": "SELECT 1"}]})
    error(response, 400, "path_outside_roots")
    response = api.client.post(DATABASES, json={"path": "escape.db"})
    assert response.status_code in (400, 409)


def test_not_a_database(api: ServeProcess, root: Path) -> None:
    (root / "text.db").write_bytes(b"hello, I am certainly not a database file" * 100)
    response = api.client.post(DB, params={"db": "text.db"}, json={"transaction": [{"query": "SELECT 1"}]})
    error(response, 400, "not_a_database")


def test_oversized_body_is_413_with_and_without_length(api: ServeProcess, db: str) -> None:
    big = b'{"transaction": [{"query": "SELECT \'' + b"x" * 200_000 + b"'\"}]}"
    error(api.client.post(DB, params={"db": db}, content=big), 413, "body_too_large")

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    error(api.client.post(DB, params={"db": db}, content=chunks()), 413, "body_too_large")
    assert api.client.get("/healthz").status_code == 200


def test_create_database_errors(api: ServeProcess, root: Path) -> None:
    assert api.client.post(DATABASES, json={"path": "sub/dir/made.db"}).status_code == 201
    assert (root / "sub" / "dir" / "made.db").stat().st_size > 0
    error(api.client.post(DATABASES, json={"path": "sub/dir/made.db"}), 409, "db_exists")
    error(api.client.post(DATABASES, json={"path": "../evil.db"}), 400, "path_outside_roots")
    error(api.client.post(DATABASES, json={"path": "/etc/evil.db"}), 400, "path_outside_roots")
    error(api.client.post(DATABASES, json={"path": "x.db-wal"}), 400, "bad_db_path")
    error(api.client.post(DATABASES, json={"path": ".hoodydb/x.db"}), 400, "bad_db_path")
    error(api.client.post(DATABASES, json={"path": 5}), 400, "bad_request")
    error(api.client.post(DATABASES, json={}), 400, "bad_request")
    error(api.client.post(DATABASES, content=b"{"), 400, "bad_json")
    assert not (root.parent / "evil.db").exists()


def test_unknown_routes_and_methods_use_the_error_shape(api: ServeProcess) -> None:
    error(api.client.get("/api/v1/sqlite/nothing"), 404, "not_found")
    error(api.client.get(DB), 405, "method_not_allowed")
    error(api.client.get("/nothing"), 404, "not_found")
