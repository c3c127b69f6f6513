"""End to end: `hoodydb serve` with a real mount; HTTP writers and native sqlite3 writers on one database.

The API opens databases through the mount, so its transactions meet the sqlite3 CLI's in the same
lock table and admission gate: nobody may see "database is locked", and every row must land.
"""

from __future__ import annotations

import concurrent.futures
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess

from hoodydb.fs.process import is_mounted

WRITERS = 20


def http_writer(server: ServeProcess, n: int) -> tuple[int, str]:
    # Read, then write, in one transaction: the pattern SQLite cannot retry on its own.
    body = {
        "transaction": [
            {"query": "SELECT count(*) AS c FROM t"},
            {"statement": "INSERT INTO t (src, n) VALUES ('http', ?)", "values": [n]},
        ]
    }
    with httpx.Client(base_url=server.url, headers=server.auth_headers(), timeout=120) as client:
        response = client.post("/api/v1/sqlite/db", params={"db": "shared.db"}, json=body)
    return response.status_code, response.text


@pytest.mark.fuse
@pytest.mark.parametrize("journal_mode", ["delete", "wal"])
def test_http_and_native_writers_share_one_database(
    serve_and_mount: tuple[ServeProcess, Path], journal_mode: str
) -> None:
    server, mnt = serve_and_mount
    assert server.client.post("/api/v1/sqlite/databases", json={"path": "shared.db"}).status_code == 201
    create = {"transaction": [{"statement": "CREATE TABLE t (id INTEGER PRIMARY KEY, src TEXT, n INTEGER)"}]}
    assert server.client.post("/api/v1/sqlite/db", params={"db": "shared.db"}, json=create).status_code == 200
    db = str(mnt / "shared.db")
    mode = subprocess.run(
        ["sqlite3", db, f"PRAGMA journal_mode={journal_mode}"], capture_output=True, text=True
    )
    assert mode.stdout.strip() == journal_mode, mode.stderr

    # The sqlite3 CLI's busy timeout is 0: without the mount, most of these would fail at once.
    native = [
        subprocess.Popen(
            [
                "sqlite3",
                db,
                f"BEGIN; SELECT count(*) FROM t; INSERT INTO t (src, n) VALUES ('cli', {n}); COMMIT;",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(WRITERS)
    ]
    with concurrent.futures.ThreadPoolExecutor(WRITERS) as pool:
        http_results = list(pool.map(lambda n: http_writer(server, n), range(WRITERS)))
    native_results = [(p.wait(120), p.communicate()[1]) for p in native]

    assert [status for status, _ in http_results] == [200] * WRITERS, http_results
    assert native_results == [(0, "")] * WRITERS
    query = {
        "transaction": [
            {"query": "SELECT src, count(*) AS c FROM t GROUP BY src ORDER BY src"},
            {"query": "PRAGMA integrity_check"},
        ]
    }
    results = server.client.post("/api/v1/sqlite/db", params={"db": "shared.db"}, json=query).json()[
        "results"
    ]
    assert results[0]["resultSet"] == [{"src": "cli", "c": WRITERS}, {"src": "http", "c": WRITERS}]
    assert results[1]["resultSet"] == [{"integrity_check": "ok"}]
    counted = subprocess.run(["sqlite3", db, "SELECT count(*) FROM t"], capture_output=True, text=True)
    assert counted.stdout.strip() == str(2 * WRITERS)


@pytest.mark.fuse
def test_serve_stops_the_api_then_unmounts(serve_and_mount: tuple[ServeProcess, Path]) -> None:
    server, mnt = serve_and_mount
    assert is_mounted(mnt)
    assert server.client.post("/api/v1/sqlite/databases", json={"path": "kv.db"}).status_code == 201
    value = {"through": "the mount"}
    assert server.client.put("/api/v1/sqlite/kv/k", params={"db": "kv.db"}, json=value).status_code == 201
    assert server.client.get("/api/v1/sqlite/kv/k", params={"db": "kv.db"}).json() == value
    assert "tokens: 1 given" in server.stdout() and "test-token" not in server.stdout()
    assert server.stop() == 0, server.stderr()
    assert not is_mounted(mnt)


@pytest.mark.fuse
def test_a_hangup_stops_serve_and_its_mount(serve_and_mount: tuple[ServeProcess, Path]) -> None:
    """The mount runs in a session of its own, so the terminal's hangup reaches only serve,
    which must then take the mount down with it rather than leave it orphaned."""
    server, mnt = serve_and_mount
    assert server.proc is not None and is_mounted(mnt)
    server.proc.send_signal(signal.SIGHUP)
    assert server.proc.wait(30) == 0, server.stderr()
    assert not is_mounted(mnt)
