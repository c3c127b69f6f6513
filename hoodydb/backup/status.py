"""How far each database's replica has come, and how far behind the live database it is.

Litestream answers with two transaction ids per database: the last it has read from the WAL
(`txid`) and the last the replica holds (`replicated_txid`). The tracker notes when it first saw
each newer `txid`; the lag is the age of the oldest transaction Litestream has read but the replica
does not hold yet. While Litestream does not answer (dead, restarting, stuck), changes to the live
database (the mtime of its files in the backing tree) after the last answer count from the first
time they were seen. Both are measured at the poll's resolution (`POLL_INTERVAL_S`).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")


def changed_at(path: str) -> float | None:
    """The last time the live database (its file or its WAL) was written, or None if it is gone."""
    times = []
    for p in (path, path + "-wal"):
        with contextlib.suppress(OSError):
            times.append(os.stat(p).st_mtime)
    return max(times) if times else None


@dataclass
class Tracker:
    name: str
    txid: int = 0
    replicated_txid: int = 0
    replicated_at: float | None = None  # when the replica last held all Litestream had read
    answered_at: float | None = None  # Litestream's last answer about this database
    unanswered_change: float | None = None  # the first change seen while it did not answer
    watched_since: float = field(default_factory=time.time)  # older changes: Litestream's to find
    errors: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    _seen: deque[tuple[float, int]] = field(default_factory=deque)  # (first seen, txid)

    def answered(self, now: float, txid: int, replicated: int) -> None:
        if txid > self.txid:
            first = self.unanswered_change if self.unanswered_change is not None else now
            self._seen.append((min(first, now), txid))
            self.txid = txid
        self.unanswered_change = None
        self.replicated_txid = replicated
        while self._seen and self._seen[0][1] <= replicated:
            self._seen.popleft()
        if replicated >= txid:
            self.replicated_at = now
        self.answered_at = now

    def unanswered(self, changed: float | None) -> None:
        """Litestream did not answer; `changed` is the live database's last write."""
        after = self.answered_at or self.watched_since
        if changed is not None and changed > after and self.unanswered_change is None:
            self.unanswered_change = changed

    def error(self, now: float, message: str) -> None:
        self.errors += 1
        self.last_error, self.last_error_at = message, now

    def lag(self, now: float) -> float:
        oldest = [
            t for t in (self._seen[0][0] if self._seen else None, self.unanswered_change) if t is not None
        ]
        return max(0.0, now - min(oldest)) if oldest else 0.0

    def as_dict(self, now: float, stale_after: float) -> dict[str, Any]:
        lag = self.lag(now)
        return {
            "txid": self.txid,
            "replicated_txid": self.replicated_txid,
            "replicated_at": iso(self.replicated_at),
            "lag_seconds": round(lag, 3),
            "stale": lag > stale_after,
            "errors": self.errors,
            "last_error": self.last_error,
            "last_error_at": iso(self.last_error_at),
        }
