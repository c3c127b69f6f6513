"""Litestream's control socket: HTTP over a Unix socket, asked how far each replica has come.

`POST /sync {"path"}` has Litestream read the database's new WAL frames (what it does every second
anyway) and answers with its position (`txid`, the last transaction it has read) and the replica's
(`replicated_txid`); `GET /list` gives the time of each database's last successful replica sync.
"""

from __future__ import annotations

import http.client
import json
import socket
from pathlib import Path
from typing import Any

TIMEOUT_S = 5.0


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("litestream", timeout=timeout)
        self._path = str(path)

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class LitestreamError(Exception):
    pass


def call(path: Path, method: str, route: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    conn = _UnixConnection(path, TIMEOUT_S)
    try:
        payload = None if body is None else json.dumps(body)
        conn.request(method, route, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = json.loads(response.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise LitestreamError(f"Litestream's control socket does not answer: {exc}") from None
    finally:
        conn.close()
    if response.status != 200:
        raise LitestreamError(str(data.get("error") or f"status {response.status}"))
    return data  # type: ignore[no-any-return]


def position(path: Path, database: str) -> tuple[int, int]:
    """(txid, replicated_txid) of `database` (its path as Litestream knows it)."""
    data = call(path, "POST", "/sync", {"path": database})
    return int(data.get("txid") or 0), int(data.get("replicated_txid") or 0)


def last_syncs(path: Path) -> dict[str, str]:
    """The time (RFC 3339) of each database's last successful replica sync, by path."""
    data = call(path, "GET", "/list")
    return {d["path"]: d["last_sync_at"] for d in data.get("databases") or [] if d.get("last_sync_at")}
