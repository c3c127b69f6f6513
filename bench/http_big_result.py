"""Memory of `hoodydb serve --no-mount` for one 5,000,000-row query, and its ordinary-query latency.

`python -m bench.http_big_result [--rows N] [--requests N]` starts the server on a plain directory,
fills a table natively (sqlite3), then:

- sends `SELECT id, name FROM t` (every row) once and reports the status, the response size and the
  server's RSS before, at its peak (VmHWM) and after;
- sends N ordinary point queries one after another and reports their p50 / p99 latency and the
  server's CPU time per query (steadier than latency on a shared machine).

The API caps a response (`--max-result-rows`, `--max-result-bytes`), so the big query is refused
with `result_too_large` instead of growing the server's memory with the result.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.http_bench import _free_port, _wait_until_up
from hoodydb.fs.process import terminate

TOKEN = "bench-token"


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds the process has used: less sensitive to a busy machine than latency."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fill(path: Path, rows: int) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        db.execute(
            "INSERT INTO t (id, name) SELECT value, 'name-' || value FROM "
            "(WITH RECURSIVE c(value) AS (SELECT 1 UNION ALL SELECT value + 1 FROM c WHERE value < ?) "
            "SELECT value FROM c)",
            (rows,),
        )
    sqlite3.connect(path).close()


def run(rows: int, requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="hoodydb-big-result-") as tmp:
        root = Path(tmp) / "root"
        root.mkdir()
        _fill(root / "big.db", rows)
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "hoodydb", "serve", "--no-mount", "--root", str(root)]
        cmd += ["--port", str(port), "--token", TOKEN]
        with open(Path(tmp) / "serve.log", "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        try:
            _wait_until_up(f"{url}/healthz", proc)
            headers = {"Authorization": f"Bearer {TOKEN}"}
            with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
                point = {"transaction": [{"query": "SELECT id, name FROM t WHERE id = ?", "values": [1]}]}
                client.post("/api/v1/sqlite/db", params={"db": "big.db"}, json=point).raise_for_status()
                before = _status_kb(proc.pid, "VmRSS")
                started = time.perf_counter()
                big = {"transaction": [{"query": "SELECT id, name FROM t"}]}
                response = client.post("/api/v1/sqlite/db", params={"db": "big.db"}, json=big)
                took = time.perf_counter() - started
                peak, after = _status_kb(proc.pid, "VmHWM"), _status_kb(proc.pid, "VmRSS")
                code = response.json().get("code", "") if response.status_code != 200 else ""
                print(
                    f"{rows:,}-row query: HTTP {response.status_code} {code} {len(response.content):,} bytes "
                    f"in {took:.1f} s; server RSS {before / 1024:.0f} MB before, "
                    f"{peak / 1024:.0f} MB peak, {after / 1024:.0f} MB after"
                )
                latencies = []
                cpu = _cpu_s(proc.pid)
                for i in range(requests):
                    point["transaction"][0]["values"] = [i % rows + 1]
                    started = time.perf_counter()
                    client.post("/api/v1/sqlite/db", params={"db": "big.db"}, json=point).raise_for_status()
                    latencies.append(time.perf_counter() - started)
                cpu_ms = (_cpu_s(proc.pid) - cpu) * 1000 / requests
                latencies.sort()
                p50 = statistics.median(latencies) * 1000
                print(
                    f"{requests} point queries, one at a time: p50 {p50:.2f} ms, "
                    f"p99 {latencies[int(len(latencies) * 0.99)] * 1000:.2f} ms, "
                    f"server CPU {cpu_ms:.2f} ms per query"
                )
        finally:
            terminate(proc, 30.0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")
    run(args.rows, args.requests)


if __name__ == "__main__":
    main()
