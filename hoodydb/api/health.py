"""`GET /healthz`: 200 when every root (the mount, under `serve`) answers and SQLite works, else 503.

The check runs on its own thread, one at a time: on a hung mount that thread stays stuck in
`stat()`, and later calls answer 503 at once instead of piling up more stuck threads (or using up
the thread pool every request needs). SQLite is probed with a small in-memory database, which fails
when the process's SQLite is unusable (out of memory, a heap limit) even if every root answers.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future

import apsw
from starlette.requests import Request
from starlette.responses import Response

from hoodydb.api.errors import UNAVAILABLE, error_response
from hoodydb.api.responses import JsonResponse
from hoodydb.api.state import app_state

# A hung mount must not hang the health check: answer 503 after this long instead.
CHECK_TIMEOUT_S = 5.0


def check(roots: list[str]) -> str | None:
    """What is wrong, or None."""
    for root in roots:
        if not os.path.isdir(root):
            return f"the database root {root} does not answer"
    try:
        conn = apsw.Connection(":memory:")
        try:
            conn.execute("CREATE TABLE probe (v); INSERT INTO probe VALUES (randomblob(65536))")
            conn.execute("SELECT length(v) FROM probe").fetchall()
        finally:
            conn.close()
    except apsw.Error as exc:
        return f"SQLite does not work: {exc}"
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
    problem = await _health_check(request).problem()
    if problem is not None:
        return error_response(UNAVAILABLE, problem)
    return JsonResponse({"status": "ok"})
