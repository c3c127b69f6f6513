"""Where a mount's control socket lives, and how to read it.

The daemon serves its lock report there (`hoodydb.fs.control`); `hoodydb locks` and the API's
`/locks` route read it with `query()`. Kept outside `hoodydb.fs` so readers need none of the daemon.
A client connects and reads one JSON document; nothing is sent the other way.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
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
