"""The guards of the SQL core: the PRAGMA allowlist and its documentation, bounded queues, cancellation."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

import apsw
import pytest

from hoodydb.sql import errors
from hoodydb.sql.connection import GuardedConnection
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.limits import SqlLimits
from hoodydb.sql.pragmas import allowed_names, pragma_allowed
from hoodydb.sql.transaction import execute_transaction, parse_transaction
from hoodydb.sql.worker import DatabasePool

ROOT = Path(__file__).resolve().parent.parent
ENDLESS = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT max(x) FROM c"


def test_every_allowed_pragma_is_documented_and_known_to_sqlite() -> None:
    security = (ROOT / "docs" / "http-api.md").read_text().split("## Security", 1)[1].split("\n## ", 1)[0]
    documented = set(re.findall(r"`([a-z_]+)(?:[=(][^`]*)?`", security))
    known = {name for (name,) in apsw.Connection(":memory:").execute("PRAGMA pragma_list")}
    assert set(allowed_names()) <= documented
    assert set(allowed_names()) <= known


@pytest.mark.parametrize(
    ("name", "value", "schema", "allowed"),
    [
        ("table_info", "people", None, True),
        ("TABLE_INFO", "people", "temp", True),
        ("journal_mode", None, None, True),
        ("journal_mode", "wal", "main", True),
        ("journal_mode", "Delete", None, True),
        ("journal_mode", "memory", None, False),
        ("journal_mode", "wal", "temp", False),
        ("user_version", "-5", None, True),
        ("user_version", "5; DROP TABLE t", None, False),
        ("foreign_keys", None, None, True),
        ("foreign_keys", "off", None, False),
        ("hard_heap_limit", None, None, False),
        ("no_such_pragma", None, None, False),
    ],
)
def test_pragma_allowlist(name: str, value: str | None, schema: str | None, allowed: bool) -> None:
    assert pragma_allowed(name, value, schema) is allowed


def _hold(release: threading.Event, started: threading.Event) -> Callable[[GuardedConnection], str]:
    def job(gc: GuardedConnection) -> str:
        started.set()
        release.wait(10)
        return "done"

    return job


def test_a_full_queue_is_refused_at_once(tmp_path: Path) -> None:
    async def main() -> None:
        pool = DatabasePool(limits=SqlLimits(max_queue=2))
        path = tmp_path / "q.db"
        await pool.create(path)
        release, started = threading.Event(), threading.Event()
        first = asyncio.ensure_future(pool.run(path, _hold(release, started)))
        second = asyncio.ensure_future(pool.run(path, lambda gc: "second"))
        await asyncio.sleep(0.05)
        with pytest.raises(SqlApiError) as refused:
            await pool.run(path, lambda gc: "third")
        assert refused.value.code == errors.QUEUE_FULL
        release.set()
        assert [await first, await second] == ["done", "second"]
        assert await pool.run(path, lambda gc: "again") == "again"  # the count went back down
        await pool.close()

    asyncio.run(main())


def test_a_caller_that_goes_away_stops_its_work(tmp_path: Path) -> None:
    ran: list[str] = []

    async def main() -> None:
        pool = DatabasePool(statement_timeout=30)
        path = tmp_path / "c.db"
        await pool.create(path)
        gone = asyncio.Event()
        endless = parse_transaction({"transaction": [{"query": ENDLESS}]})

        def queued(gc: GuardedConnection) -> None:
            ran.append("queued")

        running = asyncio.ensure_future(
            pool.run(path, lambda gc: execute_transaction(gc, endless), gone=gone.wait)
        )
        waiting = asyncio.ensure_future(pool.run(path, queued, gone=gone.wait))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        gone.set()
        for task in (running, waiting):
            with pytest.raises(SqlApiError) as left:
                await task
            assert left.value.code == errors.CLIENT_GONE
        assert time.monotonic() - started < 2.0  # interrupted, not run to its 30 s limit
        assert await pool.run(path, lambda gc: gc.in_transaction) is False
        await pool.close()

    asyncio.run(main())
    assert ran == []
