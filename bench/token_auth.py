"""What a scoped token costs per request, against the admin token, in one run.

`python -m bench.token_auth [--requests N]` prints two markdown tables:

1. The verifier alone (in process, on an event loop): the admin token (constant-time compare), a
   scoped token already verified (one stat() of tokens.json, a SHA-256, a dictionary look-up), and
   the first check of a scoped token, or a wrong secret for a known id (one scrypt).
2. Point reads through a real `hoodydb serve --no-mount`, one keep-alive client, sequential:
   the admin token, a read-write scoped token with a `--db` glob, and a read-only token (whose
   jobs also switch `query_only` on and off and bypass apsw's statement cache).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.http_bench import _free_port as free_port
from hoodydb.access import store
from hoodydb.access.verifier import TokenVerifier
from hoodydb.fs.process import terminate

ADMIN = "bench-admin-token"


def _make(base: Path, name: str, **scope: object) -> str:
    kwargs: dict[str, object] = {"read_only": False, "databases": (), "kv_only": False, "expires_at": None}
    kwargs.update(scope)
    return store.create_token(base, name=name, now=time.time(), **kwargs)  # type: ignore[arg-type]


async def _per_call_us(check: Callable[[], Awaitable[object]], n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await check()
    return (time.perf_counter() - started) / n * 1e6


async def verifier_table(base: Path, n: int) -> list[str]:
    scoped = _make(base, "bench-scoped", databases=("bench.db",)).encode()
    verifier = TokenVerifier([ADMIN], base)
    admin = ADMIN.encode()
    admin_us = await _per_call_us(lambda: verifier.check(admin), n)
    started = time.perf_counter()
    await verifier.check(scoped)  # first use: scrypt
    first_ms = (time.perf_counter() - started) * 1e3
    cached_us = await _per_call_us(lambda: verifier.check(scoped), n)
    wrong = scoped[:-2] + (b"AA" if not scoped.endswith(b"AA") else b"BB")
    wrong_ms = await _per_call_us(lambda: verifier.check(wrong), 20) / 1e3
    return [
        "| check | per request | vs admin |",
        "| --- | --- | --- |",
        f"| admin token | {admin_us:.2f} µs | 1.00 |",
        f"| scoped token, verified before | {cached_us:.2f} µs | {cached_us / admin_us:.2f} |",
        f"| scoped token, first request (scrypt) | {first_ms:.1f} ms | {first_ms * 1e3 / admin_us:.0f} |",
        f"| known id, wrong secret (scrypt each time) | {wrong_ms:.1f} ms "
        f"| {wrong_ms * 1e3 / admin_us:.0f} |",
    ]


def http_table(base: Path, n: int) -> list[str]:
    tokens = {
        "admin token": ADMIN,
        "scoped, --db bench.db": _make(base, "bench-db", databases=("bench.db",)),
        "scoped, --read-only": _make(base, "bench-ro", read_only=True),
    }
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "hoodydb", "serve", "--no-mount", "--root", str(base), "--port", str(port)]
    proc = subprocess.Popen([*cmd, "--token", ADMIN], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not start")
            time.sleep(0.05)
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {ADMIN}"}) as admin:
            admin.post("/api/v1/sqlite/databases", json={"path": "bench.db"})
            setup = [
                {"statement": "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"},
                {
                    "statement": "INSERT INTO t (v) VALUES (?)",
                    "valuesBatch": [[f"v{i}"] for i in range(1000)],
                },
            ]
            assert admin.post("/api/v1/sqlite/db?db=bench.db", json={"transaction": setup}).status_code == 200
        # Round robin over the tokens, so drift on a shared machine hits each of them alike.
        clients = {
            label: httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"})
            for label, token in tokens.items()
        }
        times: dict[str, list[float]] = {label: [] for label in tokens}
        try:
            for i in range(n):
                body = {"transaction": [{"query": "SELECT v FROM t WHERE id = ?", "values": [i % 1000 + 1]}]}
                for label, client in clients.items():
                    started = time.perf_counter()
                    response = client.post("/api/v1/sqlite/db?db=bench.db", json=body)
                    times[label].append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
        finally:
            for client in clients.values():
                client.close()
        # The first tenth warms up connections and caches.
        medians = {label: statistics.median(t[n // 10 :]) * 1e6 for label, t in times.items()}
        base_us = medians["admin token"]
        rows = ["| token | median point read | vs admin |", "| --- | --- | --- |"]
        rows += [f"| {label} | {us:.0f} µs | {us / base_us:.2f} |" for label, us in medians.items()]
        return rows
    finally:
        terminate(proc, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="HTTP requests per token")
    parser.add_argument("--checks", type=int, default=20000, help="verifier checks per kind")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hoodydb-token-bench-") as tmp:
        base = Path(tmp)
        print(f"CPUs: {os.cpu_count()}, Python {sys.version.split()[0]}\n")
        print("\n".join(asyncio.run(verifier_table(base, args.checks))))
        print()
        print("\n".join(http_table(base, args.requests)))


if __name__ == "__main__":
    main()
