"""`POST /api/v1/sqlite/databases`: create a new, empty database under a root."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hoodydb.api.access import require_write, resolve_in_scope, token_scope
from hoodydb.api.body import read_json
from hoodydb.api.responses import JsonResponse
from hoodydb.api.state import app_state
from hoodydb.sql import errors as codes
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.paths import remove_made, resolve_new


async def create_database(request: Request) -> Response:
    state = app_state(request)
    body = await read_json(request, state.config.max_body_bytes)
    if not isinstance(body, dict) or not isinstance(body.get("path"), str) or set(body) != {"path"}:
        raise SqlApiError(codes.BAD_REQUEST, 'the body must be {"path": "name.db"}')
    require_write(request, "create databases")
    roots = state.config.roots
    made: list[Path] = []
    try:
        path = await run_in_threadpool(
            resolve_in_scope, token_scope(request), body["path"], roots, partial(resolve_new, made=made)
        )
        await state.pool.create(path)
    except BaseException:
        # A refused or failed creation leaves nothing behind: no empty file, no new directories.
        await run_in_threadpool(remove_made, made)
        raise
    return JsonResponse({"path": roots.relative_name(path), "created": True}, status_code=201)
