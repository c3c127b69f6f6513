"""`serve` stops an orphan named by whatever answers on the control socket path; that path may sit
in a directory another local user made (/tmp/hoodydb-UID). A report naming a process that does not
hold the claim on the backing directory must never get that process killed."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from hoodydb import control_client as control
from hoodydb.fs.orphan import replace_orphan


def test_a_forged_report_does_not_get_an_unrelated_process_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOODYDB_RUNTIME_DIR", str(tmp_path / "run"))
    backing, mountpoint = tmp_path / "data", tmp_path / "mnt"
    backing.mkdir()
    mountpoint.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    report: dict[str, object] = {"backing": str(backing), "mountpoint": str(mountpoint)}
    report |= {"pid": victim.pid, "serve_pid": gone.pid}
    path = control.socket_path(mountpoint)
    path.parent.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen()

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            conn.sendall(json.dumps(report).encode())

    threading.Thread(target=answer, daemon=True).start()
    said: list[str] = []
    try:
        replace_orphan(backing, mountpoint, said.append, timeout=2.0)
        assert victim.poll() is None, "the forged report got an unrelated process killed"
        assert said == []
    finally:
        server.close()
        victim.kill()
        victim.wait()
