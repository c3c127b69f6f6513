"""CORS, the web console's static files, and the routes it adds (database list, lock state), through a
real `hoodydb serve`. The console itself runs in Chromium in clients/js/test/console.test.js."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess, free_port

from hoodydb.api.config import ApiConfig
from hoodydb.api.server import serve
from hoodydb.sql.paths import Roots

ALLOWED = "http://allowed.example"
FROM_ENV = "http://also-allowed.example:3000"
PREFLIGHT = {
    "Access-Control-Request-Method": "PUT",
    "Access-Control-Request-Headers": "authorization,if-match",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("consoleroot")


@pytest.fixture(scope="module")
def api(root: Path) -> Iterator[ServeProcess]:
    # A list in the environment: commas, blanks and a final / are tolerated (tests/test_config.py
    # has --cors-origin beating it).
    env = {"HOODYDB_CORS_ORIGINS": f"{ALLOWED}/, {FROM_ENV} ,"}
    with ServeProcess(["--no-mount", "--root", str(root)], root.parent, env=env) as server:
        yield server


@pytest.mark.parametrize("origin", [ALLOWED, FROM_ENV])
def test_a_preflight_from_an_allowed_origin_succeeds(api: ServeProcess, origin: str) -> None:
    response = httpx.options(f"{api.url}/api/v1/sqlite/kv/k?db=a.db", headers={"Origin": origin, **PREFLIGHT})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    assert "PUT" in response.headers["access-control-allow-methods"]
    allowed_headers = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed_headers and "if-match" in allowed_headers


def test_a_preflight_from_another_origin_fails(api: ServeProcess) -> None:
    response = httpx.options(
        f"{api.url}/api/v1/sqlite/db", headers={"Origin": "http://evil.example", **PREFLIGHT}
    )
    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers


def test_answers_to_an_allowed_origin_carry_cors_headers_errors_included(api: ServeProcess) -> None:
    headers = {"Origin": ALLOWED}
    created = api.client.post("/api/v1/sqlite/databases", json={"path": "cors.db"}, headers=headers)
    assert created.status_code == 201
    assert created.headers["access-control-allow-origin"] == ALLOWED
    api.client.put("/api/v1/sqlite/kv/k?db=cors.db", json=1, headers=headers)
    got = api.client.get("/api/v1/sqlite/kv/k?db=cors.db", headers=headers)
    # The page reads the version from ETag: it must be exposed to scripts.
    assert "etag" in got.headers["access-control-expose-headers"].lower()
    denied = httpx.get(f"{api.url}/api/v1/sqlite/databases", headers=headers)
    assert denied.status_code == 401
    assert denied.headers["access-control-allow-origin"] == ALLOWED
    other = api.client.get("/api/v1/sqlite/databases", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in other.headers


def test_cors_is_off_by_default(tmp_path: Path) -> None:
    with ServeProcess(["--no-mount", "--root", str(tmp_path / "root")], tmp_path) as server:
        preflight = httpx.options(f"{server.url}/api/v1/sqlite/db", headers={"Origin": ALLOWED, **PREFLIGHT})
        answer = server.client.get("/api/v1/sqlite/databases", headers={"Origin": ALLOWED})
    assert preflight.status_code != 200
    assert "access-control-allow-origin" not in preflight.headers
    assert answer.status_code == 200
    assert "access-control-allow-origin" not in answer.headers


def test_the_console_is_served_at_the_root(api: ServeProcess) -> None:
    page = httpx.get(f"{api.url}/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "<title>hoodydb console</title>" in page.text
    for asset, kind in [("console.js", "javascript"), ("console.css", "css"), ("hoodydb.js", "javascript")]:
        response = httpx.get(f"{api.url}/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"], asset
    assert "export function createClient" in httpx.get(f"{api.url}/hoodydb.js").text
    missing = httpx.get(f"{api.url}/nope.js")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
    # The console's catch-all mount must not make an empty route label in the metrics.
    metrics = httpx.get(f"{api.url}/metrics").text
    assert 'route="other",status="200"' in metrics and 'route=""' not in metrics


def test_the_new_routes_need_the_token(api: ServeProcess) -> None:
    for path in ["/api/v1/sqlite/databases", "/api/v1/sqlite/locks"]:
        response = httpx.get(f"{api.url}{path}")
        assert response.status_code == 401, path
        assert response.json()["code"] == "unauthorized"


def test_the_database_list_names_sqlite_files_only(api: ServeProcess, root: Path) -> None:
    listing_root = root / "listing"
    assert api.client.post("/api/v1/sqlite/databases", json={"path": "listing/empty.db"}).status_code == 201
    (listing_root / "team").mkdir()
    for name in ["listing/team/b.sqlite", "listing/.hoodydb/hidden.db"]:
        (root / name).parent.mkdir(exist_ok=True)
        with sqlite3.connect(root / name) as conn:
            conn.execute("CREATE TABLE t (x)")
    (listing_root / "notes.txt").write_text("not a database")
    (listing_root / "fake.db").write_bytes(b"SQLite format 2 and then some")
    (listing_root / "team" / "b.sqlite-journal").write_bytes(b"")
    listed = api.client.get("/api/v1/sqlite/databases").json()
    names = [d["path"] for d in listed["databases"] if d["path"].startswith("listing/")]
    assert names == ["listing/empty.db", "listing/team/b.sqlite"]
    assert listed["truncated"] is False
    sizes = {d["path"]: d["size"] for d in listed["databases"]}
    assert sizes["listing/team/b.sqlite"] == (listing_root / "team" / "b.sqlite").stat().st_size


def test_without_a_mount_the_lock_route_says_so(api: ServeProcess) -> None:
    response = api.client.get("/api/v1/sqlite/locks")
    assert response.status_code == 200
    assert response.json() == {"mounted": False, "databases": []}


def test_a_mount_whose_control_socket_does_not_answer_is_503(tmp_path: Path) -> None:
    """The API on Hypercorn in a thread, told of a control socket that nobody serves."""
    config = ApiConfig(
        roots=Roots([tmp_path]), tokens=frozenset({"t"}), control_socket=tmp_path / "gone.sock"
    )
    port, loop, stop = free_port(), asyncio.new_event_loop(), asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete, args=(serve(config, host="127.0.0.1", port=port, stop=stop),)
    )
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                response = httpx.get(
                    f"http://127.0.0.1:{port}/api/v1/sqlite/locks", headers={"Authorization": "Bearer t"}
                )
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the API did not start"
                time.sleep(0.05)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()
    assert response.status_code == 503
    assert response.json()["code"] == "unavailable"
    assert "control socket" in response.json()["error"]
