"""The runtime directory holds the control sockets that `hoodydb locks` and `serve` trust: it must
be this user's own and writable by nobody else."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hoodydb.control_client import RuntimeDirError, ensure_runtime_dir


def test_a_missing_runtime_dir_is_made_private(tmp_path: Path) -> None:
    made = ensure_runtime_dir(tmp_path / "run" / "hoodydb")
    assert made.is_dir() and made.stat().st_mode & 0o777 == 0o700


def test_a_runtime_dir_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(RuntimeDirError, match="owned by this user"):
        ensure_runtime_dir(shared)


def test_a_runtime_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)  # the tests run as root (CI and the dev machines do)
    with pytest.raises(RuntimeDirError):
        ensure_runtime_dir(theirs)


@pytest.mark.fuse
def test_mount_refuses_an_unsafe_runtime_dir_before_mounting(tmp_path: Path) -> None:
    backing, mnt, shared = tmp_path / "b", tmp_path / "m", tmp_path / "shared"
    backing.mkdir()
    shared.mkdir()
    shared.chmod(0o777)
    env = {**os.environ, "HOODYDB_RUNTIME_DIR": str(shared)}
    done = subprocess.run(
        [sys.executable, "-m", "hoodydb", "mount", str(backing), str(mnt)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode != 0 and "runtime directory" in done.stderr
    assert str(mnt) not in Path("/proc/self/mounts").read_text()
