"""A backing directory reached through a hoodydb mount: the claim locks the mount's inodes, not the
backing files under them, so it cannot see the first daemon's claim; the mount must be refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hoodydb.fs.process import MountError, MountProcess, mounted_type


def test_a_backing_directory_on_a_hoodydb_mount_is_refused(tmp_path: Path) -> None:
    backing, m1, m2 = tmp_path / "data", tmp_path / "m1", tmp_path / "m2"
    (backing / "app").mkdir(parents=True)
    with MountProcess(backing, m1) as first:
        second = subprocess.run(
            [sys.executable, "-m", "hoodydb", "mount", str(m1 / "app"), str(m2)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        try:
            assert second.returncode != 0, second.stderr
            assert f"is on the hoodydb mount at {m1} (pid {first.pid})" in second.stderr
            assert mounted_type(m2) is None
        finally:
            if mounted_type(m2) is not None:
                subprocess.run(["fusermount3", "-u", str(m2)], check=False)


def test_a_daemon_refused_after_the_launcher_checked_says_why(tmp_path: Path) -> None:
    """Two mounts started at the same instant both pass the launcher's check; the daemon's claim
    refuses one, and its reason (in the daemon's log) must reach the user, not just a status."""
    backing, m1, m2 = tmp_path / "data", tmp_path / "m1", tmp_path / "m2"
    backing.mkdir()
    with MountProcess(backing, m1) as first:
        late = MountProcess(backing, m2, stderr_path=tmp_path / "m2.log", detach=True)
        with pytest.raises(
            MountError, match=rf"already served by the hoodydb mount at {m1} \(pid {first.pid}\)"
        ):
            late.start()
        assert mounted_type(m2) is None
