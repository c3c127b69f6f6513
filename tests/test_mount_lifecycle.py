"""Starting and stopping a mount: clear errors first, a detached daemon, SIGTERM with a waiting
client, a mount over a shared bind mount."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hoodydb import control_client
from hoodydb.fs.process import FSTYPE, MountProcess, force_unmount, is_mounted, mounted_type
from tests.conftest import MountFactory

pytestmark = pytest.mark.fuse


def test_sigterm_unmounts_even_with_a_waiting_client(tmp_path: Path) -> None:
    backing, mnt = tmp_path / "b", tmp_path / "m"
    backing.mkdir()
    m = MountProcess(backing, mnt).start()
    try:
        db = str(mnt / "t.db")
        holder = sqlite3.connect(db, isolation_level=None)
        holder.execute("CREATE TABLE t(x)")
        holder.execute("BEGIN IMMEDIATE")
        waiter = subprocess.Popen(["sqlite3", db, "INSERT INTO t VALUES (1)"], stderr=subprocess.PIPE)
        time.sleep(0.5)
        assert m.proc is not None
        m.proc.send_signal(signal.SIGTERM)
        assert m.proc.wait(timeout=10) == 0  # a signal is the normal way to stop
        waiter.communicate(timeout=10)
        assert waiter.returncode != 0  # an error, not a hang
        assert not is_mounted(mnt)
        holder.close()
    finally:
        m.stop()


def test_clear_errors_before_mounting(tmp_path: Path, mount_factory: MountFactory) -> None:
    def mount(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "hoodydb", "mount", *args, "--foreground"],
            capture_output=True,
            text=True,
            timeout=30,
        )

    missing = mount(str(tmp_path / "nope"), str(tmp_path / "m1"))
    assert missing.returncode != 0 and "does not exist" in missing.stderr
    busy = mount_factory()
    again = mount(str(busy.backing), str(busy.mnt))
    assert again.returncode != 0 and "busy" in again.stderr
    inside = mount(str(busy.backing), str(busy.backing / "sub"))
    assert inside.returncode != 0 and "inside the backing" in inside.stderr


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


def test_background_mount_detaches_into_a_session_of_its_own(tmp_path: Path) -> None:
    """`hoodydb mount` without --foreground returns once mounted; the daemon must outlive the
    terminal it was started from (its own session: no hangup, no Ctrl-C) and get every option."""
    backing, mnt = tmp_path / "b", tmp_path / "m"
    backing.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hoodydb",
            "mount",
            str(backing),
            str(mnt),
            "--lock-timeout=7",
            "--policy=off",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    pid = None
    try:
        assert done.returncode == 0, done.stderr
        found = re.search(r"pid (\d+)", done.stdout)
        assert found, done.stdout
        pid = int(found.group(1))
        assert mounted_type(mnt) == FSTYPE
        assert os.getsid(pid) == pid and os.getsid(pid) != os.getsid(0)
        report = control_client.query(control_client.socket_path(mnt))
        assert (report["pid"], report["lock_timeout"], report["policy"]) == (pid, 7.0, "off")
        conn = sqlite3.connect(mnt / "x.db")
        conn.execute("CREATE TABLE t(v)")
        conn.execute("INSERT INTO t VALUES (1)")
        conn.commit()
        conn.close()
        assert (backing / "x.db").stat().st_size > 0
    finally:
        subprocess.run(["fusermount3", "-u", str(mnt)], check=False, capture_output=True)
        deadline = time.monotonic() + 15
        while pid is not None and _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid is not None and _alive(pid):
            os.kill(pid, signal.SIGKILL)
        force_unmount(mnt)
    assert pid is not None and not _alive(pid)  # unmounting ends the daemon
    assert not is_mounted(mnt)


def test_mounts_over_a_shared_bind_mount_and_reaches_its_peer(tmp_path: Path) -> None:
    """The container volume: `-v /srv/mnt:/mnt/hoodydb:rshared`. The mountpoint is itself a bind
    mount, the mount goes on top of it, and the host's side of the bind sees it.

    Regression: the bind counted as "already mounted", so the daemon refused to start while
    `hoodydb serve`, seeing a mount at the path, served the bare directory without the gate."""
    host, inner, backing = tmp_path / "host", tmp_path / "inner", tmp_path / "backing"
    for d in (host, inner, backing):
        d.mkdir()
    binds: list[Path] = []

    def bind(*args: str) -> None:
        subprocess.run(["mount", *args], check=True, capture_output=True)

    try:
        bind("--bind", str(host), str(host))
        binds.append(host)
        bind("--make-shared", str(host))
        bind("--bind", str(host), str(inner))  # a peer of host, as the container's volume is
        binds.append(inner)
        assert mounted_type(inner) is not None and not is_mounted(inner)  # mounted, not FUSE
        with MountProcess(backing, inner):
            assert mounted_type(inner) == FSTYPE
            assert mounted_type(host) == FSTYPE  # propagated to the host side
            conn = sqlite3.connect(host / "x.db")
            conn.execute("CREATE TABLE t(v)")
            conn.execute("INSERT INTO t VALUES (1)")
            conn.commit()
            conn.close()
            assert (backing / "x.db").exists()  # the write went through the mount
        assert not is_mounted(inner) and not is_mounted(host)
    finally:
        for path in reversed(binds):
            subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
