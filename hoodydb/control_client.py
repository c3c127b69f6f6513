"""Where a mount's control socket lives, and how to read it.

The daemon serves its lock report there (`hoodydb.fs.control`); `hoodydb locks` and the API's
`/locks` route read it with `query()`. Kept outside `hoodydb.fs` so readers need none of the daemon.
`query()` connects, shuts its own side (no request: the lock report) and reads one JSON document;
`watch()` sends a watch request line and reads the commit feed, one JSON line per event.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def runtime_dir() -> Path:
    override = os.environ.get("HOODYDB_RUNTIME_DIR")
    if override:
        return Path(override)
    if os.geteuid() == 0:
        return Path("/run/hoodydb")
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return Path(xdg) / "hoodydb" if xdg else Path(f"/tmp/hoodydb-{os.geteuid()}")


class RuntimeDirError(Exception):
    """The runtime directory is not this user's own: a socket there could be anyone's."""


def ensure_runtime_dir(directory: Path | None = None) -> Path:
    """The runtime directory (or `directory`), created private if missing; refused if another
    user made it or can write to it, since whoever owns it could answer for our daemons (and
    `serve` stops daemons by what their socket says)."""
    directory = runtime_dir() if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = os.lstat(directory)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise RuntimeDirError(
            f"runtime directory {directory} is not a directory owned by this user and writable only"
            " by it; remove it or set HOODYDB_RUNTIME_DIR"
        )
    return directory


def socket_path(mountpoint: str | os.PathLike[str]) -> Path:
    digest = hashlib.sha1(os.path.realpath(mountpoint).encode()).hexdigest()[:16]
    return runtime_dir() / f"mount-{digest}.sock"


def all_sockets() -> Iterator[Path]:
    directory = runtime_dir()
    if directory.is_dir():
        yield from sorted(directory.glob("mount-*.sock"))


def query(path: Path, timeout: float = 5.0) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.shutdown(socket.SHUT_WR)  # no request: the report, at once
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


def watch_request(
    db: str = "*", since: int | dict[str, int] | None = None, heartbeat: float | None = None
) -> bytes:
    """The request line that asks the daemon for its commit feed (see hoodydb.fs.control)."""
    body: dict[str, Any] = {"db": db, "since": since}
    if heartbeat is not None:
        body["heartbeat"] = heartbeat
    return json.dumps({"watch": body}).encode() + b"\n"


def watch(
    path: Path,
    db: str = "*",
    since: int | dict[str, int] | None = None,
    *,
    heartbeat: float | None = None,
    timeout: float = 5.0,
) -> Iterator[dict[str, Any]]:
    """The mount's commit feed: a "start" message with each matching database's last sequence
    number, then "commit", "missed" and "heartbeat" messages, until the mount goes away. Reads
    time out (TimeoutError) after `timeout` seconds more than the heartbeat without a line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(watch_request(db, since, heartbeat))
        sock.settimeout(timeout + (heartbeat or 15.0))
        with sock.makefile("rb") as lines:
            for line in lines:
                yield json.loads(line)
