"""The server as a whole: OpenAPI document, metrics, concurrency, and clean shutdown on SIGTERM."""

from __future__ import annotations

import concurrent.futures
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess

from hoodydb.api.app import routes
from hoodydb.api.metrics import Metrics
from hoodydb.api.openapi import document


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    root = tmp_path_factory.mktemp("serverroot")
    with ServeProcess(["--no-mount", "--root", str(root)], root.parent) as server:
        yield server


def test_openapi_document_lists_exactly_the_routes(api: ServeProcess) -> None:
    served = api.client.get("/openapi.json").json()
    assert served == document()
    documented = {(path, method.upper()) for path, ops in served["paths"].items() for method in ops}
    actual = {
        (route.path.replace("{key:path}", "{key}"), method)
        for route in routes(Metrics())
        for method in (route.methods or set()) - {"HEAD"}
    }
    assert documented == actual


def test_metrics_count_requests_and_lock_waits(api: ServeProcess) -> None:
    api.client.post("/api/v1/sqlite/databases", json={"path": "m.db"})
    api.client.post(
        "/api/v1/sqlite/db", params={"db": "m.db"}, json={"transaction": [{"statement": "SELECT 1"}]}
    )
    text = api.client.get("/metrics").text
    assert 'hoodydb_http_requests_total{method="POST",route="/api/v1/sqlite/db",status="200"}' in text
    assert "hoodydb_http_request_duration_seconds_bucket" in text
    assert "hoodydb_sql_lock_wait_seconds_count" in text
    assert "hoodydb_sql_queue_wait_seconds_count" in text
    assert "hoodydb_open_databases" in text


def test_many_concurrent_writers_to_one_database(api: ServeProcess) -> None:
    api.client.post("/api/v1/sqlite/databases", json={"path": "busy.db"})
    create = {"transaction": [{"statement": "CREATE TABLE t (n INTEGER PRIMARY KEY)"}]}
    assert api.client.post("/api/v1/sqlite/db", params={"db": "busy.db"}, json=create).status_code == 200

    def write(n: int) -> int:
        body = {
            "transaction": [
                {"query": "SELECT count(*) AS c FROM t"},
                {"statement": "INSERT INTO t (n) VALUES (?)", "values": [n]},
            ]
        }
        with httpx.Client(base_url=api.url, headers=api.auth_headers(), timeout=60) as client:
            return client.post("/api/v1/sqlite/db", params={"db": "busy.db"}, json=body).status_code

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        statuses = list(pool.map(write, range(200)))
    assert statuses == [200] * 200
    count = {"transaction": [{"query": "SELECT count(*) AS c FROM t"}]}
    result = api.client.post("/api/v1/sqlite/db", params={"db": "busy.db"}, json=count).json()
    assert result["results"][0]["resultSet"] == [{"c": 200}]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_stop_signal_ends_the_server_cleanly(tmp_path: Path, signum: int) -> None:
    server = ServeProcess(["--no-mount", "--root", str(tmp_path / "r")], tmp_path).start()
    server.client.post("/api/v1/sqlite/databases", json={"path": "a.db"})
    assert server.proc is not None
    server.proc.send_signal(signum)
    try:
        assert server.proc.wait(20) == 0, server.stderr()
    except subprocess.TimeoutExpired:
        server.stop()
        raise
    finally:
        server.client.close()
    assert "Traceback" not in server.stderr()


# `serve` stops at its usage errors before serving or mounting, but a test that runs `serve` is in
# the stage that has both (tests/stages.py cannot tell from the command that it will stop).
@pytest.mark.fuse
@pytest.mark.http
def test_usage_errors(tmp_path: Path) -> None:
    for args in (["--no-mount"], ["--data", str(tmp_path)], ["--no-mount", "--mount", str(tmp_path)]):
        result = subprocess.run(
            [sys.executable, "-m", "hoodydb", "serve", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2 and "Error" in result.stderr


def test_a_lock_held_past_the_busy_timeout_is_503_database_locked(tmp_path: Path) -> None:
    root = tmp_path / "r"
    args = ["--no-mount", "--root", str(root), "--busy-timeout", "0.2"]
    with ServeProcess(args, tmp_path) as server:
        server.client.post("/api/v1/sqlite/databases", json={"path": "locked.db"})
        write = {"transaction": [{"statement": "CREATE TABLE IF NOT EXISTS t (x)"}]}
        holder = sqlite3.connect(root / "locked.db", isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # a native writer that keeps its transaction open
            response = server.client.post("/api/v1/sqlite/db", params={"db": "locked.db"}, json=write)
            assert response.status_code == 503 and response.json()["code"] == "database_locked"
            assert response.headers["retry-after"] == "1"
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert (
            server.client.post("/api/v1/sqlite/db", params={"db": "locked.db"}, json=write).status_code == 200
        )
