"""`POST /api/v1/sqlite/db?db=PATH`: run a ws4sqlite-shaped transaction."""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response

from hoodydb.api.access import token_scope
from hoodydb.api.body import read_json
from hoodydb.api.disconnect import disconnected
from hoodydb.api.responses import JsonResponse
from hoodydb.api.state import app_state, database_path
from hoodydb.sql.transaction import execute_transaction, parse_transaction


async def exec_transaction(request: Request) -> Response:
    state = app_state(request)
    parsed = parse_transaction(await read_json(request, state.config.max_body_bytes))
    path = await database_path(request)
    job = partial(execute_transaction, request=parsed)
    scope = token_scope(request)
    results = await state.pool.run(
        path, job, gone=partial(disconnected, request), read_only=scope.read_only, writer=scope.name
    )
    return JsonResponse({"results": results})
