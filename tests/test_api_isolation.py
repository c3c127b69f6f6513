"""One request never changes what another request, client or native writer gets (issue 11).

Each test replays one finding against a real `hoodydb serve --no-mount` and asserts the corrected
behaviour: the connection state a request could change is refused, limits hold, memory stays flat,
abandoned work stops, and bad input is a 4xx that leaves nothing behind. Limits are small here so
the tests stay fast; the defaults are in `hoodydb/sql/limits.py`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from serve_process import ServeProcess

from hoodydb.api.health import HealthCheck, check
from hoodydb.cli.limit_options import statement_timeout_for
from hoodydb.fs.process import force_unmount
from hoodydb.locks import DEFAULT_LOCK_TIMEOUT
from hoodydb.sql.connection import DEFAULT_STATEMENT_TIMEOUT_S

STATEMENT_TIMEOUT = 2.0
LIMITS = [
    "--statement-timeout",
    str(STATEMENT_TIMEOUT),
    "--max-result-rows",
    "1000",
    "--max-result-bytes",
    "100000",
    "--max-queue",
    "3",
]
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"


def serve(root: Path, workdir: Path, *extra: str) -> ServeProcess:
    return ServeProcess(["--no-mount", "--root", str(root), *LIMITS, *extra], workdir)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[ServeProcess]:
    with serve(tmp_path / "root", tmp_path) as server:
        yield server


def root_of(api: ServeProcess) -> Path:
    flag = "--root" if "--root" in api.cmd else "--mount"
    return Path(api.cmd[api.cmd.index(flag) + 1])


def tx(
    api: ServeProcess, db: str, *items: dict[str, Any], client: httpx.Client | None = None
) -> httpx.Response:
    return (client or api.client).post(
        "/api/v1/sqlite/db", params={"db": db}, json={"transaction": list(items)}
    )


def q(sql: str, *values: Any) -> dict[str, Any]:
    return {"query": sql, "values": list(values)}


def st(sql: str, *values: Any) -> dict[str, Any]:
    return {"statement": sql, "values": list(values)}


def new_db(api: ServeProcess, name: str = "t.db") -> Path:
    assert api.client.post("/api/v1/sqlite/databases", json={"path": name}).status_code == 201
    ok = tx(api, name, st("CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT NOT NULL, pad TEXT)"))
    assert ok.status_code == 200, ok.text
    return root_of(api) / name


def refused(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "sql_error" and "not authorized" in response.json()["error"]


def names_in_file(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return [r[0] for r in db.execute("SELECT name FROM people ORDER BY id")]


# --- critical ------------------------------------------------------------------------------------


def test_memory_journal_is_refused_and_a_killed_write_loop_loses_nothing(tmp_path: Path) -> None:
    root = tmp_path / "root"
    server = serve(root, tmp_path).start()
    try:
        path = new_db(server)
        refused(tx(server, "t.db", q("PRAGMA journal_mode=MEMORY")))
        refused(tx(server, "t.db", q("PRAGMA main.journal_mode = 'off'")))
        refused(tx(server, "t.db", q("PRAGMA synchronous=OFF")))
        mode = tx(server, "t.db", q("PRAGMA journal_mode")).json()["results"][0]["resultSet"]
        assert mode == [{"journal_mode": "delete"}]
        acknowledged: list[int] = []
        stop = threading.Event()

        def write_loop() -> None:
            with httpx.Client(base_url=server.url, headers=server.auth_headers(), timeout=30) as client:
                n = 0
                while not stop.is_set():
                    n += 1
                    items = [
                        st("UPDATE people SET pad = randomblob(4000) WHERE id % 3 = ?", n % 3),
                        st("INSERT INTO people (id, name, pad) VALUES (?, 'w', randomblob(20000))", n),
                    ]
                    try:
                        response = tx(server, "t.db", *items, client=client)
                    except httpx.TransportError:
                        return
                    if response.status_code == 200:
                        acknowledged.append(n)

        writer = threading.Thread(target=write_loop)
        writer.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.proc is not None
        server.proc.kill()  # SIGKILL, mid-loop
        server.proc.wait()
        stop.set()
        writer.join()
        assert len(acknowledged) >= 40
    finally:
        server.stop()
    # A restarted server opens the same file: intact, with every acknowledged write.
    with serve(root, tmp_path) as again:
        check = tx(again, "t.db", q("PRAGMA integrity_check"), q("SELECT id FROM people"))
        assert check.status_code == 200, check.text
        results = check.json()["results"]
        assert results[0]["resultSet"] == [{"integrity_check": "ok"}]
        assert set(acknowledged) <= {row["id"] for row in results[1]["resultSet"]}
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


# --- high ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TEMP TRIGGER tamper AFTER INSERT ON main.people BEGIN "
        "UPDATE main.people SET name = upper(new.name) || ' (tampered)' WHERE id = new.id; END",
        "CREATE TRIGGER temp.tamper AFTER INSERT ON main.people BEGIN "
        "UPDATE main.people SET name = 'x' WHERE id = new.id; END",
        "CREATE TEMP TABLE people (id INTEGER PRIMARY KEY, name TEXT, pad TEXT)",
        "CREATE TABLE temp.people (id INTEGER PRIMARY KEY, name TEXT, pad TEXT)",
        "CREATE TEMP VIEW v AS SELECT 1",
        "CREATE VIRTUAL TABLE temp.people USING fts5(id, name, pad)",
    ],
)
def test_temp_objects_are_refused_so_later_writes_land_untouched(api: ServeProcess, sql: str) -> None:
    path = new_db(api)
    refused(tx(api, "t.db", st(sql)))
    ok = tx(api, "t.db", st("INSERT INTO people (name) VALUES ('grace')"))
    assert ok.status_code == 200 and ok.json()["results"][0]["rowsUpdated"] == 1
    assert names_in_file(path) == ["grace"]
    temp = tx(api, "t.db", q("SELECT count(*) AS n FROM sqlite_temp_schema")).json()["results"][0]
    assert temp["resultSet"] == [{"n": 0}]


def test_heap_limits_are_refused_and_the_service_stays_up(api: ServeProcess) -> None:
    new_db(api)
    for sql in ["PRAGMA hard_heap_limit=100000", "PRAGMA soft_heap_limit=100000", "PRAGMA threads=8"]:
        refused(tx(api, "t.db", q(sql)))
    assert (
        tx(api, "t.db", st("INSERT INTO people (name, pad) VALUES ('a', randomblob(100000))")).status_code
        == 200
    )
    kv = api.client.put("/api/v1/sqlite/kv/k", params={"db": "t.db"}, json={"big": "x" * 50000})
    assert kv.status_code == 201
    assert httpx.get(f"{api.url}/healthz").status_code == 200


def test_exclusive_locking_is_refused_and_native_writers_go_on(api: ServeProcess) -> None:
    path = new_db(api)
    refused(tx(api, "t.db", q("PRAGMA locking_mode=EXCLUSIVE")))
    mode = tx(api, "t.db", q("SELECT * FROM pragma_locking_mode")).json()["results"][0]["resultSet"]
    assert mode == [{"locking_mode": "normal"}]
    assert tx(api, "t.db", st("INSERT INTO people (name) VALUES ('http')")).status_code == 200
    native = sqlite3.connect(path, timeout=0)  # would fail at once if the API kept the file locked
    with native:
        native.execute("INSERT INTO people (name) VALUES ('native')")
    native.close()
    assert names_in_file(path) == ["http", "native"]


@pytest.mark.parametrize(
    "sql",
    [
        "PRAGMA query_only=ON",
        "PRAGMA max_page_count=1",
        "PRAGMA foreign_keys=OFF",
        "PRAGMA cache_size=1",
        "PRAGMA recursive_triggers=ON",
        "PRAGMA case_sensitive_like=ON",
        "PRAGMA writable_schema=ON",
        "PRAGMA temp_store_directory='/tmp'",
        "PRAGMA temp.journal_mode=WAL",
        "PRAGMA user_version='1; DROP TABLE people'",
    ],
)
def test_connection_settings_are_refused_and_later_writes_work(api: ServeProcess, sql: str) -> None:
    path = new_db(api)
    refused(tx(api, "t.db", q(sql)))
    assert tx(api, "t.db", st("INSERT INTO people (name) VALUES ('after')")).status_code == 200
    assert names_in_file(path) == ["after"]
    settings = tx(api, "t.db", q("PRAGMA query_only"), q("PRAGMA foreign_keys"), q("PRAGMA max_page_count"))
    results = [r["resultSet"][0] for r in settings.json()["results"]]
    assert results[0] == {"query_only": 0} and results[1] == {"foreign_keys": 1}
    assert results[2]["max_page_count"] > 1000


def test_allowed_pragmas_read_and_change_the_database_itself(api: ServeProcess) -> None:
    path = new_db(api)
    ok = tx(
        api,
        "t.db",
        q("PRAGMA table_info(people)"),
        q("SELECT name FROM pragma_table_info('people') ORDER BY cid"),
        q("PRAGMA index_list(people)"),
        q("PRAGMA foreign_key_list(people)"),
        st("PRAGMA user_version = 7"),
        st("PRAGMA application_id = 42"),
        st("PRAGMA defer_foreign_keys = ON"),
    )
    assert ok.status_code == 200, ok.text
    assert [r["name"] for r in ok.json()["results"][1]["resultSet"]] == ["id", "name", "pad"]
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (7,)
        assert db.execute("PRAGMA application_id").fetchone() == (42,)
    # WAL cannot start inside a transaction (every request is one); SQLite says so, as a 400.
    wal = tx(api, "t.db", st("PRAGMA journal_mode=WAL"))
    assert wal.status_code == 400 and "within a transaction" in wal.json()["error"]


# --- medium --------------------------------------------------------------------------------------


def test_a_huge_like_is_refused_quickly(api: ServeProcess) -> None:
    new_db(api)
    started = time.monotonic()
    like = tx(api, "t.db", q("SELECT printf('%.*c',2500000,'a') LIKE '%'||printf('%.*c',45000,'a')||'b'"))
    assert like.status_code == 400 and "pattern too complex" in like.json()["error"]
    glob = tx(api, "t.db", q("SELECT printf('%.*c',2500000,'a') GLOB '*'||printf('%.*c',45000,'a')||'b'"))
    assert glob.status_code == 400
    assert time.monotonic() - started < STATEMENT_TIMEOUT


def test_values_longer_than_the_limit_are_refused(tmp_path: Path) -> None:
    with serve(tmp_path / "root", tmp_path, "--max-value-bytes", "100000") as api:
        new_db(api)
        big = tx(api, "t.db", q("SELECT length(randomblob(200000))"))
        assert big.status_code == 400 and "too big" in big.json()["error"]
        assert tx(api, "t.db", q("SELECT length(randomblob(50000))")).status_code == 200


def test_a_runaway_statement_stops_at_the_timeout(api: ServeProcess) -> None:
    new_db(api)
    started = time.monotonic()
    response = tx(api, "t.db", q(ENDLESS))
    took = time.monotonic() - started
    assert response.status_code == 400 and response.json()["code"] == "statement_timeout"
    assert STATEMENT_TIMEOUT * 0.9 < took < STATEMENT_TIMEOUT + 3


def _peak_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_a_five_million_row_result_is_refused_with_flat_memory(api: ServeProcess) -> None:
    new_db(api)
    assert api.proc is not None
    before = _peak_rss_kb(api.proc.pid)
    rows = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000000) SELECT x FROM c"
    response = tx(api, "t.db", q(rows))
    assert response.status_code == 400 and response.json()["code"] == "result_too_large"
    assert "1000 rows" in response.json()["error"] and response.json()["reqIdx"] == 0
    assert _peak_rss_kb(api.proc.pid) - before < 20_000
    # Within the caps, results come back whole; bytes count as well as rows.
    assert len(tx(api, "t.db", q(rows.replace("5000000", "1000"))).json()["results"][0]["resultSet"]) == 1000
    wide = tx(
        api, "t.db", q("SELECT hex(randomblob(20000)) FROM (SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3)")
    )
    assert wide.status_code == 400 and "100000 bytes" in wide.json()["error"]
    # noFail does not soften the cap: the whole request fails, nothing is half-reported.
    no_fail = tx(api, "t.db", {"query": rows, "noFail": True})
    assert no_fail.status_code == 400 and no_fail.json()["code"] == "result_too_large"


def test_kv_pages_end_early_at_the_byte_cap(api: ServeProcess) -> None:
    new_db(api)
    for key in ("a", "b", "c"):
        put = api.client.put(f"/api/v1/sqlite/kv/{key}", params={"db": "t.db"}, json="v" * 60000)
        assert put.status_code == 201
    first = api.client.get("/api/v1/sqlite/kv", params={"db": "t.db"}).json()
    assert [i["key"] for i in first["items"]] == ["a", "b"] and first["nextCursor"]
    rest = api.client.get("/api/v1/sqlite/kv", params={"db": "t.db", "cursor": first["nextCursor"]}).json()
    assert [i["key"] for i in rest["items"]] == ["c"] and rest["nextCursor"] is None


def test_temp_databases_and_attach_are_refused(api: ServeProcess) -> None:
    new_db(api)
    for sql in [
        "ATTACH '' AS e2",
        "ATTACH ':memory:' AS m",
        "DETACH temp",
    ]:
        refused(tx(api, "t.db", st(sql)))
    listed = tx(api, "t.db", q("PRAGMA database_list")).json()["results"][0]["resultSet"]
    assert [d["name"] for d in listed] == ["main"]
    assert api.proc is not None
    fds = [os.readlink(f"/proc/{api.proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{api.proc.pid}/fd")]
    assert not [fd for fd in fds if fd.endswith("(deleted)")]


# --- low -----------------------------------------------------------------------------------------


def test_abandoned_requests_stop_and_the_next_one_is_quick(tmp_path: Path) -> None:
    # A long statement timeout: only the hang-ups can stop the work.
    with serve(tmp_path / "root", tmp_path, "--statement-timeout", "30") as api:
        new_db(api)

        def hang_up() -> None:
            with (
                httpx.Client(base_url=api.url, headers=api.auth_headers(), timeout=1.0) as client,
                pytest.raises(httpx.ReadTimeout),
            ):
                tx(api, "t.db", q(ENDLESS), client=client)

        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            list(pool.map(lambda _: hang_up(), range(3)))
        started = time.monotonic()
        assert tx(api, "t.db", q("SELECT 1")).status_code == 200
        assert time.monotonic() - started < 3.0
        metrics = httpx.get(f"{api.url}/metrics").text
        assert 'route="/api/v1/sqlite/db",status="499"' in metrics


def test_a_full_queue_answers_503_with_retry_after(api: ServeProcess) -> None:
    new_db(api)

    def long_query(_: int) -> httpx.Response:
        with httpx.Client(base_url=api.url, headers=api.auth_headers(), timeout=30) as client:
            return tx(api, "t.db", q(ENDLESS), client=client)

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        responses = list(pool.map(long_query, range(6)))
    full = [r for r in responses if r.status_code == 503]
    assert full and all(r.json()["code"] == "queue_full" and r.headers["retry-after"] for r in full)
    timed_out = [r for r in responses if r.status_code == 400]
    assert 1 <= len(timed_out) <= 3 and len(full) + len(timed_out) == 6
    assert all(r.json()["code"] == "statement_timeout" for r in timed_out)
    assert tx(api, "t.db", q("SELECT 1")).status_code == 200


def test_made_up_methods_do_not_grow_the_metrics(api: ServeProcess) -> None:
    def made_up(first: int, count: int) -> int:
        with httpx.Client(base_url=api.url) as client:
            for i in range(first, first + count):
                client.request(f"X{i}METHOD", f"/api/v1/sqlite/db?i={i}")
                client.request(f"Y{i}", f"/nowhere/{i}")
        return len(httpx.get(f"{api.url}/metrics").text.splitlines())

    httpx.get(f"{api.url}/metrics")  # its own series appear from the next scrape on
    series = made_up(0, 5)
    assert made_up(5, 200) == series  # only the counts changed: no new series per method
    metrics = httpx.get(f"{api.url}/metrics").text
    assert "X1METHOD" not in metrics and 'method="OTHER"' in metrics


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/".join(["d" * 100] * 5) + "/y.db", "longer than SQLite accepts"),
        ("n" * 300 + ".db", "file names are limited"),
        ("sub/" + "d" * 300 + "/y.db", "directory names are limited"),
    ],
)
def test_bad_database_paths_are_400_and_leave_nothing(api: ServeProcess, path: str, message: str) -> None:
    for _ in range(2):  # a retry gets the same answer: nothing was left behind to conflict with
        response = api.client.post("/api/v1/sqlite/databases", json={"path": path})
        assert response.status_code == 400, response.text
        assert response.json()["code"] == "bad_db_path" and message in response.json()["error"]
    assert list(root_of(api).iterdir()) == [root_of(api) / ".hoodydb"] or not list(root_of(api).iterdir())


def test_kv_keys_that_are_not_utf8_are_refused(api: ServeProcess) -> None:
    new_db(api)
    for raw in ("z%FFz", "z%FEz", "%C3"):
        response = api.client.put(f"/api/v1/sqlite/kv/{raw}", params={"db": "t.db"}, json=1)
        assert response.status_code == 400 and "UTF-8" in response.json()["error"]
    assert api.client.put("/api/v1/sqlite/kv/%C3%A9t%C3%A9", params={"db": "t.db"}, json=1).status_code == 201
    assert api.client.get("/api/v1/sqlite/kv/été", params={"db": "t.db"}).json() == 1
    assert [i["key"] for i in api.client.get("/api/v1/sqlite/kv", params={"db": "t.db"}).json()["items"]] == [
        "été"
    ]


def test_healthz_fails_when_a_root_is_gone(api: ServeProcess) -> None:
    assert httpx.get(f"{api.url}/healthz").status_code == 200
    root = root_of(api)
    root.rename(root.with_name("moved"))
    try:
        response = httpx.get(f"{api.url}/healthz")
        assert response.status_code == 503 and response.json()["code"] == "unavailable"
    finally:
        root.with_name("moved").rename(root)


def test_healthz_fails_when_sqlite_does_not_work_in_the_root(api: ServeProcess) -> None:
    probe = root_of(api) / ".hoodydb" / "health.db"
    assert httpx.get(f"{api.url}/healthz").status_code == 200 and probe.exists()
    probe.write_bytes(b"not a database " * 1000)
    try:
        response = httpx.get(f"{api.url}/healthz")
        assert response.status_code == 503 and "SQLite does not work" in response.json()["error"]
    finally:
        probe.unlink()
    assert httpx.get(f"{api.url}/healthz").status_code == 200


def test_a_hung_health_check_is_not_started_again(tmp_path: Path) -> None:
    release = threading.Event()
    started: list[int] = []

    def hung(roots: list[str]) -> str | None:
        started.append(1)
        release.wait(10)
        return None

    health = HealthCheck(["/"], timeout=0.2, checker=hung)

    async def ask(n: int) -> list[str | None]:
        return list(await asyncio.gather(*(health.problem() for _ in range(n))))

    answers = asyncio.run(ask(10)) + asyncio.run(ask(10))
    assert all(a is not None and "did not finish" in a for a in answers)
    assert len(started) == 1  # one stuck thread, however often it is asked
    release.set()
    time.sleep(0.1)
    assert asyncio.run(ask(1)) == [None] and len(started) == 2
    assert check([str(tmp_path)]) is None  # the real check, for comparison


# --- the statement timeout and the mount's lock timeout ------------------------------------------


def test_the_default_statement_timeout_stays_below_the_lock_timeout() -> None:
    assert statement_timeout_for(None, DEFAULT_LOCK_TIMEOUT, mounted=True) < DEFAULT_LOCK_TIMEOUT
    assert statement_timeout_for(None, 3.0, mounted=True) == 2.0
    assert statement_timeout_for(None, 3.0, mounted=False) == DEFAULT_STATEMENT_TIMEOUT_S
    assert statement_timeout_for(1.0, 3.0, mounted=True) == 1.0
    assert statement_timeout_for(40.0, 3.0, mounted=False) == 40.0
    with pytest.raises(click.UsageError):
        statement_timeout_for(40.0, DEFAULT_LOCK_TIMEOUT, mounted=True)


@pytest.mark.fuse
def test_an_http_reader_never_makes_a_native_writer_time_out(tmp_path: Path) -> None:
    data, mnt = tmp_path / "data", tmp_path / "mnt"
    # --lock-timeout 3 and no --statement-timeout: the API's is tied to 2 s.
    server = ServeProcess(["--data", str(data), "--mount", str(mnt), "--lock-timeout", "3"], tmp_path)
    try:
        server.start()
        new_db(server)
        assert tx(server, "t.db", st("INSERT INTO people (name) VALUES ('http')")).status_code == 200
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            reader = pool.submit(
                tx,
                server,
                "t.db",
                q("SELECT count(*) FROM people"),
                q(ENDLESS.replace("FROM c", "FROM c, people")),
            )
            time.sleep(0.5)  # the reader holds the database now
            started = time.monotonic()
            native = subprocess.run(
                ["sqlite3", str(mnt / "t.db"), "INSERT INTO people (name) VALUES ('native')"],
                capture_output=True,
                text=True,
                timeout=60,
            )
            waited = time.monotonic() - started
            response = reader.result(timeout=60)
        assert native.returncode == 0, native.stderr
        assert waited > 1.0  # it did queue behind the reader, and got its turn within 3 s
        assert response.status_code == 400 and response.json()["code"] == "statement_timeout"
        assert names_in_file(mnt / "t.db") == ["http", "native"]
    finally:
        server.stop()
        force_unmount(mnt)
