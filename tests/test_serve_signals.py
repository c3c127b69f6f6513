"""A stop signal to `hoodydb serve` while its mount is still starting leaves nothing behind: the
daemon is stopped before serve exits, so nothing stays mounted and no daemon lives on under pid 1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hoodydb.fs.process import force_unmount, is_mounted

pytestmark = [pytest.mark.fuse, pytest.mark.http]  # it starts `hoodydb serve` with its mount


def _processes_naming(marker: str) -> list[int]:
    """Every live process whose command line contains `marker` (a unique temporary path)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Seconds between the mount daemon's appearance and the signal: from "just forked" to "mounted,
# API starting" (the daemon takes a few tenths of a second to mount).
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.15, 0.3, 0.6])
def test_sigterm_during_start_leaves_no_mount_and_no_daemon(tmp_path: Path, delay: float) -> None:
    data, mnt = tmp_path / "data", tmp_path / "mnt"
    hoodydb = Path(sys.executable).parent / "hoodydb"
    cmd = [str(hoodydb), "serve", "--data", str(data), "--mount", str(mnt), "--port", str(_free_port())]
    err = tmp_path / "serve.err"
    with err.open("wb") as stderr:
        serve = subprocess.Popen([*cmd, "--token", "t"], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        deadline = time.monotonic() + 30
        while not [pid for pid in _processes_naming(str(mnt)) if pid != serve.pid]:
            assert serve.poll() is None, err.read_text()
            assert time.monotonic() < deadline, "serve never started its mount"
            time.sleep(0.005)
        time.sleep(delay)
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
        assert not is_mounted(mnt)
        assert _processes_naming(str(mnt)) == []
    finally:
        for pid in _processes_naming(str(mnt)):
            os.kill(pid, signal.SIGKILL)
        serve.wait(timeout=30)
        force_unmount(mnt)
