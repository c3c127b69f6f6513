"""Scoped tokens through a real `hoodydb serve` and its mount: every attempt outside a token's scope
is refused and changes nothing, as the sqlite3 CLI reads the files through the mount afterwards.

Tokens are made with `hoodydb token create` while the server runs (it picks them up without a
restart). SQLite has no trigger on SELECT: the trigger cases are a read-only token's writes to a
table whose trigger would write elsewhere, and to a view whose INSTEAD OF trigger would.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess

from hoodydb.access.verifier import WRONG_SECRET_WINDOW_S, WRONG_SECRETS_PER_WINDOW
from hoodydb.client import HoodyClient, HoodyHttpError
from hoodydb.fs.process import force_unmount

pytestmark = pytest.mark.fuse

API = "/api/v1/sqlite"
DATABASES = ["main.db", "wal.db", "other.db", "secret.db", "reports/q1.db", "reports/sub/deep.db"]
SCHEMA = [
    "CREATE TABLE t (id INTEGER PRIMARY KEY, x INTEGER)",
    "CREATE TABLE audit (what TEXT)",
    "CREATE TRIGGER t_upd AFTER UPDATE ON t BEGIN INSERT INTO audit VALUES ('update'); END",
    "CREATE VIEW v AS SELECT id, x FROM t",
    "CREATE TRIGGER v_ins INSTEAD OF INSERT ON v BEGIN INSERT INTO t (x) VALUES (NEW.x); END",
    "INSERT INTO t (x) VALUES (1), (2)",
]


@dataclass
class Served:
    server: ServeProcess
    data: Path
    mnt: Path

    def token(self, *args: str) -> str:
        """A new token from `hoodydb token create`, run as an operator would."""
        name = f"t{time.monotonic_ns()}"
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "hoodydb",
                "token",
                "create",
                "--data",
                str(self.data),
                "--name",
                name,
                *args,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "hoodydb", "token", *args, "--data", str(self.data)],
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout

    def call(self, token: str, method: str, path: str, **kwargs: object) -> httpx.Response:
        return self.server.client.request(
            method,
            API + path,
            headers={"Authorization": f"Bearer {token}"},
            **kwargs,  # type: ignore[arg-type]
        )

    def sql(self, token: str, db: str, *items: dict[str, object]) -> httpx.Response:
        return self.call(token, "POST", "/db", params={"db": db}, json={"transaction": list(items)})

    def snapshot(self) -> dict[str, str]:
        """Every file under the mount, and each database's dump, as the sqlite3 CLI reads them."""
        found: dict[str, str] = {}
        for directory, subdirs, files in os.walk(self.mnt):
            subdirs[:] = [d for d in subdirs if d != ".hoodydb"]
            for name in files:
                path = Path(directory, name)
                rel = str(path.relative_to(self.mnt))
                if rel.endswith(("-wal", "-shm", "-journal")):
                    continue
                if path.is_symlink():
                    found[rel] = "-> " + os.readlink(path)
                    continue
                found[rel] = read_through_mount(path)
        return found


def read_through_mount(path: Path) -> str:
    if path.stat().st_size == 0:
        return ""
    done = subprocess.run(
        [
            "sqlite3",
            str(path),
            "PRAGMA integrity_check",
            "PRAGMA user_version",
            "PRAGMA journal_mode",
            ".dump",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout.startswith("ok\n"), done.stdout
    return done.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    assert shutil.which("sqlite3"), "the sqlite3 CLI is required"
    tmp = tmp_path_factory.mktemp("scoped")
    data, mnt = tmp / "data", tmp / "mnt"
    server = ServeProcess(["--data", str(data), "--mount", str(mnt)], tmp, token="admin-token")
    try:
        server.start()
        s = Served(server, data, mnt)
        for db in DATABASES:
            assert s.call("admin-token", "POST", "/databases", json={"path": db}).status_code == 201
            items = [{"statement": sql} for sql in SCHEMA]
            assert s.sql("admin-token", db, *items).status_code == 200, db
            key = s.call("admin-token", "PUT", "/kv/k", params={"db": db}, json={"in": db})
            assert key.status_code == 201
        # Outside a transaction, as the API never is: a native client through the mount.
        mode = subprocess.run(
            ["sqlite3", str(mnt / "wal.db"), "PRAGMA journal_mode = WAL"], capture_output=True
        )
        assert mode.stdout.strip() == b"wal", mode.stderr
        # A symlink inside the root, from the reports/ directory to a database outside it.
        os.symlink("../secret.db", mnt / "reports" / "link.db")
        yield s
    finally:
        server.stop()
        force_unmount(mnt)  # only matters if serve itself died before it could unmount


def refused(response: httpx.Response, status: int, scope: str | None = None) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    if status == 403:
        assert body["code"] == "forbidden" and body["scope"] == scope, body
    if status == 401:
        assert body["code"] == "unauthorized"


# --- read-only -----------------------------------------------------------------------------------

READ_ONLY_WRITES = [
    {"statement": "INSERT INTO t (x) VALUES (3)"},
    {"statement": "UPDATE t SET x = x + 1"},  # its trigger would write audit
    {"statement": "DELETE FROM t"},
    {"statement": "CREATE TABLE u (y)"},
    {"statement": "DROP TABLE audit"},
    {"statement": "INSERT INTO v (x) VALUES (5)"},  # the view's INSTEAD OF trigger would write t
    {"statement": "INSERT INTO t (x) VALUES (6)", "noFail": True},
    {"query": "INSERT INTO t (x) VALUES (4) RETURNING id"},
    {"query": "WITH n(v) AS (SELECT 7) INSERT INTO t (x) SELECT v FROM n RETURNING x"},
    {"query": "PRAGMA user_version = 1"},
    {"query": "PRAGMA journal_mode = DELETE"},
    {"query": "PRAGMA journal_mode = WAL"},
]
# Refused to every token (admin too): still refused, as SQL errors (400).
REFUSED_FOR_ALL = [
    {"query": "PRAGMA writable_schema = ON"},
    {"query": "ATTACH 'other.db' AS o"},
    {"query": f"ATTACH '{'/' * 2}etc/passwd' AS o"},
    {"query": "VACUUM"},
    {"query": "VACUUM INTO 'copy.db'"},
]


@pytest.mark.parametrize("db", ["main.db", "wal.db"])
def test_a_read_only_token_reads_but_cannot_change_anything(served: Served, db: str) -> None:
    token = served.token("--read-only")
    # The very statements below, run by the admin first, sit in the connection's statement cache.
    assert served.sql("admin-token", db, {"statement": "INSERT INTO t (x) VALUES (3)"}).status_code == 200
    before = served.snapshot()
    for item in READ_ONLY_WRITES:
        response = served.sql(token, db, {"query": "SELECT count(*) AS n FROM t"}, item)
        refused(response, 403, "write")
        assert response.json()["reqIdx"] == 1
    for item in REFUSED_FOR_ALL:
        refused(served.sql(token, db, item), 400)
    refused(served.call(token, "PUT", "/kv/k", params={"db": db}, json=1), 403, "write")
    refused(served.call(token, "PUT", "/kv/new", params={"db": db}, json=1), 403, "write")
    refused(served.call(token, "DELETE", "/kv/k", params={"db": db}), 403, "write")
    refused(served.call(token, "POST", "/databases", json={"path": "made-by-reader.db"}), 403, "write")
    refused(served.call(token, "POST", "/databases", json={"path": "newdir/made.db"}), 403, "write")
    assert served.snapshot() == before
    assert not (served.mnt / "newdir").exists()

    # What it may do, it does.
    rows = served.sql(token, db, {"query": "SELECT x FROM v ORDER BY id"}, {"query": "PRAGMA user_version"})
    assert rows.status_code == 200
    assert [r["x"] for r in rows.json()["results"][0]["resultSet"]][:2] == [1, 2]
    # A statement item that only reads is fine, and takes no write lock.
    assert served.sql(token, db, {"statement": "SELECT 1"}).status_code == 200
    assert served.call(token, "GET", "/kv/k", params={"db": db}).json() == {"in": db}
    assert served.call(token, "GET", "/kv", params={"db": db}).status_code == 200
    assert served.call(token, "GET", "/token").json()["readOnly"] is True
    # The admin still writes on the same connection afterwards.
    assert served.sql("admin-token", db, {"statement": "INSERT INTO t (x) VALUES (8)"}).status_code == 200


# --- --db -----------------------------------------------------------------------------------------


def test_a_db_scoped_token_stays_inside_its_glob(served: Served) -> None:
    token = served.token("--db", "reports/*")
    before = served.snapshot()
    outside = [
        "other.db",
        "reports/sub/deep.db",  # '*' stays inside reports/
        str(served.mnt / "other.db"),  # absolute
        "reports/link.db",  # a symlink inside the root, to secret.db
        str(served.mnt / "reports" / "link.db"),
        "reports%2F..%2Fsecret.db",  # a name with a literal %2F (the query string decodes once)
        "./secret.db",
        "reports/./../secret.db",
    ]
    for db in outside:
        response = served.sql(token, db, {"query": "SELECT count(*) FROM t"})
        assert response.status_code in (400, 403), (db, response.text)
        if response.status_code == 400:
            assert response.json()["code"] in ("path_outside_roots", "bad_db_path"), (db, response.text)
        else:
            refused(response, 403, "database")
        refused(served.call(token, "GET", "/kv/k", params={"db": db}), response.status_code, "database")
        refused(
            served.call(token, "PUT", "/kv/k", params={"db": db}, json=2), response.status_code, "database"
        )
    # URL-encoded spellings on the wire, exactly as sent.
    for raw in ["other%2Edb", "reports%2F..%2Fother.db", "reports%252F..%252Fother.db", "%2Fetc%2Fpasswd"]:
        response = served.server.client.post(
            f"{API}/db?db={raw}",
            headers={"Authorization": f"Bearer {token}"},
            json={"transaction": [{"query": "SELECT 1"}]},
        )
        assert response.status_code in (400, 403), (raw, response.text)
    # From inside its scope, ATTACH of a database outside it is refused too (as for everyone).
    for target in ["../other.db", str(served.mnt / "other.db"), "link.db"]:
        refused(served.sql(token, "reports/q1.db", {"query": f"ATTACH '{target}' AS o"}), 400)
    # Creating databases outside: refused, and no directory is left behind.
    for path in ["elsewhere/new.db", "new.db", "reports/sub/new.db", str(served.mnt / "x.db")]:
        refused(served.call(token, "POST", "/databases", json={"path": path}), 403, "database")
    assert not (served.mnt / "elsewhere").exists()
    assert served.snapshot() == before

    # Inside: everything works, by relative or absolute name.
    ok = served.sql(token, "reports/q1.db", {"statement": "INSERT INTO t (x) VALUES (10)"})
    assert ok.status_code == 200
    assert served.sql(token, str(served.mnt / "reports/q1.db"), {"query": "SELECT 1"}).status_code == 200
    assert served.call(token, "PUT", "/kv/k", params={"db": "reports/q1.db"}, json=3).status_code == 200
    created = served.call(token, "POST", "/databases", json={"path": "reports/new.db"})
    assert created.status_code == 201
    listed = served.call(token, "GET", "/databases").json()["databases"]
    assert sorted(d["path"] for d in listed) == ["reports/new.db", "reports/q1.db"]
    locks = served.call(token, "GET", "/locks").json()
    assert all(d["database"].startswith("reports/") for d in locks["databases"]), locks
    everything = served.call("admin-token", "GET", "/locks").json()["databases"]
    if locks["mounted"] and everything:
        assert {d["database"] for d in locks["databases"]} <= {d["database"] for d in everything}
    after = served.snapshot()
    assert {k for k in after if k not in before} == {"reports/new.db"}
    assert after["other.db"] == before["other.db"] and after["secret.db"] == before["secret.db"]


# --- --kv-only ------------------------------------------------------------------------------------


def test_a_kv_only_token_reaches_only_the_kv_routes(served: Served) -> None:
    token = served.token("--kv-only", "--db", "main.db")
    before = served.snapshot()
    refused(served.sql(token, "main.db", {"statement": "DELETE FROM t"}), 403, "sql")
    refused(served.sql(token, "main.db", {"query": "SELECT * FROM t"}), 403, "sql")
    refused(served.call(token, "POST", "/databases", json={"path": "kv.db"}), 403, "sql")
    refused(served.call(token, "GET", "/databases"), 403, "sql")
    refused(served.call(token, "GET", "/locks"), 403, "sql")
    refused(served.call(token, "PUT", "/kv/k", params={"db": "other.db"}, json=0), 403, "database")
    # Spellings of a SQL route that start like a KV one, sent exactly as written.
    body = b'{"transaction": [{"statement": "DELETE FROM t"}]}'
    for raw_path in [
        f"{API}/kv/../db?db=main.db",
        f"{API}/kv/%2E%2E/db?db=main.db",
        f"{API}/kv%2F..%2Fdb?db=main.db",
        f"/{API}/db?db=main.db",
        f"{API}//db?db=main.db",
        f"{API}/kv/../../../api/v1/sqlite/db?db=main.db",
    ]:
        connection = http.client.HTTPConnection("127.0.0.1", served.server.port, timeout=30)
        try:
            connection.request("POST", raw_path, body=body, headers={"Authorization": f"Bearer {token}"})
            status = connection.getresponse().status
        finally:
            connection.close()
        assert status != 200, raw_path
    assert served.snapshot() == before
    assert served.call(token, "PUT", "/kv/kv-only", params={"db": "main.db"}, json=[1]).status_code == 201
    assert served.call(token, "GET", "/kv/kv-only", params={"db": "main.db"}).json() == [1]
    assert served.call(token, "DELETE", "/kv/kv-only", params={"db": "main.db"}).status_code == 200
    assert served.call(token, "GET", "/token").json()["kvOnly"] is True


# --- 401: unknown, revoked, expired; picked up without a restart; counted by reason -------------


def test_revoked_expired_and_unknown_tokens_are_refused_and_counted(served: Served) -> None:
    token = served.token()
    assert served.call(token, "GET", "/token").status_code == 200
    name = served.call(token, "GET", "/token").json()["name"]
    assert "last used never" not in next(
        line for line in served.cli("list").splitlines() if line.startswith(name)
    )
    served.cli("revoke", name)
    refused(served.call(token, "GET", "/token"), 401)
    assert "revoked" in served.call(token, "GET", "/token").json()["error"]

    short = served.token("--expires", "1s")
    assert served.call(short, "GET", "/token").status_code == 200
    time.sleep(1.2)
    response = served.call(short, "GET", "/token")
    refused(response, 401)
    assert "expired" in response.json()["error"]

    token_id = token.split("_")[1]
    for bad in [f"hdb_{token_id}_wrong-secret", "hdb_0123456789abcdef_x", token + "x", "admin-token2"]:
        refused(served.call(bad, "GET", "/token"), 401)
    refused(served.server.client.get(API + "/token", headers={"Authorization": ""}), 401)

    metrics = served.server.client.get("/metrics").text
    for status, reason in [
        ("401", "revoked"),
        ("401", "expired"),
        ("401", "unknown"),
        ("401", "missing"),
    ]:
        assert f'hoodydb_auth_refusals_total{{reason="{reason}",status="{status}"}}' in metrics, reason


def test_a_flood_of_wrong_secrets_is_throttled_and_the_holder_keeps_working(served: Served) -> None:
    token = served.token()
    assert served.call(token, "GET", "/token").status_code == 200
    guess = token.rsplit("_", 1)[0] + "_guess"
    for _ in range(WRONG_SECRETS_PER_WINDOW):
        refused(served.call(guess, "GET", "/token"), 401)
    response = served.call(guess, "GET", "/token")
    assert response.status_code == 429, response.text
    assert response.json()["code"] == "too_many_attempts"
    assert 1 <= int(response.headers["Retry-After"]) <= WRONG_SECRET_WINDOW_S
    assert served.call(token, "GET", "/token").status_code == 200
    metrics = served.server.client.get("/metrics").text
    assert 'hoodydb_auth_refusals_total{reason="throttled",status="429"}' in metrics


def test_403s_are_counted_by_the_scope_they_lack(served: Served) -> None:
    reader, scoped, kv_only = (
        served.token("--read-only"),
        served.token("--db", "x/*"),
        served.token("--kv-only"),
    )
    refused(served.sql(reader, "main.db", {"statement": "DELETE FROM t"}), 403, "write")
    refused(served.sql(scoped, "main.db", {"query": "SELECT 1"}), 403, "database")
    refused(served.call(kv_only, "GET", "/databases"), 403, "sql")
    metrics = served.server.client.get("/metrics").text
    for reason in ["write", "database", "sql"]:
        assert f'hoodydb_auth_refusals_total{{reason="{reason}",status="403"}}' in metrics, reason


def test_the_admin_token_keeps_full_power(served: Served) -> None:
    assert served.call("admin-token", "GET", "/token").json()["admin"] is True
    names = {d["path"] for d in served.call("admin-token", "GET", "/databases").json()["databases"]}
    assert {"main.db", "other.db", "reports/q1.db"} <= names


def test_the_python_client_needs_only_the_token(served: Served) -> None:
    with HoodyClient(served.server.url, served.token("--read-only", "--db", "main.db")) as client:
        rows = client.exec_transaction("main.db", [{"query": "SELECT count(*) AS n FROM t"}])
        assert rows["results"][0]["success"] is True
        with pytest.raises(HoodyHttpError) as refused_write:
            client.exec_transaction("main.db", [{"statement": "DELETE FROM t"}])
        assert refused_write.value.status == 403 and refused_write.value.code == "forbidden"
        with pytest.raises(HoodyHttpError) as refused_db:
            client.kv_get("other.db", "k")
        assert refused_db.value.status == 403 and refused_db.value.code == "forbidden"
