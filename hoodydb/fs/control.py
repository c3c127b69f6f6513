"""The control socket's server: `hoodydb locks` asks a running mount what its lock manager sees.

One Unix socket per mount, in a runtime directory outside the mount (the daemon must never touch
its own mount); `hoodydb.control_client` says where, and reads it.
"""

from __future__ import annotations

import json
import logging
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hoodydb.control_client import ensure_runtime_dir

log = logging.getLogger(__name__)

# How long a client has to take its report, all told. Each connection has a thread of its own;
# one that does not read (or reads a byte at a time) would keep it, blocked in the send once the
# report is larger than the socket's buffer, for as long as the client lives.
SEND_SECONDS = 3.0


class ControlServer:
    """Serves `report()` as JSON to every connection, from a daemon thread."""

    def __init__(self, path: Path, report: Callable[[], dict[str, Any]]) -> None:
        self.path = path
        ensure_runtime_dir(path.parent)
        path.unlink(missing_ok=True)

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                body = json.dumps(report()).encode()
                self.request.settimeout(SEND_SECONDS)  # sendall's whole send, not each piece
                try:
                    self.request.sendall(body)
                except TimeoutError:
                    log.warning(
                        "control socket: a client did not take its report within %s s: cut off", SEND_SECONDS
                    )

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
