"""The control socket's server: `hoodydb locks` asks a running mount what its lock manager sees,
and `hoodydb watch` (and the API's events route) follows its commit feed.

One Unix socket per mount, in a runtime directory outside the mount (the daemon must never touch
its own mount); `hoodydb.control_client` says where, and reads it.

A client sends at most one request line and then reads. No request (the client shuts its side
down, or sends nothing at all) asks for the lock report, one JSON document. A request
`{"watch": {"db": GLOB, "since": ...}}` asks for the commit feed: JSON lines, one per event, until
either side hangs up. Every connection has a thread of its own; a feed's thread sleeps on its
subscription between commits (and wakes for a heartbeat every `heartbeat` seconds).
"""

from __future__ import annotations

import functools
import json
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hoodydb.control_client import ensure_runtime_dir
from hoodydb.fs.feed import Commit, CommitFeed, Missed

log = logging.getLogger(__name__)

# How long a client has to send its request and take its report, all told. Each connection has a
# thread of its own; one that does not read (or reads a byte at a time) would keep it, blocked in
# the send once the report is larger than the socket's buffer, for as long as the client lives.
SEND_SECONDS = 3.0
MAX_REQUEST = 64 * 1024
# A feed's client that has taken nothing for this long (its socket buffer full) is cut off.
WATCH_SEND_SECONDS = 60.0
HEARTBEAT_SECONDS = 15.0


class ControlServer:
    """Serves `report()` as JSON, and `feed` to watchers, from a daemon thread."""

    def __init__(
        self, path: Path, report: Callable[[], dict[str, Any]], feed: CommitFeed | None = None
    ) -> None:
        self.path = path
        ensure_runtime_dir(path.parent)
        path.unlink(missing_ok=True)

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                deadline = time.monotonic() + SEND_SECONDS
                request = _read_request(self.request, deadline)
                watch = request.get("watch") if isinstance(request, dict) else None
                if isinstance(watch, dict):
                    _stream(self.request, feed, watch)
                    return
                body = json.dumps(report()).encode()
                self.request.settimeout(max(0.01, deadline - time.monotonic()))  # the whole send
                try:
                    self.request.sendall(body)
                except TimeoutError:
                    log.warning(
                        "control socket: a client did not take its report within %s s: cut off", SEND_SECONDS
                    )

        self._server = _Server(str(path), Handler)
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


class _Server(socketserver.ThreadingUnixStreamServer):
    # socketserver's backlog of 5 refuses (EAGAIN) the sixth of a burst of connections: a page
    # of SSE subscribers, or watchers started together.
    request_queue_size = 128


@functools.lru_cache(maxsize=1024)
def _line(event: Commit | Missed) -> bytes:
    """An event as a JSON line, made once for all the watchers that send it."""
    return json.dumps(event.as_dict()).encode() + b"\n"


def _read_request(sock: socket.socket, deadline: float) -> Any:
    """The client's request line, parsed; None when it sent none before EOF or the deadline."""
    data = b""
    while b"\n" not in data and len(data) < MAX_REQUEST:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(4096)
        except (TimeoutError, OSError):
            return None
        if not chunk:
            break
        data += chunk
    try:
        return json.loads(data.split(b"\n", 1)[0]) if data.strip() else None
    except ValueError:
        return None


def _stream(sock: socket.socket, feed: CommitFeed | None, watch: dict[str, Any]) -> None:
    """Send the feed to one watcher as JSON lines until it hangs up or the mount stops."""

    def send(message: dict[str, Any]) -> None:
        sock.sendall(json.dumps(message).encode() + b"\n")

    sock.settimeout(WATCH_SEND_SECONDS)
    try:
        if feed is None:
            send({"type": "error", "code": "feed_off", "message": "this mount runs with --no-commit-feed"})
            return
        glob = str(watch.get("db") or "*")
        since = watch.get("since")
        if not (since is None or isinstance(since, (int, dict))):
            send({"type": "error", "code": "bad_since", "message": "since: a number or {db: seq}"})
            return
        heartbeat = max(0.05, float(watch.get("heartbeat") or HEARTBEAT_SECONDS))
        sub = feed.subscribe(glob, since)
        try:
            send({"type": "start", "positions": sub.positions})  # as of the subscription
            for batch in feed.events(sub, heartbeat):
                if not batch:
                    send({"type": "heartbeat"})
                    continue
                # One send per wake-up: under load a watcher wakes once for many commits.
                sock.sendall(b"".join(map(_line, batch)))
        finally:
            feed.unsubscribe(sub)
    except (OSError, ValueError) as exc:  # the watcher went away, or stopped reading
        log.debug("control socket: watcher gone (%s)", exc)
