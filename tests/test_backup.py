"""Continuous backup on real mounts: Litestream run by the mount daemon (`--replica`), real writers.

Every writer runs at busy timeout 0, so a turn that Litestream's reads or checkpoints took from
them would be an error. Data is checked by restoring with `hoodydb restore` (row counts,
integrity_check); status by the daemon's own report (`hoodydb backup status`).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import Mounted, MountFactory

from bench.workload import WorkloadSpec, check_database, prepare_database, run_workload
from hoodydb import control_client
from hoodydb.backup.read_replica import follower_env
from hoodydb.fs.process import MountProcess

T = TypeVar("T")
CATCH_UP_S = 60.0
WRITERS = WorkloadSpec("txn", "wal", 0, writers=4, transactions=40)


def hoodydb(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hoodydb", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=None if env is None else {**os.environ, **env},
    )


def backup_status(m: Mounted) -> dict[str, Any]:
    report: dict[str, Any] = control_client.query(control_client.socket_path(m.mnt))["backup"]
    return report


def entry(m: Mounted, name: str) -> dict[str, Any]:
    return next(db for db in backup_status(m)["databases"] if db["database"] == name)


def wait_for(check: Callable[[], T | None], what: str, within: float = CATCH_UP_S) -> T:
    deadline = time.monotonic() + within
    while True:
        try:
            value = check()
        except (StopIteration, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within} s")
        time.sleep(0.2)


def restored(
    replica: str, name: str, out: Path, *extra: str, env: dict[str, str] | None = None
) -> tuple[int, str]:
    out.unlink(missing_ok=True)
    done = hoodydb("restore", "--replica", replica, "--db", name, *extra, str(out), env=env)
    assert done.returncode == 0, done.stderr
    return check_database(str(out))


def restored_rows(
    replica: str, name: str, out: Path, rows: int, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Restore until the replica holds `rows` rows (Litestream ships about once a second)."""
    deadline = time.monotonic() + CATCH_UP_S
    while True:
        out.unlink(missing_ok=True)
        done = hoodydb("restore", "--replica", replica, "--db", name, str(out), env=env)
        if done.returncode and "has no backup of" in done.stderr and time.monotonic() < deadline:
            time.sleep(0.5)  # not yet: its first snapshot is under way
            continue
        assert done.returncode == 0, done.stderr
        got = check_database(str(out))
        if got[0] >= rows or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def insert(db: str, n: int, w: int = 0) -> None:
    conn = sqlite3.connect(db, timeout=0)
    try:
        for i in range(n):
            conn.execute("INSERT INTO t(w, v) VALUES (?, ?)", (w, i))
            conn.commit()
    finally:
        conn.close()


def journal_mode(db: str) -> str:
    conn = sqlite3.connect(db)
    try:
        return str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def test_every_wal_database_is_replicated_beside_writers_and_rollback_ones_are_reported(
    mount_factory: MountFactory, tmp_path: Path
) -> None:
    replica = f"file://{tmp_path}/replica"
    m = mount_factory(f"--replica={replica}", "--log-level=info")
    app = m.path("app.db")
    prepare_database(app, "wal")
    prepare_database(m.path("journal.db"), "delete")
    (m.mnt / "notes.txt").write_text("not a database")
    wait_for(lambda: backup_status(m)["litestream"]["running"], "Litestream started")

    # A database created while Litestream runs, in a subdirectory: picked up too.
    (m.mnt / "team").mkdir()
    later = m.path("team/later.db")
    prepare_database(later, "wal")
    cli = [
        subprocess.Popen(
            ["sqlite3", app, f"INSERT INTO t(w, v) VALUES (9000, {n});"], stderr=subprocess.PIPE, text=True
        )
        for n in range(10)
    ]
    result = run_workload(app, WRITERS, prepare=False)
    insert(later, 25)
    assert [(p.communicate(timeout=120)[1], p.returncode) for p in cli] == [("", 0)] * 10
    assert not result.errors, result.summary()
    expected = WRITERS.expected + 10
    assert check_database(app) == (expected, "ok")

    assert restored_rows(replica, "app.db", tmp_path / "app.db", expected) == (expected, "ok")
    assert restored_rows(replica, "team/later.db", tmp_path / "later.db", 25) == (25, "ok")
    assert (tmp_path / "replica" / "team" / "later.db").is_dir()  # its own path under the URL

    caught_up = wait_for(
        lambda: (
            (db := entry(m, "app.db"))["replicated_txid"] == db["txid"] > 0 and db["lag_seconds"] == 0 and db
        ),
        "the status says app.db is caught up",
    )
    assert caught_up["replicated"] and caught_up["errors"] == 0 and caught_up["replicated_at"]
    journal = entry(m, "journal.db")
    assert journal["replicated"] is False and "rollback-journal" in journal["reason"]
    assert journal_mode(m.path("journal.db")) == "delete"  # never switched to WAL behind its back
    assert "notes.txt" not in [db["database"] for db in backup_status(m)["databases"]]
    assert not (tmp_path / "replica" / "journal.db").exists()

    shown = hoodydb("backup", "status", str(m.mnt))
    assert shown.returncode == 0, shown.stderr
    assert "journal.db  NOT REPLICATED: rollback-journal mode" in shown.stdout
    assert "app.db  txid" in shown.stdout
    # Litestream's log went into the daemon's.
    assert "hoodydb.litestream INFO time=" in m.log.read_text()


def test_restore_at_a_time_gives_exactly_the_rows_acknowledged_before_it(
    mount_factory: MountFactory, tmp_path: Path
) -> None:
    replica = f"file://{tmp_path}/replica"
    m = mount_factory(f"--replica={replica}")
    app = m.path("app.db")
    prepare_database(app, "wal")
    insert(app, 30, w=1)
    assert restored_rows(replica, "app.db", tmp_path / "first.db", 30) == (30, "ok")
    time.sleep(1.5)
    moment = datetime.now(UTC)
    time.sleep(1.5)
    insert(app, 20, w=2)
    assert restored_rows(replica, "app.db", tmp_path / "latest.db", 50) == (50, "ok")

    at = restored(replica, "app.db", tmp_path / "at.db", "--timestamp", moment.isoformat())
    assert at == (30, "ok")
    conn = sqlite3.connect(tmp_path / "at.db")
    assert conn.execute("SELECT count(*) FROM t WHERE w = 2").fetchone()[0] == 0
    conn.close()

    # Never over an existing file; a clear error for a database the replica does not have.
    again = hoodydb("restore", "--replica", replica, "--db", "app.db", str(tmp_path / "at.db"))
    assert again.returncode != 0 and "never overwrites" in again.stderr
    missing = hoodydb("restore", "--replica", replica, "--db", "nope.db", str(tmp_path / "nope.db"))
    assert missing.returncode != 0 and "has no backup of nope.db" in missing.stderr
    early = hoodydb(
        "restore",
        "--replica",
        replica,
        "--db",
        "app.db",
        "--timestamp",
        "2000-01-01T00:00:00Z",
        str(tmp_path / "early.db"),
    )
    assert early.returncode != 0 and "no backup of app.db at or before" in early.stderr


def test_litestream_killed_is_restarted_and_catches_up(mount_factory: MountFactory, tmp_path: Path) -> None:
    replica = f"file://{tmp_path}/replica"
    m = mount_factory(f"--replica={replica}")
    app = m.path("app.db")
    prepare_database(app, "wal")
    first = wait_for(lambda: backup_status(m)["litestream"]["pid"], "Litestream started")
    spec = WorkloadSpec("keep", "wal", 0, writers=4, transactions=60)
    os.kill(first, signal.SIGKILL)  # as the writers below start
    result = run_workload(app, spec, prepare=False)
    assert not result.errors, result.summary()
    second = wait_for(
        lambda: (ls := backup_status(m)["litestream"])["running"] and ls["pid"] != first and ls["pid"],
        "Litestream started again",
    )
    assert backup_status(m)["litestream"]["restarts"] >= 1
    os.kill(second, signal.SIGKILL)
    insert(app, 10)
    expected = spec.expected + 10
    assert restored_rows(replica, "app.db", tmp_path / "r.db", expected) == (expected, "ok")
    assert "Litestream (pid" in m.log.read_text() and "exited with status" in m.log.read_text()


def test_litestream_dies_with_a_killed_daemon_and_a_new_mount_catches_up(
    mount_factory: MountFactory, tmp_path: Path
) -> None:
    replica = f"file://{tmp_path}/replica"
    m = mount_factory(f"--replica={replica}")
    app = m.path("app.db")
    prepare_database(app, "wal")
    insert(app, 20)
    assert restored_rows(replica, "app.db", tmp_path / "r1.db", 20) == (20, "ok")
    pid = backup_status(m)["litestream"]["pid"]
    m.process.kill()  # SIGKILL: no clean-up in the daemon
    wait_for(lambda: not alive(pid), "Litestream gone with its daemon", 10)
    m.process.stop()  # unmounts the dead mount

    # Written while nothing replicates (no mount: straight to the backing file), then mounted again.
    insert(str(m.backing / "app.db"), 15)
    again = MountProcess(m.backing, m.mnt, extra_args=[f"--replica={replica}"], stderr_path=m.log).start()
    try:
        insert(app, 5)
        assert restored_rows(replica, "app.db", tmp_path / "r2.db", 40) == (40, "ok")
    finally:
        again.stop()


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return " Z" not in Path(f"/proc/{pid}/stat").read_text().split(")")[-1][:3]
    except OSError:
        return False


def test_writers_never_wait_for_an_unreachable_replica_and_it_catches_up(
    mount_factory: MountFactory, tmp_path: Path
) -> None:
    blocker = tmp_path / "target"
    blocker.write_text("a file where the replica's directory should be")
    replica = f"file://{blocker}/replica"
    m = mount_factory(f"--replica={replica}", "--replica-stale-after=2")
    app = m.path("app.db")
    prepare_database(app, "wal")
    wait_for(lambda: backup_status(m)["litestream"]["running"], "Litestream started")
    result = run_workload(app, WRITERS, prepare=False)
    assert not result.errors, result.summary()
    stale = wait_for(lambda: (db := entry(m, "app.db"))["stale"] and db, "the status says stale")
    assert stale["lag_seconds"] > 2 and stale["errors"] > 0 and stale["last_error"]

    blocker.unlink()  # the target comes back
    blocker.mkdir()
    assert restored_rows(replica, "app.db", tmp_path / "r.db", WRITERS.expected) == (WRITERS.expected, "ok")
    wait_for(lambda: not entry(m, "app.db")["stale"], "no longer stale")


def test_checkpoint_storm_a_deleted_and_a_renamed_database(
    mount_factory: MountFactory, tmp_path: Path
) -> None:
    replica = f"file://{tmp_path}/replica"
    m = mount_factory(f"--replica={replica}")
    app, gone = m.path("app.db"), m.path("gone.db")
    prepare_database(app, "wal")
    prepare_database(gone, "wal")
    wait_for(lambda: len(backup_status(m)["databases"]) == 2, "both databases seen")

    procs = [
        subprocess.Popen([sys.executable, "-c", STORM, app, str(w)], stderr=subprocess.PIPE, text=True)
        for w in range(4)
    ]
    assert [(p.communicate(timeout=240)[1], p.returncode) for p in procs] == [("", 0)] * 4
    assert check_database(app) == (160, "ok")
    assert restored_rows(replica, "app.db", tmp_path / "r.db", 160) == (160, "ok")

    for suffix in ("", "-wal", "-shm"):
        Path(gone + suffix).unlink(missing_ok=True)
    wait_for(
        lambda: [db["database"] for db in backup_status(m)["databases"]] == ["app.db"], "gone.db dropped"
    )
    insert(app, 5)
    assert restored_rows(replica, "app.db", tmp_path / "r2.db", 165) == (165, "ok")
    assert backup_status(m)["litestream"]["running"]

    # Renamed (no connection open, so no -wal or -shm beside it): replicated under its new name,
    # from its first state there, and writes to it keep arriving.
    moved = m.path("moved.db")
    os.rename(app, moved)
    wait_for(
        lambda: [db["database"] for db in backup_status(m)["databases"]] == ["moved.db"], "moved.db seen"
    )
    insert(moved, 7)
    assert restored_rows(replica, "moved.db", tmp_path / "r3.db", 172) == (172, "ok")
    assert check_database(moved) == (172, "ok")
    assert backup_status(m)["litestream"]["running"]


# A writer that forces a TRUNCATE checkpoint after every commit, in its own process.
STORM = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], timeout=0)
for i in range(40):
    conn.execute("INSERT INTO t(w, v) VALUES (?, ?)", (int(sys.argv[2]), i))
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
conn.close()
"""


@pytest.mark.fuse
def test_replica_without_litestream_is_a_clear_startup_error(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    done = hoodydb(
        "mount",
        str(tmp_path / "data"),
        str(tmp_path / "mnt"),
        "--replica",
        f"file://{tmp_path}/r",
        "--litestream",
        str(tmp_path / "no-litestream"),
    )
    assert done.returncode != 0
    assert "needs the Litestream binary" in done.stderr


# A read replica "on another host": its own process, which knows only the replica URL.
FOLLOWER = """
import sys, time
from hoodydb.backup.read_replica import open_read_replica
conn = open_read_replica()
want, deadline, seen = int(sys.argv[1]), time.monotonic() + 60, []
while time.monotonic() < deadline:
    n = conn.execute("SELECT count(*) FROM t").fetchall()[0][0]
    if not seen or seen[-1] != n:
        seen.append(n)
        print(n, flush=True)
    if n >= want:
        break
    time.sleep(0.2)
print("integrity", conn.execute("PRAGMA integrity_check").fetchall()[0][0], flush=True)
try:
    conn.execute("INSERT INTO t(w, v) VALUES (0, 0)")
    print("wrote")
except Exception as exc:
    print("refused", type(exc).__name__)
"""


def test_a_read_replica_follows_the_live_database(mount_factory: MountFactory, tmp_path: Path) -> None:
    replica = f"file://{tmp_path}/replica"
    m = mount_factory(f"--replica={replica}")
    app = m.path("app.db")
    prepare_database(app, "wal")
    insert(app, 10)
    assert restored_rows(replica, "app.db", tmp_path / "r.db", 10) == (10, "ok")
    follower = subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, "25"],
        stdout=subprocess.PIPE,
        text=True,
        env=follower_env(replica, "app.db"),
    )
    assert follower.stdout is not None
    assert int(follower.stdout.readline()) == 10  # what the replica held when it opened
    insert(app, 15)  # the live database moves on; the follower sees it through the replica
    out, _ = follower.communicate(timeout=120)
    lines = out.split()
    assert lines[-5:] == ["25", "integrity", "ok", "refused", "ReadOnlyError"], out  # never takes a write
    assert check_database(app) == (25, "ok")


def test_a_full_backing_disk_fails_writes_cleanly_and_replication_catches_up_once_freed(
    tmp_path: Path,
) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(disk)], check=True)
    replica = f"file://{tmp_path}/replica"
    mount = None
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (2 << 20))  # given back later
        (disk / "tree").mkdir()
        mount = MountProcess(
            disk / "tree",
            tmp_path / "mnt",
            extra_args=[f"--replica={replica}"],
            stderr_path=tmp_path / "m.log",
        ).start()
        app = str(tmp_path / "mnt" / "app.db")
        prepare_database(app, "wal")
        conn = sqlite3.connect(app, timeout=0)
        acknowledged, failure = 0, ""
        for i in range(2000):
            try:
                conn.execute("INSERT INTO t(w, v) VALUES (?, randomblob(8000))", (i,))
                conn.commit()
                acknowledged += 1
            except sqlite3.OperationalError as exc:
                failure = str(exc)
                conn.rollback()
                break
        assert "full" in failure, failure  # SQLite's own "database or disk is full"
        filler.unlink()  # space comes back
        for i in range(5):
            conn.execute("INSERT INTO t(w, v) VALUES (?, 1)", (-i,))
            conn.commit()
            acknowledged += 1
        conn.close()
        assert check_database(app) == (acknowledged, "ok")
        assert restored_rows(replica, "app.db", tmp_path / "r.db", acknowledged) == (acknowledged, "ok")
    finally:
        if mount is not None:
            mount.stop()
        subprocess.run(["umount", "-l", str(disk)], check=False)
