"""The per-database worker threads: ordering, errors, eviction, shutdown."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from hoodydb.sql import errors
from hoodydb.sql.connection import GuardedConnection
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.worker import DatabasePool, JobTiming


def test_jobs_run_off_the_loop_in_order_and_timings_are_observed(tmp_path: Path) -> None:
    timings: list[JobTiming] = []

    async def main() -> list[int]:
        pool = DatabasePool(observer=timings.append)
        path = tmp_path / "w.db"
        await pool.create(path)
        loop_thread = threading.get_ident()

        def job(n: int) -> int:
            def run(gc: GuardedConnection) -> int:
                assert threading.get_ident() != loop_thread
                gc.conn.execute("CREATE TABLE IF NOT EXISTS t (n)")
                gc.conn.execute("INSERT INTO t VALUES (?)", (n,))
                return n

            return run

        results = await asyncio.gather(*(pool.run(path, job(n)) for n in range(20)))
        rows = await pool.run(path, lambda gc: [r[0] for r in gc.conn.execute("SELECT n FROM t")])
        await pool.close()
        assert rows == list(range(20))
        return list(results)

    assert asyncio.run(main()) == list(range(20))
    assert len(timings) == 21 and all(t.queued >= 0 and t.ran >= 0 for t in timings)


def test_create_twice_and_not_a_database(tmp_path: Path) -> None:
    async def main() -> None:
        pool = DatabasePool()
        await pool.create(tmp_path / "a.db")
        with pytest.raises(SqlApiError) as info:
            await pool.create(tmp_path / "a.db")
        assert info.value.code == errors.DB_EXISTS
        junk = tmp_path / "junk.db"
        junk.write_bytes(b"this is not a database file at all" * 200)
        with pytest.raises(SqlApiError) as info:
            await pool.run(junk, lambda gc: None)
        assert info.value.code == errors.NOT_A_DATABASE
        await pool.close()
        with pytest.raises(RuntimeError):
            await pool.run(tmp_path / "a.db", lambda gc: None)

    asyncio.run(main())


def test_least_recently_used_idle_databases_are_closed(tmp_path: Path) -> None:
    async def main() -> None:
        pool = DatabasePool(max_open=2)
        for i in range(5):
            await pool.create(tmp_path / f"{i}.db")
            await pool.run(tmp_path / f"{i}.db", lambda gc: gc.conn.execute("SELECT 1").fetchall())
        assert pool.open_count == 2
        await pool.close()

    asyncio.run(main())


def test_a_replaced_or_removed_file_is_reopened_not_written_in_the_void(tmp_path: Path) -> None:
    path = tmp_path / "r.db"

    async def main() -> None:
        pool = DatabasePool()
        await pool.create(path)
        await pool.run(path, lambda gc: gc.conn.execute("CREATE TABLE old (x)"))
        path.unlink()
        with pytest.raises(SqlApiError) as info:
            await pool.run(path, lambda gc: None)
        assert info.value.code == errors.DB_NOT_FOUND
        await pool.create(path)
        tables = await pool.run(path, lambda gc: gc.conn.execute("SELECT name FROM sqlite_schema").fetchall())
        assert tables == []
        await pool.close()

    asyncio.run(main())
