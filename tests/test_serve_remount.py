"""`serve` mounts again when its mount daemon dies, and a dead mount is a 503, not a 404."""

from __future__ import annotations

import os
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from hoodydb import control_client as control
from hoodydb.fs.process import MountProcess, mounted_type
from hoodydb.sql.errors import UNAVAILABLE, SqlApiError
from hoodydb.sql.paths import Roots, resolve_existing
from tests.serve_process import ServeProcess

pytestmark = pytest.mark.fuse


def _daemon_pid(mnt: Path) -> int | None:
    try:
        return int(control.query(control.socket_path(mnt), timeout=2.0)["pid"])
    except (OSError, ValueError):
        return None


def test_serve_mounts_again_when_its_daemon_is_killed(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    with ServeProcess(["--data", str(tmp_path / "data"), "--mount", str(mnt)], tmp_path) as api:
        assert api.client.post("/api/v1/sqlite/databases", json={"path": "app.db"}).status_code == 201
        first = _daemon_pid(mnt)
        assert first is not None
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (pid := _daemon_pid(mnt)) in (None, first):
            assert time.monotonic() < deadline, api.stderr()
            time.sleep(0.2)
        while httpx.get(f"{api.url}/healthz").status_code != 200:
            assert time.monotonic() < deadline, api.stderr()
            time.sleep(0.2)
        tx = {"transaction": [{"statement": "CREATE TABLE t(x)"}, {"statement": "INSERT INTO t VALUES (1)"}]}
        assert api.client.post("/api/v1/sqlite/db", params={"db": "app.db"}, json=tx).status_code == 200
        with sqlite3.connect(mnt / "app.db", timeout=0) as native:  # native clients are back too
            assert native.execute("SELECT count(*) FROM t").fetchone() == (1,)
        native.close()
        assert f"the mount daemon (pid {first}) exited" in api.stderr()
        assert f"daemon pid {pid}" in api.stderr()
    assert mounted_type(mnt) is None


def test_a_database_on_a_dead_mount_is_unavailable(tmp_path: Path) -> None:
    backing, mnt = tmp_path / "b", tmp_path / "m"
    backing.mkdir()
    (backing / "app.db").touch()
    mount = MountProcess(backing, mnt).start()
    try:
        assert resolve_existing("app.db", Roots([mnt])) == (mnt / "app.db").resolve()
        mount.kill()  # the mountpoint answers ENOTCONN, as after a crash, once the kernel's
        deadline = time.monotonic() + 30  # cached attributes of app.db run out
        while True:
            try:
                resolve_existing("app.db", Roots([mnt]))
            except SqlApiError as exc:
                assert exc.code == UNAVAILABLE, exc.message
                break
            assert time.monotonic() < deadline, "the dead mount still answered"
            time.sleep(0.2)
    finally:
        mount.stop()
