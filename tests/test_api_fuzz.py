"""Property-based fuzz of every operation in the OpenAPI document: no input may produce a 5xx.

Requests are built from the document's operations with hypothesis: schema-shaped bodies with
random values, wrong types, stray fields, raw bytes; random keys, paths, query values and
precondition headers. Every answer must be a documented, non-5xx status, and every error must
have the one JSON error shape. Bounded to a few hundred requests so it runs in seconds.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import apsw
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_process import ServeProcess

from hoodydb.api.openapi import document
from hoodydb.client import key_path

OPERATIONS = sorted((path, method) for path, ops in document()["paths"].items() for method in ops)
# Every pragma this SQLite knows, and values that would change a connection or the process.
PRAGMAS = sorted(str(name) for (name,) in apsw.Connection(":memory:").execute("PRAGMA pragma_list"))
PRAGMA_VALUES = ["0", "1", "ON", "OFF", "MEMORY", "EXCLUSIVE", "WAL", "-1", "100000", "'/tmp'", "fuzz_t"]
STATE_CHANGERS = [
    "CREATE TEMP TABLE f (a, b)",
    "CREATE TEMP TRIGGER tr AFTER INSERT ON main.f BEGIN DELETE FROM main.f; END",
    "CREATE TEMP VIEW v AS SELECT 1",
    "CREATE TABLE temp.t2 (a)",
    "CREATE INDEX temp.i ON f (a)",
    "ATTACH '' AS e",
    "ATTACH ':memory:' AS m",
    "ATTACH 'file:x?mode=memory' AS u",
    "DETACH main",
]


def pragma_forms(name: str, value: str) -> list[str]:
    return [
        f"PRAGMA {name}",
        f"PRAGMA {name} = {value}",
        f"PRAGMA main.{name} = {value}",
        f"PRAGMA temp.{name}({value})",
        f"SELECT * FROM pragma_{name}",
        f"SELECT * FROM pragma_{name}('{value}')",
    ]


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
sql = st.one_of(
    st.sampled_from(
        [
            "SELECT 1",
            "SELECT ?",
            "SELECT :a, :b",
            "CREATE TABLE IF NOT EXISTS f (a UNIQUE, b)",
            "INSERT INTO f VALUES (?, ?)",
            "INSERT INTO f VALUES (:a, :b)",
            "INSERT OR ROLLBACK INTO f VALUES (1, 1)",
            "SELECT * FROM f",
            "DELETE FROM f",
            "DROP TABLE IF EXISTS f",
            "COMMIT",
            "BEGIN",
            "SAVEPOINT s",
            "ATTACH 'x.db' AS x",
            "VACUUM",
            "PRAGMA integrity_check",
            "SELECT x'00ff', 1e999, -1e999",
            "SELECT CAST(x'ff' AS TEXT)",
            "SELECT * FROM hoodydb_kv",
            "SELECT 1; SELECT 2",
            "",
            ";",
            *STATE_CHANGERS,
        ]
    ),
    st.builds(
        lambda name, value, form: pragma_forms(name, value)[form],
        st.sampled_from(PRAGMAS),
        st.sampled_from(PRAGMA_VALUES),
        st.integers(0, 5),
    ),
    st.text(max_size=30),
)
values = st.one_of(
    st.lists(json_values, max_size=3),
    st.dictionaries(st.sampled_from(["a", "b", "c"]), json_values),
    json_values,
)
item = st.one_of(
    st.fixed_dictionaries(
        {"query": sql},
        optional={"values": values, "noFail": st.one_of(st.booleans(), json_values)},
    ),
    st.fixed_dictionaries(
        {"statement": sql},
        optional={
            "values": values,
            "valuesBatch": st.one_of(st.lists(values, max_size=3), json_values),
            "noFail": st.booleans(),
        },
    ),
    st.dictionaries(
        st.sampled_from(["query", "statement", "values", "exec", "noFail"]), json_values, max_size=3
    ),
    json_values,
)
transaction_body = st.one_of(
    st.fixed_dictionaries(
        {"transaction": st.lists(item, max_size=4)},
        optional={"resultFormat": st.one_of(st.sampled_from(["map", "list"]), json_values)},
    ),
    json_values,
)
database_body = st.one_of(
    st.fixed_dictionaries({"path": st.one_of(st.text(max_size=20), json_values)}), json_values
)
ascii_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20)
# Header values as a client can send them: printable ASCII, no surrounding blanks.
header_text = ascii_text.map(str.strip).filter(bool)
db_names = st.one_of(
    st.sampled_from(
        ["fuzz.db", "fuzz.db", "missing.db", "../x.db", "/etc/passwd", ".hoodydb/token", "", "a.db-wal"]
    ),
    st.text(max_size=20),
)
query_values = st.one_of(st.none(), ascii_text, st.text(max_size=10), st.integers().map(str))


def raw_or_json(bodies: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    return st.one_of(bodies.map(lambda v: json.dumps(v).encode()), st.binary(max_size=64))


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, dict[str, str], dict[str, str], bytes]:
    path, method = draw(st.sampled_from(OPERATIONS))
    params: dict[str, str] = {}
    headers: dict[str, str] = {}
    if path.startswith("/api/"):
        db = draw(st.one_of(st.none(), db_names))
        if db is not None:
            params["db"] = db
    if "{key}" in path:
        key = draw(st.one_of(st.text(min_size=1, max_size=30), st.sampled_from(["k", "..", ".", "a/b"])))
        path = path.replace("{key}", key_path(key).rsplit("/", 1)[1])
    for name in ("prefix", "limit", "cursor", "ttl"):
        if (value := draw(query_values)) is not None:
            params[name] = value
    etags = st.one_of(st.none(), st.sampled_from(["*", '"1"', '"2", "3"', 'W/"1"']), header_text)
    for name in ("If-Match", "If-None-Match"):
        if (value := draw(etags)) is not None:
            headers[name] = value
    body = b""
    if method in ("post", "put"):
        bodies = (
            transaction_body
            if path.endswith("/db")
            else database_body
            if path.endswith("/databases")
            else json_values
        )
        body = draw(raw_or_json(bodies))
    return method.upper(), path, params, headers, body


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("fuzzroot")
    args = ["--no-mount", "--root", str(root), "--statement-timeout", "2", "--max-body-bytes", "4096"]
    with ServeProcess(args, root.parent) as server:
        assert server.client.post("/api/v1/sqlite/databases", json={"path": "fuzz.db"}).status_code == 201
        yield server


@settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    derandomize=True,
)
@given(request=requests())
def test_no_input_makes_the_server_fail(
    api: ServeProcess, request: tuple[str, str, dict[str, str], dict[str, str], bytes]
) -> None:
    method, path, params, headers, body = request
    response = api.client.request(method, path, params=params, headers=headers, content=body)
    documented = {int(s) for s in document()["paths"][_template(path)][method.lower()]["responses"]}
    assert response.status_code < 500, (request, response.text)
    assert response.status_code in documented | {400, 401, 404, 412}, (
        request,
        response.status_code,
        response.text,
    )
    if response.status_code >= 400:
        error = response.json()
        assert isinstance(error["error"], str) and isinstance(error["code"], str)
        assert set(error) <= {"error", "code", "reqIdx"}


def _template(path: str) -> str:
    if path.startswith("/api/v1/sqlite/kv/"):
        return "/api/v1/sqlite/kv/{key}"
    return path


def test_the_server_is_still_healthy_after_fuzzing(api: ServeProcess) -> None:
    assert api.client.get("/healthz").status_code == 200
    assert "Traceback" not in api.stderr()


def _one(api: ServeProcess, sql: str) -> httpx.Response:
    body = {"transaction": [{"statement": sql}]}
    return api.client.post("/api/v1/sqlite/db", params={"db": "fuzz.db"}, json=body)


def test_every_pragma_and_state_change_leaves_the_connection_as_it_was(api: ServeProcess) -> None:
    """Every pragma SQLite knows, in every form, with values that would change a connection."""
    for sql in STATE_CHANGERS:
        response = _one(api, sql)
        assert response.status_code == 400 and response.json()["code"] == "sql_error", (sql, response.text)
    statements = {
        sql: None for name in PRAGMAS for value in PRAGMA_VALUES for sql in pragma_forms(name, value)
    }
    for sql in statements:
        response = _one(api, sql)
        assert response.status_code in (200, 400), (sql, response.text)
        assert set(response.json()) <= {"results", "error", "code", "reqIdx"}
    state = {
        "PRAGMA journal_mode": "delete",
        "PRAGMA locking_mode": "normal",
        "PRAGMA query_only": 0,
        "PRAGMA foreign_keys": 1,
        "PRAGMA recursive_triggers": 0,
        "PRAGMA synchronous": 2,
        "SELECT count(*) FROM sqlite_temp_schema": 0,
        "SELECT count(*) FROM pragma_database_list WHERE name NOT IN ('main', 'temp')": 0,
        "SELECT 'a' LIKE 'A'": 1,
    }
    for sql, expected in state.items():
        answer = api.client.post(
            "/api/v1/sqlite/db", params={"db": "fuzz.db"}, json={"transaction": [{"query": sql}]}
        )
        assert answer.status_code == 200, (sql, answer.text)
        assert list(answer.json()["results"][0]["resultSet"][0].values()) == [expected], sql
    root = Path(api.cmd[api.cmd.index("--root") + 1])
    native = sqlite3.connect(root / "fuzz.db", timeout=0)
    with native:
        native.execute("CREATE TABLE IF NOT EXISTS native_after_fuzz (a)")
    native.close()
    assert api.client.get("/healthz").status_code == 200
