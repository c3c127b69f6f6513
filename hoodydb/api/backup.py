"""`GET /api/v1/sqlite/backup`, and the backup's share of `/healthz` and `/metrics`.

The mount daemon runs Litestream and keeps its progress (hoodydb.backup); it reports it on its
control socket with the lock report, under `backup`. These read it off the event loop. Without a
mount (`--no-mount`) nothing is replicated, and the answer says so.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hoodydb.api.access import token_scope
from hoodydb.api.config import ApiConfig
from hoodydb.api.errors import UNAVAILABLE, error_response
from hoodydb.api.locks import QUERY_TIMEOUT_S, _read, in_scope
from hoodydb.api.responses import JsonResponse
from hoodydb.api.state import app_state

NOT_MOUNTED: dict[str, Any] = {"mounted": False, "replica": None, "litestream": None, "databases": []}


async def read_backup(config: ApiConfig) -> dict[str, Any] | None:
    """The daemon's backup report, or None without a mount; OSError/TimeoutError if it is silent."""
    if config.control_socket is None:
        return None
    report = await asyncio.wait_for(run_in_threadpool(_read, config.control_socket), QUERY_TIMEOUT_S + 1)
    backup: dict[str, Any] = report.get("backup") or {"replica": None, "litestream": None, "databases": []}
    return backup


async def backup_report(request: Request) -> Response:
    try:
        backup = await read_backup(app_state(request).config)
    except (OSError, TimeoutError, ValueError) as exc:
        return error_response(UNAVAILABLE, f"the mount's control socket does not answer ({exc})")
    if backup is None:
        return JsonResponse(NOT_MOUNTED)
    return JsonResponse({"mounted": True, **in_scope(backup, token_scope(request))})


async def stale_problem(config: ApiConfig) -> str | None:
    """What /healthz says when a database's replica lags more than the daemon's threshold."""
    try:
        backup = await read_backup(config)
    except (OSError, TimeoutError, ValueError):
        return None  # a silent daemon fails the SQL probe, which says more
    if not backup:
        return None
    stale = [db for db in backup["databases"] if db.get("stale")]
    if not stale:
        return None
    names = ", ".join(f"{db['database']} ({db['lag_seconds']:.0f} s)" for db in stale)
    return f"backup behind by more than {backup['stale_after']:g} s: {names}"


async def refresh_metrics(config: ApiConfig, gauges: Any) -> None:
    """Set the backup gauges from the daemon's report (cleared first: databases come and go)."""
    try:
        backup = await read_backup(config)
    except (OSError, TimeoutError, ValueError):
        return
    for gauge in gauges:
        gauge.clear()
    if not backup:
        return
    lag, errors, replicated = gauges
    for db in backup["databases"]:
        replicated.labels(db["database"]).set(1 if db["replicated"] else 0)
        if db["replicated"]:
            lag.labels(db["database"]).set(db.get("lag_seconds", 0))
            errors.labels(db["database"]).set(db.get("errors", 0))
