"""Which mount `serve` may take for its own orphan: only one whose serve is gone."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from hoodydb.fs.orphan import is_orphan, started_at


def test_a_daemon_of_a_live_serve_is_no_orphan() -> None:
    # This process plays the serve, a child started after it the daemon.
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not is_orphan({"pid": daemon.pid, "serve_pid": os.getpid()})
        assert not is_orphan({"pid": daemon.pid, "serve_pid": None})  # not started by a serve
    finally:
        daemon.kill()
        daemon.wait()


def test_a_daemon_whose_serve_is_gone_or_whose_pid_was_reused_is_an_orphan() -> None:
    serve = subprocess.Popen([sys.executable, "-c", "pass"])
    serve.wait()
    assert started_at(serve.pid) is None
    daemon = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    time.sleep(0.05)  # start times count in clock ticks (10 ms)
    later = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert is_orphan({"pid": daemon.pid, "serve_pid": serve.pid})
        # The serve's pid now names a process that started after the daemon: not that serve.
        assert is_orphan({"pid": daemon.pid, "serve_pid": later.pid})
        # A daemon that is gone is nothing to stop.
        assert not is_orphan({"pid": serve.pid, "serve_pid": 1})
    finally:
        for p in (daemon, later):
            p.kill()
            p.wait()
