"""The control socket: `hoodydb locks` asks a running mount what its lock manager sees.

One Unix socket per mount, in a runtime directory outside the mount (the daemon must never touch
its own mount). A client connects and reads one JSON document; nothing is sent the other way.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
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
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return json.loads(b"".join(chunks))  # type: ignore[no-any-return]


class ControlServer:
    """Serves `report()` as JSON to every connection, from a daemon thread."""

    def __init__(self, path: Path, report: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        path.unlink(missing_ok=True)

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                self.request.sendall(json.dumps(report()).encode())

        self._server = socketserver.ThreadingUnixStreamServer(str(path), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="hoodydb-control", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self.path.unlink(missing_ok=True)
