"""`GET /api/v1/sqlite/events` on a real `hoodydb serve` and its mount: HTTP and native writers
in one feed, each commit once and in order with its writer's pid; a resumed stream misses
nothing; a hundred idle subscribers cost the server and the daemon bounded memory and no CPU."""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from serve_process import ServeProcess

from hoodydb import control_client
from tests.feed_events import SSE, take_commits
from tests.proc_stats import rss_kib

# Each test runs serve with its mount: http and fuse both (the http stage runs them).
pytestmark = pytest.mark.fuse
EVENTS = "/api/v1/sqlite/events"


def parse_sse(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Server-sent events as {"event", "id", "data"}; a comment line as {"event": "comment"}."""
    event: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if "data" in event:  # not the `retry:` block
                yield event
            event = {}
        elif line.startswith(":"):
            yield {"event": "comment", "data": line[1:].strip()}
        else:
            field, _, value = line.partition(": ")
            event[field] = json.loads(value) if field in ("data", "id") else value


@contextmanager
def subscribed(server: ServeProcess, **params: Any) -> Iterator[queue.Queue[dict[str, Any]]]:
    """The SSE stream as a queue, read by a thread until the block ends; `ready` taken first."""
    events: queue.Queue[dict[str, Any]] = queue.Queue()
    headers = server.auth_headers()
    if "token" in params:
        headers["Authorization"] = f"Bearer {params.pop('token')}"
    if "last_event_id" in params:
        headers["Last-Event-ID"] = params.pop("last_event_id")
    client = httpx.Client(base_url=server.url, headers=headers, timeout=httpx.Timeout(30, read=None))
    response = client.send(client.build_request("GET", EVENTS, params=params), stream=True)
    assert response.status_code == 200, response.read()
    assert response.headers["content-type"].startswith("text/event-stream")

    def read() -> None:
        try:
            for event in parse_sse(response.iter_lines()):
                events.put(event)
        except httpx.HTTPError:
            pass

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    ready = events.get(timeout=10)
    assert ready["event"] == "ready", ready
    try:
        yield events
    finally:
        response.close()
        client.close()


def next_commits(events: queue.Queue[dict[str, Any]], n: int, quiet: float = 1.0) -> list[dict[str, Any]]:
    return take_commits(events, n, SSE, quiet)


def sql(server: ServeProcess, db: str, *items: dict[str, Any]) -> httpx.Response:
    return server.client.post("/api/v1/sqlite/db", params={"db": db}, json={"transaction": list(items)})


NATIVE = """
import os, sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
for i in range(int(sys.argv[2])):
    conn.execute("INSERT INTO t(src) VALUES ('native')")
print(os.getpid(), flush=True)
"""


def test_http_and_native_commits_in_one_feed_with_their_pids(
    serve_and_mount: tuple[ServeProcess, Path],
) -> None:
    server, mnt = serve_and_mount
    assert server.proc is not None
    create = "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, src TEXT UNIQUE)"
    subprocess.run(["sqlite3", str(mnt / "app.db"), create], check=True, capture_output=True)
    with subscribed(server, db="app.db", heartbeat=0.2) as events:
        for i in range(5):
            ok = sql(server, "app.db", {"statement": "INSERT INTO t(src) VALUES (?)", "values": [f"http{i}"]})
            assert ok.status_code == 200, ok.text
        # A transaction that fails rolls back: no event.
        clash = sql(server, "app.db", {"statement": "INSERT INTO t(src) VALUES ('http0')"})
        assert clash.status_code == 409
        native = subprocess.run(
            [
                sys.executable,
                "-c",
                NATIVE.replace("'native'", "'native' || random()"),
                str(mnt / "app.db"),
                "3",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        got = next_commits(events, 8)
    seqs = [e["data"]["seq"] for e in got]
    assert seqs == list(range(seqs[0], seqs[0] + 8))
    pids = [e["data"]["pid"] for e in got]
    assert pids == [server.proc.pid] * 5 + [int(native.stdout)] * 3
    assert [e["data"]["token"] for e in got] == ["admin"] * 5 + [None] * 3
    assert all(e["id"] == {"app.db": e["data"]["seq"]} for e in got)
    conn = sqlite3.connect(mnt / "app.db")
    assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == 8
    conn.close()


# A native process claiming to write for a token: the mount refuses the label.
FORGER = """
import errno, os, sqlite3, sys
try:
    os.setxattr(sys.argv[1], "user.hoodydb.writer", b"admin")
    print("accepted")
except OSError as exc:
    print(errno.errorcode[exc.errno])
conn = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
conn.execute("INSERT INTO t(src) VALUES ('forged')")
"""


def test_each_http_commit_names_its_token_and_nobody_else_can_claim_one(
    serve_and_mount: tuple[ServeProcess, Path], tmp_path: Path
) -> None:
    server, mnt = serve_and_mount
    create = "PRAGMA journal_mode=WAL; CREATE TABLE t(id INTEGER PRIMARY KEY, src TEXT)"
    subprocess.run(["sqlite3", str(mnt / "app.db"), create], check=True, capture_output=True)
    make = [sys.executable, "-m", "hoodydb", "token", "create", "--data", str(tmp_path / "data")]
    ingest = subprocess.run([*make, "--name", "ingest"], capture_output=True, text=True, check=True)
    as_ingest = {"Authorization": f"Bearer {ingest.stdout.strip()}"}
    insert = {"transaction": [{"statement": "INSERT INTO t(src) VALUES ('http')"}]}
    with subscribed(server, db="app.db", heartbeat=0.2) as events:
        for headers in ({}, as_ingest, as_ingest, {}, as_ingest):
            ok = server.client.post(
                "/api/v1/sqlite/db", params={"db": "app.db"}, json=insert, headers=headers
            )
            assert ok.status_code == 200, ok.text
        kv = server.client.put(
            "/api/v1/sqlite/kv/greeting", params={"db": "app.db"}, json="hi", headers=as_ingest
        )
        assert kv.status_code in (200, 201), kv.text
        forger = subprocess.run(
            [sys.executable, "-c", FORGER, str(mnt / "app.db")], capture_output=True, text=True, check=True
        )
        got = next_commits(events, 7)
    assert forger.stdout.strip() == "ENOTSUP"
    assert server.proc is not None
    assert forger.stdout.strip() == "ENOTSUP"
    assert [e["data"]["token"] for e in got] == [
        "admin",
        "ingest",
        "ingest",
        "admin",
        "ingest",
        "ingest",
        None,
    ]
    assert [e["data"]["pid"] for e in got[:6]] == [server.proc.pid] * 6
    assert got[6]["data"]["pid"] != server.proc.pid


def test_a_database_scoped_token_follows_its_own_databases_only(
    serve_and_mount: tuple[ServeProcess, Path], tmp_path: Path
) -> None:
    server, mnt = serve_and_mount
    (mnt / "reports").mkdir()
    for name in ("app.db", "reports/q1.db"):
        subprocess.run(["sqlite3", str(mnt / name), "CREATE TABLE t(x)"], check=True)
    create = [sys.executable, "-m", "hoodydb", "token", "create", "--data", str(tmp_path / "data")]
    token = subprocess.run(
        [*create, "--name", "reports", "--db", "reports/*"], capture_output=True, text=True, check=True
    ).stdout.strip()
    with subscribed(server, token=token, heartbeat=0.2) as events:
        for name in ("app.db", "reports/q1.db", "app.db"):
            subprocess.run(["sqlite3", str(mnt / name), "INSERT INTO t VALUES (1)"], check=True)
        (got,) = next_commits(events, 1)
    assert got["data"]["db"] == "reports/q1.db" and got["id"] == {"reports/q1.db": got["data"]["seq"]}


def test_a_resumed_stream_misses_nothing(serve_and_mount: tuple[ServeProcess, Path]) -> None:
    server, mnt = serve_and_mount
    db = str(mnt / "r.db")
    subprocess.run(["sqlite3", db, "CREATE TABLE t(x)"], check=True)
    with subscribed(server, db="*.db") as events:
        subprocess.run(["sqlite3", db, "INSERT INTO t VALUES (1)"], check=True)
        last_id = next_commits(events, 1, quiet=0.2)[0]["id"]
    for i in range(4):  # while nobody listens
        subprocess.run(["sqlite3", db, f"INSERT INTO t VALUES ({i})"], check=True)
    with subscribed(server, db="*.db", last_event_id=json.dumps(last_id)) as events:
        assert [e["data"]["seq"] for e in next_commits(events, 4, quiet=0.3)] == [3, 4, 5, 6]
    with subscribed(server, db="r.db", since="4") as events:
        assert [e["data"]["seq"] for e in next_commits(events, 2, quiet=0.3)] == [5, 6]
    bad = server.client.get(EVENTS, params={"since": "yesterday"})
    assert (bad.status_code, bad.json()["code"]) == (400, "bad_request")


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_a_hundred_idle_subscribers_cost_no_cpu_and_bounded_memory(
    serve_and_mount: tuple[ServeProcess, Path],
) -> None:
    server, mnt = serve_and_mount
    assert server.proc is not None
    daemon = int(control_client.query(control_client.socket_path(mnt))["pid"])
    subprocess.run(["sqlite3", str(mnt / "idle.db"), "CREATE TABLE t(x)"], check=True)
    before = {pid: rss_kib(pid) for pid in (daemon, server.proc.pid)}

    async def run() -> tuple[list[int], dict[int, int], int]:
        async with httpx.AsyncClient(
            base_url=server.url, headers=server.auth_headers(), timeout=httpx.Timeout(30, read=None)
        ) as client:
            streams = []
            for _ in range(100):
                request = client.build_request("GET", EVENTS, params={"db": "idle.db"})
                streams.append(await client.send(request, stream=True))
            lines = [s.aiter_lines() for s in streams]
            for it in lines:  # each got its retry and ready event
                while not (await it.__anext__()).startswith("data:"):
                    pass
            await asyncio.sleep(0.5)
            ticks = {pid: cpu_ticks(pid) for pid in (daemon, server.proc.pid)}  # type: ignore[union-attr]
            await asyncio.sleep(3)  # idle: no commit, heartbeats every 15 s
            idle = {pid: cpu_ticks(pid) - ticks[pid] for pid in ticks}
            grown = max(rss_kib(pid) - before[pid] for pid in before)
            await asyncio.to_thread(
                subprocess.run, ["sqlite3", str(mnt / "idle.db"), "INSERT INTO t VALUES (1)"], check=True
            )
            seqs = []
            for it in lines:
                while not (line := await it.__anext__()).startswith("data:"):
                    pass
                seqs.append(json.loads(line[5:])["seq"])
            for s in streams:
                await s.aclose()
            return seqs, idle, grown

    seqs, idle, grown = asyncio.run(run())
    print(f"100 idle subscribers: CPU ticks in 3 s {idle}, RSS grown {grown} KiB")
    assert seqs == [2] * 100  # every subscriber got the one commit
    # Clock ticks are 10 ms: a poll, or a heartbeat per subscriber, would show in 3 s.
    assert all(ticks <= 5 for ticks in idle.values()), idle
    assert grown < 64 * 1024, f"{grown} KiB more with 100 subscribers"


def test_without_a_mount_there_is_no_feed(tmp_path: Path) -> None:
    with ServeProcess(["--no-mount", "--root", str(tmp_path)], tmp_path) as server:
        response = server.client.get(EVENTS)
    assert response.status_code == 404 and response.json()["code"] == "not_found", response.text
    assert "no commit feed" in response.json()["error"]
