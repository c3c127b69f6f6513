"""Continuous backup under `hoodydb serve`: to an S3-compatible endpoint (moto's server, started
here), its status over HTTP, in /metrics, and /healthz failing while the replica is stale."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto.server import ThreadedMotoServer
from serve_process import ServeProcess

from bench.workload import check_database, prepare_database
from hoodydb.fs.process import force_unmount

BUCKET = "hoodydb-backups"
AWS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
}
CATCH_UP_S = 60.0
pytestmark = pytest.mark.fuse  # serve runs its mount (the http marker comes from ServeProcess)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name, value in AWS.items():
        monkeypatch.setenv(name, value)
    # Litestream's AWS SDK refuses a custom CA bundle with its own HTTP client ("unable to add
    # custom RootCAs"); the endpoint here is plain HTTP and needs none.
    monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
    port = _port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


def statement(server: ServeProcess, db: str, sql: str) -> None:
    body = {"transaction": [{"statement": sql}]}
    response = server.client.post("/api/v1/sqlite/db", params={"db": db}, json=body)
    assert response.status_code == 200, response.text


def backup(server: ServeProcess) -> dict[str, Any]:
    response = server.client.get("/api/v1/sqlite/backup")
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def restore(replica: str, name: str, out: Path, rows: int) -> tuple[int, str]:
    """`hoodydb restore` until the replica holds `rows` rows."""
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        out.unlink(missing_ok=True)
        command = [sys.executable, "-m", "hoodydb", "restore", "--replica", replica, "--db", name, str(out)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode == 0 and (got := check_database(str(out)))[0] >= rows:
            return got
        if time.monotonic() > deadline:
            assert done.returncode == 0, done.stderr
            return got
        time.sleep(0.5)


def test_serve_replicates_to_s3_and_reports_it(tmp_path: Path, s3_endpoint: str) -> None:
    replica = f"s3://{BUCKET}/prod?endpoint={s3_endpoint}&forcePathStyle=true&region=us-east-1"
    mnt = tmp_path / "mnt"
    server = ServeProcess(
        ["--data", str(tmp_path / "data"), "--mount", str(mnt), "--replica", replica], tmp_path
    )
    try:
        server.start()
        prepare_database(str(mnt / "app.db"), "wal")  # a native client, through the mount
        for n in range(30):
            statement(server, "app.db", f"INSERT INTO t(w, v) VALUES (1, {n})")
        assert restore(replica, "app.db", tmp_path / "restored.db", 30) == (30, "ok")
        keys = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
            Bucket=BUCKET, Prefix="prod/app.db/"
        )
        assert keys.get("KeyCount", 0) > 0  # its own path under the URL

        deadline = time.monotonic() + CATCH_UP_S
        while (db := backup(server)["databases"][0])["replicated_txid"] < db["txid"] or not db["txid"]:
            assert time.monotonic() < deadline, db
            time.sleep(0.3)
        report = backup(server)
        assert report["mounted"] and report["replica"] == replica and report["litestream"]["running"]
        assert db["database"] == "app.db" and db["replicated"] and db["errors"] == 0

        metrics = server.client.get("/metrics").text
        assert 'hoodydb_backup_lag_seconds{database="app.db"}' in metrics
        assert 'hoodydb_backup_replicated{database="app.db"} 1.0' in metrics
        assert server.client.get("/healthz").status_code == 200
    finally:
        server.stop()
        force_unmount(mnt)


def test_healthz_fails_while_the_replica_is_stale_and_recovers(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("a file where the replica's directory should be")
    replica = f"file://{target}/replica"
    mnt = tmp_path / "mnt"
    args = ["--data", str(tmp_path / "data"), "--mount", str(mnt), "--replica", replica]
    server = ServeProcess([*args, "--replica-stale-after", "2"], tmp_path)
    try:
        server.start()
        prepare_database(str(mnt / "app.db"), "wal")
        deadline = time.monotonic() + CATCH_UP_S
        while (health := httpx.get(f"{server.url}/healthz")).status_code == 200:
            statement(server, "app.db", "INSERT INTO t(w, v) VALUES (1, 1)")  # writers are not held up
            assert time.monotonic() < deadline, "never stale"
            time.sleep(0.3)
        assert health.status_code == 503 and health.json()["code"] == "unavailable"
        assert "backup behind by more than 2 s: app.db" in health.json()["error"]
        stale = backup(server)["databases"][0]
        assert stale["stale"] and stale["errors"] > 0

        target.unlink()  # the target comes back
        target.mkdir()
        deadline = time.monotonic() + CATCH_UP_S
        while httpx.get(f"{server.url}/healthz").status_code != 200:
            assert time.monotonic() < deadline, backup(server)
            time.sleep(0.3)
    finally:
        server.stop()
        force_unmount(mnt)


def test_without_a_replica_nothing_is_backed_up_and_status_says_so(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    server = ServeProcess(["--data", str(tmp_path / "data"), "--mount", str(mnt)], tmp_path)
    try:
        server.start()
        report = backup(server)
        assert report["mounted"] and report["replica"] is None and report["databases"] == []
        shown = subprocess.run(
            [sys.executable, "-m", "hoodydb", "backup", "status", str(mnt)], capture_output=True, text=True
        )
        assert shown.returncode == 0 and "no replica configured" in shown.stdout
    finally:
        server.stop()
        force_unmount(mnt)
    with ServeProcess(["--no-mount", "--root", str(tmp_path / "plain")], tmp_path) as plain:
        assert backup(plain) == {"mounted": False, "replica": None, "litestream": None, "databases": []}


def test_serve_refuses_a_replica_without_litestream(tmp_path: Path) -> None:
    args = ["--data", str(tmp_path / "data"), "--mount", str(tmp_path / "mnt")]
    server = ServeProcess(
        [*args, "--replica", f"file://{tmp_path}/r", "--litestream", str(tmp_path / "none")], tmp_path
    )
    with pytest.raises(RuntimeError, match="needs the Litestream binary"):
        server.start()


def test_serve_killed_during_writes_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    replica = f"file://{tmp_path}/replica"
    mnt = tmp_path / "mnt"
    args = ["--data", str(tmp_path / "data"), "--mount", str(mnt), "--replica", replica]
    first = ServeProcess(args, tmp_path)
    second = None
    acknowledged, orphaned = 0, 0
    try:
        first.start()
        prepare_database(str(mnt / "app.db"), "wal")
        for n in range(40):
            if n == 25:
                orphaned = backup(first)["litestream"]["pid"]
                assert first.proc is not None
                first.proc.kill()  # SIGKILL: its mount (and Litestream under it) is left orphaned
                first.proc.wait()
                break
            statement(first, "app.db", f"INSERT INTO t(w, v) VALUES (1, {n})")
            acknowledged += 1
        second = ServeProcess(args, tmp_path).start()  # replaces the orphaned mount, says so
        assert "orphan" in second.stderr().lower()
        assert not Path(f"/proc/{orphaned}").exists()  # stopped with the orphaned mount
        for n in range(15):
            statement(second, "app.db", f"INSERT INTO t(w, v) VALUES (2, {n})")
            acknowledged += 1
        assert restore(replica, "app.db", tmp_path / "restored.db", acknowledged) == (acknowledged, "ok")
        assert backup(second)["litestream"]["running"]
    finally:
        first.stop()
        if second is not None:
            second.stop()
        force_unmount(mnt)


def test_a_database_scoped_token_sees_the_backup_of_its_databases_only(tmp_path: Path) -> None:
    mnt, data = tmp_path / "mnt", tmp_path / "data"
    args = ["--data", str(data), "--mount", str(mnt), "--replica", f"file://{tmp_path}/replica"]
    server = ServeProcess(args, tmp_path)
    try:
        server.start()
        (mnt / "reports").mkdir()
        for name in ("app.db", "reports/q1.db"):
            prepare_database(str(mnt / name), "wal")
        deadline = time.monotonic() + CATCH_UP_S
        while len(backup(server)["databases"]) < 2:
            assert time.monotonic() < deadline, backup(server)
            time.sleep(0.3)
        create = [sys.executable, "-m", "hoodydb", "token", "create", "--data", str(data)]
        token = subprocess.run(
            [*create, "--name", "reports", "--db", "reports/*"], capture_output=True, text=True, check=True
        ).stdout.strip()
        scoped = {"Authorization": f"Bearer {token}"}
        seen = httpx.get(f"{server.url}/api/v1/sqlite/backup", headers=scoped).json()
        assert [db["database"] for db in seen["databases"]] == ["reports/q1.db"], seen
        locks = httpx.get(f"{server.url}/api/v1/sqlite/locks", headers=scoped).json()
        assert [db["database"] for db in locks["backup"]["databases"]] == ["reports/q1.db"], locks
    finally:
        server.stop()
        force_unmount(mnt)
