"""`create_app()`: every route of the API in one list, with its middleware and lifespan."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Route

from hoodydb.access.verifier import TokenVerifier
from hoodydb.api import (
    access,
    backup,
    database_list,
    databases,
    events,
    health,
    kv,
    locks,
    openapi,
    transactions,
)
from hoodydb.api.auth import BearerAuthMiddleware
from hoodydb.api.config import ApiConfig
from hoodydb.api.console import ConsoleMount
from hoodydb.api.cors import cors_middleware
from hoodydb.api.errors import handle_http_exception, handle_sql_api_error, handle_unexpected
from hoodydb.api.metrics import Metrics, MetricsMiddleware
from hoodydb.api.state import AppState
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.worker import DatabasePool

API = "/api/v1/sqlite"


def routes(metrics: Metrics) -> list[Route]:
    return [
        Route(f"{API}/db", transactions.exec_transaction, methods=["POST"]),
        Route(f"{API}/databases", databases.create_database, methods=["POST"]),
        Route(f"{API}/databases", database_list.list_databases, methods=["GET"]),
        Route(f"{API}/locks", locks.lock_report, methods=["GET"]),
        Route(f"{API}/token", access.describe_token, methods=["GET"]),
        Route(f"{API}/backup", backup.backup_report, methods=["GET"]),
        Route(f"{API}/events", events.commit_events, methods=["GET"]),
        Route(f"{API}/kv", kv.list_keys, methods=["GET"]),
        Route(f"{API}/kv/{{key:path}}", kv.get_key, methods=["GET"]),
        Route(f"{API}/kv/{{key:path}}", kv.put_key, methods=["PUT"]),
        Route(f"{API}/kv/{{key:path}}", kv.delete_key, methods=["DELETE"]),
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/metrics", metrics.endpoint, methods=["GET"]),
        Route("/openapi.json", openapi.openapi_json, methods=["GET"]),
    ]


def create_app(config: ApiConfig) -> Starlette:
    metrics = Metrics()
    route_list: list[BaseRoute] = [*routes(metrics), ConsoleMount()]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        pool = DatabasePool(
            busy_timeout=config.busy_timeout,
            statement_timeout=config.statement_timeout,
            max_open=config.max_open_databases,
            observer=metrics.observe_job,
            limits=config.limits,
            label_writers=config.control_socket is not None,  # served through our mount
        )
        app.state.hoodydb = AppState(config=config, metrics=metrics, pool=pool)
        app.state.pool = pool
        try:
            yield
        finally:
            await pool.close()

    return Starlette(
        routes=route_list,
        middleware=[
            # Outermost: a preflight carries no token, and errors need the CORS headers too.
            *cors_middleware(config.cors_origins),
            Middleware(MetricsMiddleware, metrics=metrics, routes=route_list),
            Middleware(
                BearerAuthMiddleware,
                verifier=TokenVerifier(config.tokens, config.state_base),
                metrics=metrics,
            ),
        ],
        exception_handlers={
            SqlApiError: handle_sql_api_error,
            HTTPException: handle_http_exception,
            Exception: handle_unexpected,
        },
        lifespan=lifespan,
    )
