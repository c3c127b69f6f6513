"""One backing tree, one mount, on real mounts: a second daemon over the same files would keep a
second lock table and lose acknowledged commits, so it must never start."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from serve_process import ServeProcess

from hoodydb import control_client as control
from hoodydb.fs.orphan import started_at
from hoodydb.fs.process import FSTYPE, MountProcess, force_unmount, is_mounted, mounted_type

pytestmark = pytest.mark.fuse  # every test mounts, some through `hoodydb serve`

UNSHARE = ["unshare", "--mount", "--pid", "--fork", "--mount-proc"]  # a container, as far as locks go


def hoodydb(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoodydb", *map(str, args)], capture_output=True, text=True, timeout=60
    )


def count_through(mnt: Path) -> int:
    """Write a row through the mount and count the rows: the mount is alive and serves its tree."""
    conn = sqlite3.connect(mnt / "c.db", isolation_level=None)
    try:
        conn.execute("CREATE TABLE IF NOT EXISTS t(x)")
        conn.execute("INSERT INTO t VALUES (1)")
        return int(conn.execute("SELECT count(*) FROM t").fetchone()[0])
    finally:
        conn.close()


def test_a_second_mount_of_the_same_directory_is_refused(tmp_path: Path) -> None:
    backing, m1, m2 = tmp_path / "data with space", tmp_path / "m1", tmp_path / "m2"
    backing.mkdir()
    with MountProcess(backing, m1) as first:
        for detach in ([], ["--foreground"]):  # checked by the launcher, and by the daemon itself
            second = hoodydb("mount", backing, m2, *detach)
            assert second.returncode != 0
            assert f"is already served by the hoodydb mount at {m1} (pid {first.pid})" in second.stderr
            assert mounted_type(m2) is None
        assert count_through(m1) == 1


def test_a_second_mount_in_another_container_is_refused(tmp_path: Path) -> None:
    """A container sharing the volume but not /run, nor the PID namespace: the claim is on the
    directory itself, so it is seen all the same (the pid is not)."""
    backing, m1, m2 = tmp_path / "data", tmp_path / "m1", tmp_path / "m2"
    backing.mkdir()
    with MountProcess(backing, m1):
        env = {**os.environ, "HOODYDB_RUNTIME_DIR": str(tmp_path / "other-run")}
        second = subprocess.run(
            [*UNSHARE, sys.executable, "-m", "hoodydb", "mount", str(backing), str(m2), "--foreground"],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert second.returncode != 0
        assert (
            f"{backing} is already served by the hoodydb mount at {m1} (pid not visible here)"
            in second.stderr
        )
        assert mounted_type(m2) is None
        assert count_through(m1) == 1


def test_trees_inside_and_above_a_served_one_are_refused(tmp_path: Path) -> None:
    top = tmp_path / "srv"
    served = top / "data"
    (served / "app").mkdir(parents=True)
    with MountProcess(served, tmp_path / "m1") as first:
        inside = hoodydb("mount", served / "app", tmp_path / "m2")
        assert inside.returncode != 0
        assert f"{served / 'app'} is inside {served}, which is already served" in inside.stderr
        assert f"at {tmp_path / 'm1'} (pid {first.pid})" in inside.stderr
        above = hoodydb("mount", top, tmp_path / "m3")
        assert above.returncode != 0
        assert f"{top} contains {served}, which is already served" in above.stderr
        assert f"at {tmp_path / 'm1'} (pid {first.pid})" in above.stderr
        assert mounted_type(tmp_path / "m2") is None and mounted_type(tmp_path / "m3") is None


def test_two_different_backing_directories_mount_side_by_side(tmp_path: Path) -> None:
    for d in ("srv/a", "srv/b"):
        (tmp_path / d).mkdir(parents=True)
    with MountProcess(tmp_path / "srv/a", tmp_path / "ma"), MountProcess(tmp_path / "srv/b", tmp_path / "mb"):
        assert count_through(tmp_path / "ma") == 1
        assert count_through(tmp_path / "mb") == 1
        assert (tmp_path / "srv/a/c.db").exists() and (tmp_path / "srv/b/c.db").exists()


def test_a_killed_daemon_leaves_no_claim_behind(tmp_path: Path) -> None:
    backing, mnt = tmp_path / "b", tmp_path / "m"
    backing.mkdir()
    first = MountProcess(backing, mnt).start()
    try:
        first.kill()
        force_unmount(mnt)  # fusermount3 -u, as an operator would after a crash
        with MountProcess(backing, mnt):
            assert count_through(mnt) == 1
    finally:
        first.stop()


def test_serve_is_refused_a_tree_another_serve_serves(tmp_path: Path) -> None:
    """`make run` twice: the second serve exits with the message, the first keeps its mount."""
    data = tmp_path / "data"
    with ServeProcess(["--data", str(data), "--mount", str(tmp_path / "m1")], tmp_path) as first:
        daemon = control.query(control.socket_path(tmp_path / "m1"))["pid"]
        second = hoodydb("serve", "--data", data, "--mount", tmp_path / "m2", "--token", "t", "--port", "0")
        assert second.returncode != 0
        assert f"is already served by the hoodydb mount at {tmp_path / 'm1'} (pid {daemon})" in second.stderr
        assert mounted_type(tmp_path / "m2") is None
        # Same mountpoint too: a live serve's mount is never taken for an orphan.
        third = hoodydb("serve", "--data", data, "--mount", tmp_path / "m1", "--token", "t", "--port", "0")
        assert third.returncode != 0 and f"(pid {daemon})" in third.stderr
        assert control.query(control.socket_path(tmp_path / "m1"))["pid"] == daemon
        assert first.client.post("/api/v1/sqlite/databases", json={"path": "x.db"}).status_code < 300


def test_serve_replaces_the_orphaned_mount_of_a_killed_serve(tmp_path: Path) -> None:
    data, mnt = tmp_path / "data", tmp_path / "mnt"
    args = ["--data", str(data), "--mount", str(mnt)]
    killed = ServeProcess(args, tmp_path).start()
    assert killed.proc is not None
    orphan = control.query(control.socket_path(mnt))["pid"]
    killed.proc.send_signal(signal.SIGKILL)
    killed.stop()
    assert started_at(orphan) is not None and mounted_type(mnt) == FSTYPE  # the child lives on
    try:
        with ServeProcess(args, tmp_path) as restarted:
            assert f"replacing the orphaned hoodydb mount at {mnt} (pid {orphan})" in restarted.stderr()
            assert started_at(orphan) is None  # stopped, not left beside the new one
            report = control.query(control.socket_path(mnt))
            assert report["pid"] != orphan and report["serve_pid"] == restarted.proc.pid  # type: ignore[union-attr]
            assert count_through(mnt) == 1
        assert not is_mounted(mnt)
    finally:
        if started_at(orphan) is not None:
            os.kill(orphan, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while started_at(orphan) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        force_unmount(mnt)
