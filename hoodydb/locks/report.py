"""What `hoodydb locks` shows of one database: a typed snapshot of the lock manager's state.

The control socket sends `as_dict()` (JSON); the daemon adds each process's command line.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class TurnReport:
    pid: int
    seconds: float
    reserved: bool  # held for its owner between two transactions (a grace, a WAL retry)
    exclusive_first: bool  # waiting for EXCLUSIVE straight from SHARED, newcomers held behind it
    why: str  # writing, writer, new, predicted reader, write from beside (gate.Reason)
    window: bool  # it has not asked to write: it goes on beside if it reads on while asleep


@dataclass(frozen=True, slots=True)
class WaiterReport:
    pid: int
    seconds: float
    why: str  # as TurnReport.why: a predicted reader or a write from beside leads the writers


@dataclass(frozen=True, slots=True)
class BesideReport:
    """Transactions running beside the turn: how many, and the oldest."""

    count: int
    oldest_pid: int
    oldest_seconds: float


@dataclass(frozen=True, slots=True)
class OwnerReport:
    """One process that holds locks on the database, or waits for its turn."""

    pid: int
    state: str  # turn, beside, waiting, idle (between transactions)
    why: str  # why it holds, waits or reads beside (empty when idle)
    seconds: float  # in that state


@dataclass(frozen=True, slots=True)
class DatabaseReport:
    database: str
    mode: str  # "wal" or "rollback"
    admitted: TurnReport | None
    waiting: list[WaiterReport]
    readers: list[int]  # pids of the transactions beside the turn
    beside: BesideReport | None
    writers: list[int]  # pids of the owners known to write
    holders: list[int]  # pids holding any lock on the database or its -shm
    counters: dict[str, float | int] = field(default_factory=dict)
    # While requests wait: seconds since the turn last moved (to a new transaction). Waiters time
    # out when it reaches the lock timeout: the holder is stuck, not the queue long.
    still_seconds: float | None = None
    owners: list[OwnerReport] = field(default_factory=list)  # every owner: turn, beside, waiting, idle

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
