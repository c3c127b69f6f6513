"""What every request handler reaches through `request.app.state`, and the `db` parameter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from hoodydb.api.access import resolve_in_scope, token_scope
from hoodydb.api.config import ApiConfig
from hoodydb.api.metrics import Metrics
from hoodydb.sql import errors as codes
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.paths import resolve_existing
from hoodydb.sql.worker import DatabasePool


@dataclass
class AppState:
    config: ApiConfig
    metrics: Metrics
    pool: DatabasePool


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.hoodydb
    return state


async def database_path(request: Request) -> Path:
    """The confined, resolved path of the existing database named by `?db=`, if the token may use it."""
    db = request.query_params.get("db")
    if db is None:
        raise SqlApiError(codes.BAD_REQUEST, "the 'db' query parameter is required")
    roots = app_state(request).config.roots
    # stat() may go through the mount: never on the event loop.
    return await run_in_threadpool(resolve_in_scope, token_scope(request), db, roots, resolve_existing)
