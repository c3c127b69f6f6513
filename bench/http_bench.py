"""HTTP throughput and latency of `hoodydb serve`, side by side with Datasette's JSON write API.

`python -m bench.http_bench [--quick] [--requests N]` prints one markdown table:
single-statement writes, point reads, KV set and KV get at 1/16/64 concurrent clients, against

- hoodydb serve with a real mount (the product: the API opens databases through the mount),
- hoodydb serve --no-mount (the API alone on a plain directory: what the mount adds),
- Datasette 1.0a41 (`POST /db/t/-/insert` and `GET /db/t/ID.json`), when it is installed.

One client process (asyncio + httpx, keep-alive, one connection per client) drives every target
the same way, on the same machine, so the client's own CPU is part of every figure.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from hoodydb.fs.process import terminate

CONCURRENCY = (1, 16, 64)
WORKLOADS = ("write", "read", "kv set", "kv get")
PRELOADED_ROWS = 1000
TOKEN = "bench-token"

Request = Callable[[httpx.AsyncClient, int], Awaitable[httpx.Response]]


@dataclass
class Cell:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def _running(cmd: list[str], probe: str) -> Iterator[None]:
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_until_up(probe, proc)
        yield
    finally:
        terminate(proc, 30)


class Target:
    name: str
    url: str
    headers: dict[str, str]

    def running(self) -> contextlib.AbstractContextManager[None]:
        """Start the server with a preloaded `bench.db`; stop it on exit."""
        raise NotImplementedError

    def request(self, workload: str) -> Request | None:
        """How one request of `workload` is made, or None if the server has no such operation."""
        raise NotImplementedError


class Hoodydb(Target):
    def __init__(self, name: str, workdir: Path, *, mount: bool) -> None:
        self.name = name
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.headers = {"Authorization": f"Bearer {TOKEN}"}
        where = ["--data", str(workdir / "data"), "--mount", str(workdir / "mnt")] if mount else []
        where = where or ["--no-mount", "--root", str(workdir / "root")]
        self.cmd = [
            sys.executable,
            "-m",
            "hoodydb",
            "serve",
            "--port",
            str(self.port),
            "--token",
            TOKEN,
            *where,
        ]

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        with _running(self.cmd, f"{self.url}/healthz"):
            client = httpx.Client(base_url=self.url, headers=self.headers)
            client.post("/api/v1/sqlite/databases", json={"path": "bench.db"}).raise_for_status()
            rows = [["x" * 32]] * PRELOADED_ROWS
            setup = [
                {"statement": "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"},
                {"statement": "INSERT INTO t (v) VALUES (?)", "valuesBatch": rows},
            ]
            client.post(
                "/api/v1/sqlite/db", params={"db": "bench.db"}, json={"transaction": setup}
            ).raise_for_status()
            for i in range(PRELOADED_ROWS):
                client.put(
                    f"/api/v1/sqlite/kv/k{i}", params={"db": "bench.db"}, json={"n": i}
                ).raise_for_status()
            client.close()
            yield

    def request(self, workload: str) -> Request | None:
        db = {"db": "bench.db"}
        write = {"transaction": [{"statement": "INSERT INTO t (v) VALUES (?)", "values": ["y" * 32]}]}

        async def do_write(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.post("/api/v1/sqlite/db", params=db, json=write)

        async def do_read(c: httpx.AsyncClient, i: int) -> httpx.Response:
            body = {
                "transaction": [{"query": "SELECT * FROM t WHERE id = ?", "values": [i % PRELOADED_ROWS + 1]}]
            }
            return await c.post("/api/v1/sqlite/db", params=db, json=body)

        async def do_kv_set(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.put(f"/api/v1/sqlite/kv/k{i % PRELOADED_ROWS}", params=db, json={"n": i})

        async def do_kv_get(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.get(f"/api/v1/sqlite/kv/k{i % PRELOADED_ROWS}", params=db)

        return {"write": do_write, "read": do_read, "kv set": do_kv_set, "kv get": do_kv_get}[workload]


class Datasette(Target):
    def __init__(self, workdir: Path) -> None:
        self.name = "Datasette 1.0a41"
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        self.exe = str(Path(sys.executable).with_name("datasette"))
        self.headers = {}

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        self.workdir.mkdir(parents=True, exist_ok=True)
        db = self.workdir / "bench.db"
        with contextlib.closing(sqlite3.connect(db)) as conn:
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
            conn.executemany("INSERT INTO t (v) VALUES (?)", [("x" * 32,)] * PRELOADED_ROWS)
            conn.commit()
        secret = "bench-secret"
        token = subprocess.run(
            [self.exe, "create-token", "root", "--secret", secret], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.headers = {"Authorization": f"Bearer {token}"}
        cmd = [self.exe, "serve", str(db), "--port", str(self.port), "--secret", secret, "--root"]
        with _running(cmd, f"{self.url}/-/versions.json"):
            yield

    def request(self, workload: str) -> Request | None:
        async def do_write(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.post("/bench/t/-/insert", json={"row": {"v": "y" * 32}})

        async def do_read(c: httpx.AsyncClient, i: int) -> httpx.Response:
            return await c.get(f"/bench/t/{i % PRELOADED_ROWS + 1}.json")

        return {"write": do_write, "read": do_read}.get(workload)


async def _measure(target: Target, request: Request, clients: int, total: int) -> Cell:
    latencies: list[float] = []
    errors = 0
    counter = iter(range(total))

    async def client_loop() -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=target.url, headers=target.headers, timeout=120) as c:
            for i in counter:
                started = time.perf_counter()
                try:
                    response = await request(c, i)
                    ok = response.status_code < 300
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += 0 if ok else 1

    started = time.perf_counter()
    await asyncio.gather(*(client_loop() for _ in range(clients)))
    wall = time.perf_counter() - started
    latencies.sort()
    return Cell(
        rps=len(latencies) / wall,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        errors=errors,
    )


def _datasette_available() -> str | None:
    exe = Path(sys.executable).with_name("datasette")
    if not exe.exists():
        return "datasette is not installed (pip install 'hoodydb[bench]')"
    return None


def run(total: int, with_mount: bool) -> list[tuple[str, str, int, Cell | None]]:
    rows: list[tuple[str, str, int, Cell | None]] = []
    with tempfile.TemporaryDirectory(prefix="hoodydb-http-bench-") as tmp:
        work = Path(tmp)
        targets: list[Target] = []
        if with_mount:
            targets.append(Hoodydb("hoodydb serve (mount)", work / "mounted", mount=True))
        targets.append(Hoodydb("hoodydb serve --no-mount", work / "plain", mount=False))
        why_not = _datasette_available()
        if why_not is None:
            targets.append(Datasette(work / "datasette"))
        else:
            print(f"(Datasette skipped: {why_not})", file=sys.stderr)
        for target in targets:
            with target.running():
                for workload in WORKLOADS:
                    request = target.request(workload)
                    for clients in CONCURRENCY:
                        if request is None:
                            rows.append((workload, target.name, clients, None))
                            continue
                        # Warm up connections and caches, then measure.
                        asyncio.run(_measure(target, request, clients, min(total, clients * 4)))
                        cell = asyncio.run(_measure(target, request, clients, total))
                        rows.append((workload, target.name, clients, cell))
                        print(
                            f"  {target.name:28} {workload:7} x{clients:<3} {cell.rps:8.0f} req/s",
                            file=sys.stderr,
                        )
    return rows


def table(rows: list[tuple[str, str, int, Cell | None]]) -> str:
    lines = [
        "| workload | server | clients | req/s | p50 ms | p99 ms | errors |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for workload, name, clients, cell in rows:
        if cell is None:
            lines.append(f"| {workload} | {name} | {clients} | - | - | - | n/a |")
        else:
            lines.append(
                f"| {workload} | {name} | {clients} | {cell.rps:.0f} | {cell.p50_ms:.1f} | {cell.p99_ms:.1f} "
                f"| {cell.errors} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000, help="requests per cell (default 2000)")
    parser.add_argument("--quick", action="store_true", help="300 requests per cell")
    parser.add_argument("--no-mount-target", action="store_true", help="skip the mounted hoodydb target")
    args = parser.parse_args()
    total = 300 if args.quick else args.requests
    with_mount = (
        not args.no_mount_target and os.path.exists("/dev/fuse") and shutil.which("fusermount3") is not None
    )
    rows = run(total, with_mount)
    python = platform.python_version()
    print(f"HTTP API, {total} requests per cell; {os.cpu_count()} cores, Python {python}, same-host client\n")
    print(table(rows))


if __name__ == "__main__":
    main()
