"""Litestream as the mount daemon's child: started once the mount is up, restarted with backoff when
it dies, started again when the tree's WAL databases change, stopped with the daemon.

Litestream reads every database through the mount (its config names the mountpoint's paths), so
its long read and its checkpoints take turns like every other client's. Its output goes, line by
line, into the daemon's log under `hoodydb.litestream`, at the level Litestream gave it; an ERROR
line is also counted against the database it names. It dies with the daemon (PR_SET_PDEATHSIG):
a daemon killed with SIGKILL must not leave it reading a dead mount.
"""

from __future__ import annotations

import ctypes
import logging
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

from hoodydb.backup import litestream_socket
from hoodydb.backup.discovery import Found, TreeScan
from hoodydb.backup.litestream_config import config_document, database_url, write_config
from hoodydb.backup.status import Tracker, changed_at
from hoodydb.control_client import ensure_runtime_dir, socket_path
from hoodydb.fs.process import FSTYPE, mounted_type, terminate
from hoodydb.sql.paths import STATE_DIR_NAME

log = logging.getLogger("hoodydb.backup")
litestream_log = logging.getLogger("hoodydb.litestream")

POLL_INTERVAL_S = 1.0  # ask Litestream where it is, and look at the tree at most this often
# Looks at the tree take at most this share of the supervisor's time: a tree whose walk takes
# 0.2 s is looked at every 4 s, so a new database there waits that long for replication.
SCAN_SHARE = 0.05
STOP_TIMEOUT_S = 10.0  # SIGTERM lets it finish its last sync; then SIGKILL
MAX_BACKOFF_S = 30.0
STEADY_S = 30.0  # a run this long resets the backoff
_LEVELS = {"DEBUG": logging.DEBUG, "INFO": logging.INFO, "WARN": logging.WARNING, "ERROR": logging.ERROR}
_FIELD = re.compile(r'([\w.-]+)=("(?:[^"\\]|\\.)*"|\S+)')
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: SIGKILL it when the daemon thread that forked it
    # (the supervisor's, which lives as long as the daemon) goes.
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _fields(line: str) -> dict[str, str]:
    return {k: v.strip('"').replace('\\"', '"') for k, v in _FIELD.findall(line)}


def runtime_files(mountpoint: str) -> tuple[Path, Path]:
    """Litestream's config and control socket for this mount, beside the mount's own socket."""
    ours = socket_path(mountpoint)
    stem = ours.name.removeprefix("mount-").removesuffix(".sock")
    return ours.with_name(f"litestream-{stem}.yml"), ours.with_name(f"litestream-{stem}.sock")


class Replication:
    def __init__(
        self, *, backing: Path, mountpoint: str, replica: str, binary: Path, stale_after: float
    ) -> None:
        self.backing = backing
        self.mountpoint = mountpoint
        self.replica = replica
        self.binary = binary
        self.stale_after = stale_after
        self.config_path, self.socket = runtime_files(mountpoint)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hoodydb-litestream", daemon=True)
        self._proc: subprocess.Popen[bytes] | None = None
        self._names: list[str] = []  # what the running Litestream replicates
        self._found: list[Found] = []
        self._tree = TreeScan(backing)
        self._next_scan = 0.0
        self._trackers: dict[str, Tracker] = {}
        self._errors = 0  # Litestream's ERROR lines that name no database of ours
        self._last_error: str | None = None
        self.restarts = 0
        self._deaths = 0  # in a row, for the backoff
        self._next_start = 0.0
        self._started_at = 0.0

    # -- the daemon's side -------------------------------------------------------------------

    def start(self) -> Replication:
        ensure_runtime_dir(self.config_path.parent)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching, then stop Litestream (SIGTERM, SIGKILL after STOP_TIMEOUT_S)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()
        self._stop_process()
        self.socket.unlink(missing_ok=True)

    def report(self) -> dict[str, Any]:
        t = time.time()
        with self._lock:
            proc = self._proc
            databases = []
            for found in self._found:
                entry: dict[str, Any] = {
                    "database": found.name,
                    "replicated": found.wal,
                    "reason": found.reason,
                    "replica_url": database_url(self.replica, found.name) if found.wal else None,
                }
                tracker = self._trackers.get(found.name)
                if found.wal and tracker is not None:
                    entry.update(tracker.as_dict(t, self.stale_after))
                databases.append(entry)
            return {
                "replica": self.replica,
                "litestream": {
                    "running": proc is not None and proc.poll() is None,
                    "pid": proc.pid if proc is not None and proc.poll() is None else None,
                    "restarts": self.restarts,
                    "errors": self._errors,
                    "last_error": self._last_error,
                },
                "stale_after": self.stale_after,
                "databases": databases,
            }

    # -- the supervisor thread ---------------------------------------------------------------

    def _run(self) -> None:
        while mounted_type(self.mountpoint) != FSTYPE:  # Litestream reads through the mount
            if self._stopping.wait(0.05):
                return
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception:  # one bad look must not end backups for the daemon's lifetime
                log.exception("backup supervisor")
            self._stopping.wait(POLL_INTERVAL_S)

    def _tick(self) -> None:
        if time.monotonic() >= self._next_scan:
            found = self._tree.scan()
            self._next_scan = time.monotonic() + self._tree.duration / SCAN_SHARE
        else:
            found = self._found
        names = [f.name for f in found if f.wal]
        with self._lock:
            self._found = found
            for name in names:
                self._trackers.setdefault(name, Tracker(name))
            for gone in set(self._trackers) - set(names):
                del self._trackers[gone]
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            self._died(proc)
        elif proc is not None and names != self._names:
            log.info("the tree's WAL databases changed: Litestream starts again with %s", names)
            self._stop_process()
        if self._proc is None and names and time.monotonic() >= self._next_start:
            self._start_process(names)
        self._poll()

    def _died(self, proc: subprocess.Popen[bytes]) -> None:
        ran = time.monotonic() - self._started_at
        self._deaths = 1 if ran > STEADY_S else self._deaths + 1
        delay = min(2.0 ** (self._deaths - 1), MAX_BACKOFF_S)
        log.error(
            "Litestream (pid %d) exited with status %s; starting it again in %g s",
            proc.pid,
            proc.returncode,
            delay,
        )
        with self._lock:
            self._proc = None
            self._errors += 1
            self._last_error = f"Litestream exited with status {proc.returncode}"
        self._next_start = time.monotonic() + delay
        self.restarts += 1

    def _start_process(self, names: list[str]) -> None:
        state_dir = self.backing / STATE_DIR_NAME
        document = config_document(
            mountpoint=self.mountpoint,
            names=names,
            replica=self.replica,
            state_dir=state_dir,
            socket=self.socket,
        )
        write_config(self.config_path, document)
        self.socket.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [str(self.binary), "replicate", "-config", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,  # a prctl call only, between fork and exec
        )
        assert proc.stdout is not None
        threading.Thread(
            target=self._forward, args=(proc.stdout,), name="hoodydb-litestream-log", daemon=True
        ).start()
        with self._lock:
            self._proc, self._names = proc, names
        self._started_at = time.monotonic()
        log.info("Litestream (pid %d) replicates %d databases to %s", proc.pid, len(names), self.replica)

    def _stop_process(self) -> None:
        with self._lock:
            proc, self._proc, self._names = self._proc, None, []
        if proc is not None:
            terminate(proc, STOP_TIMEOUT_S)

    def _forward(self, stream: IO[bytes]) -> None:
        """Litestream's output into the daemon's log; its errors into the databases' status."""
        with stream:
            for raw in stream:
                line = raw.decode(errors="replace").rstrip()
                fields = _fields(line)
                level = _LEVELS.get(fields.get("level", "").upper(), logging.INFO)
                litestream_log.log(level, "%s", line)
                if level >= logging.ERROR:
                    self._count_error(fields, line)

    def _count_error(self, fields: dict[str, str], line: str) -> None:
        message = fields.get("error") or fields.get("msg") or line
        db = fields.get("db") or fields.get("path") or ""
        t = time.time()
        with self._lock:
            hit = [
                tr
                for name, tr in self._trackers.items()
                if db and (name == db or name.endswith("/" + db) or db.endswith("/" + name))
            ]
            for tracker in hit:
                tracker.error(t, message)
            if not hit:
                self._errors += 1
                self._last_error = message

    def _poll(self) -> None:
        """Ask Litestream where each database is; note the live databases' changes if it cannot say."""
        with self._lock:
            running = self._proc is not None and self._proc.poll() is None
            names = list(self._names) if running else []
            trackers = dict(self._trackers)
        for name, tracker in trackers.items():
            path = f"{self.mountpoint}/{name}"
            answer = None
            if name in names:
                try:
                    answer = litestream_socket.position(self.socket, path)
                except litestream_socket.LitestreamError:
                    answer = None
            t = time.time()
            with self._lock:
                if answer is not None:
                    tracker.answered(t, *answer)
                else:
                    tracker.unanswered(changed_at(str(self.backing / name)))
