"""Prometheus metrics: requests, latencies, and how long work waited for a database and its lock.

Each app gets its own registry, so several apps (tests) in one process never collide.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hoodydb.sql.worker import JobTiming

# Label values must be bounded: any other method (clients may send made-up ones) counts as OTHER.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hoodydb_http_requests",
            "HTTP requests served.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hoodydb_http_request_duration_seconds",
            "Time from request start to the end of the response.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "hoodydb_sql_queue_wait_seconds",
            "Time a request waited for its database's worker thread.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.lock_wait = Histogram(
            "hoodydb_sql_lock_wait_seconds",
            "Time a writing request waited for the database's write lock (BEGIN IMMEDIATE).",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.run_time = Histogram(
            "hoodydb_sql_run_seconds",
            "Time a request ran on its database's worker thread, lock wait included.",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.auth_refused = Counter(
            "hoodydb_auth_refusals",
            "Requests refused for their token: 401 by reason (missing, unknown, revoked, expired), "
            "403 by the scope it lacks (write, database, sql).",
            ["status", "reason"],
            registry=self.registry,
        )
        self.open_databases = Gauge(
            "hoodydb_open_databases", "Databases with an open worker and connection.", registry=self.registry
        )
        # Continuous backup (--replica), per database: read from the daemon at each scrape.
        self.backup = (
            Gauge(
                "hoodydb_backup_lag_seconds",
                "Age of the oldest change Litestream has not yet put into the replica.",
                ["database"],
                registry=self.registry,
            ),
            Gauge(
                "hoodydb_backup_errors",
                "Litestream's errors about the database since the mount started.",
                ["database"],
                registry=self.registry,
            ),
            Gauge(
                "hoodydb_backup_replicated",
                "1 if the database is replicated, 0 if not (rollback-journal mode).",
                ["database"],
                registry=self.registry,
            ),
        )

    def observe_job(self, timing: JobTiming) -> None:
        # Called on worker threads; prometheus_client metrics are thread-safe.
        self.queue_wait.observe(timing.queued)
        self.lock_wait.observe(timing.lock_wait)
        self.run_time.observe(timing.ran)

    async def endpoint(self, request: Request) -> Response:
        pool = getattr(request.app.state, "pool", None)
        if pool is not None:
            self.open_databases.set(pool.open_count)
        state = getattr(request.app.state, "hoodydb", None)
        if state is not None:
            from hoodydb.api.backup import refresh_metrics

            await refresh_metrics(state.config, self.backup)
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class MetricsMiddleware:
    """Counts and times every HTTP request, labelled by route template (bounded label values)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    def _route(self, scope: Scope) -> str:
        for route in self.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                # The console's mount at "/" has the path "": its files count as "other".
                return str(getattr(route, "path", "")) or "other"
        return "other"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            route = self._route(scope)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
