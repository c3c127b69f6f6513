"""`hoodydb restore`: one database from the replica, as it is now or as it was at a time.

A thin shell over `litestream restore -o OUTPUT [-timestamp T] URL`, with the replica URL built as
the daemon builds it (`database_url`), so a database is named as the tree names it. It never
overwrites: an existing OUTPUT (or its -wal/-shm/-journal) is refused before Litestream runs.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path

from hoodydb.backup.binary import locate
from hoodydb.backup.litestream_config import check_url, database_url

TIMEOUT_S = 600.0


class RestoreError(Exception):
    """The restore did not happen; the message says why."""


def parse_time(text: str) -> datetime:
    """An ISO-8601 time; without an offset it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RestoreError(f"--timestamp {text!r} is not an ISO-8601 time (2026-12-07T10:30:00Z)") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def restore(
    *, replica: str, name: str, output: Path, timestamp: datetime | None = None, binary: str = ""
) -> None:
    check_url(replica)
    for path in (output, *(output.with_name(output.name + s) for s in ("-wal", "-shm", "-journal"))):
        if path.exists():
            raise RestoreError(f"{path} exists: restore never overwrites (choose another OUTPUT)")
    if not output.parent.is_dir():
        raise RestoreError(f"{output.parent} is not a directory")
    url = database_url(replica, name)
    command = [str(locate(binary)), "restore", "-o", str(output)]
    if timestamp is not None:
        command += ["-timestamp", timestamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")]
    command.append(url)
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    if done.returncode == 0 and output.exists():
        return
    said = (done.stderr or done.stdout).strip().splitlines()
    last = said[-1] if said else f"status {done.returncode}"
    if (
        any(s in last for s in ("no matching backup", "no snapshots", "timestamp does not exist"))
        or not done.returncode
    ):
        when = "" if timestamp is None else f" at or before {timestamp.isoformat()}"
        raise RestoreError(f"the replica {replica} has no backup of {name}{when} (looked at {url})")
    raise RestoreError(f"litestream restore of {url} failed: {last}")
