"""`GET /healthz`: 200 when every root (the mount, under `serve`) answers and SQLite works there,
and no database's backup lags more than `--replica-stale-after` (hoodydb.api.backup).

The check stats every root, then runs a small write transaction on a probe database kept in the
first root's `.hoodydb/` (through the mount, like every request), so a broken SQL path (a wedged
mount, SQLite out of memory) fails the check even while the directories still answer. It runs on
its own thread, one at a time: on a hung mount that thread stays stuck, and later calls answer 503
at once instead of piling up more stuck threads (or using up the thread pool every request needs).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import apsw
from starlette.requests import Request
from starlette.responses import Response

from hoodydb.api.backup import stale_problem
from hoodydb.api.errors import UNAVAILABLE, error_response
from hoodydb.api.responses import JsonResponse
from hoodydb.api.state import app_state
from hoodydb.sql.paths import STATE_DIR_NAME

# A hung mount must not hang the health check: answer 503 after this long instead.
CHECK_TIMEOUT_S = 5.0
PROBE_NAME = "health.db"


def check(roots: list[str]) -> str | None:
    """What is wrong, or None."""
    for root in roots:
        if not os.path.isdir(root):
            return f"the database root {root} does not answer"
    state_dir = Path(roots[0]) / STATE_DIR_NAME
    try:
        state_dir.mkdir(mode=0o700, exist_ok=True)
        conn = apsw.Connection(str(state_dir / PROBE_NAME))
        try:
            conn.set_busy_timeout(int(CHECK_TIMEOUT_S * 1000))
            conn.execute("BEGIN IMMEDIATE; PRAGMA user_version = 1; COMMIT")
            conn.execute("SELECT length(randomblob(65536))").fetchall()
        finally:
            conn.close()
    except (OSError, apsw.Error) as exc:
        return f"SQLite does not work in {roots[0]}: {exc}"
    return None


class HealthCheck:
    """At most one check in flight; callers share it."""

    def __init__(
        self,
        roots: list[str],
        *,
        timeout: float = CHECK_TIMEOUT_S,
        checker: Callable[[list[str]], str | None] = check,
    ) -> None:
        self._roots = roots
        self._timeout = timeout
        self._checker = checker
        self._running: Future[str | None] | None = None
        self._lock = threading.Lock()

    def _start(self) -> Future[str | None]:
        with self._lock:
            if self._running is None or self._running.done():
                future: Future[str | None] = Future()
                self._running = future

                def run() -> None:
                    try:
                        future.set_result(self._checker(self._roots))
                    except BaseException as exc:
                        future.set_exception(exc)

                threading.Thread(target=run, name="hoodydb-health", daemon=True).start()
            return self._running

    async def problem(self) -> str | None:
        running = self._start()
        try:
            return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(running)), self._timeout)
        except TimeoutError:
            return f"the health check did not finish within {self._timeout:g} s (a hung mount?)"


def _health_check(request: Request) -> HealthCheck:
    check: HealthCheck | None = getattr(request.app.state, "health_check", None)
    if check is None:
        roots = [str(r) for r in app_state(request).config.roots.given]
        check = request.app.state.health_check = HealthCheck(roots)
    return check


async def healthz(request: Request) -> Response:
    problem = await _health_check(request).problem() or await stale_problem(app_state(request).config)
    if problem is not None:
        return error_response(UNAVAILABLE, problem)
    return JsonResponse({"status": "ok"})
