"""`GET /api/v1/sqlite/locks`: what the mount's lock manager sees, as `hoodydb locks --json` shows it.

The mount serves its report on its control socket; this route reads it (off the event loop) and
names each database as the API does, relative to the served root. Without a mount (`--no-mount`)
there is no lock manager: the answer says so with `"mounted": false`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hoodydb.access.scope import Scope
from hoodydb.api.access import token_scope
from hoodydb.api.errors import UNAVAILABLE, error_response
from hoodydb.api.responses import JsonResponse
from hoodydb.api.state import app_state
from hoodydb.control_client import query

# A stuck daemon must not hang the request: the same bound as the health check.
QUERY_TIMEOUT_S = 5.0


def _read(path: Path) -> dict[str, Any]:
    return query(path, timeout=QUERY_TIMEOUT_S)


async def lock_report(request: Request) -> Response:
    socket = app_state(request).config.control_socket
    if socket is None:
        return JsonResponse({"mounted": False, "databases": []})
    try:
        report = await asyncio.wait_for(run_in_threadpool(_read, socket), QUERY_TIMEOUT_S + 1)
    except (OSError, TimeoutError, ValueError) as exc:
        return error_response(UNAVAILABLE, f"the mount's control socket does not answer ({exc})")
    for db in report["databases"]:
        # The daemon names files by their path inside the mount ("/team/app.db").
        db["database"] = str(db["database"]).removeprefix("/")
    # A `--db` token sees the locks of its own databases only.
    scope = token_scope(request)
    report = in_scope(report, scope)
    if report.get("backup"):
        report["backup"] = in_scope(report["backup"], scope)
    return JsonResponse({"mounted": True, **report})


def in_scope(report: dict[str, Any], scope: Scope) -> dict[str, Any]:
    """`report` with only the `databases` entries a `--db` token may see (locks, backup)."""
    databases = [db for db in report["databases"] if scope.allows_database(db["database"])]
    return {**report, "databases": databases}
