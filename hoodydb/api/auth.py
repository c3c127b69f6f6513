"""Bearer-token authentication for every `/api/` route; health, metrics and the OpenAPI document stay open.

The middleware finds the token's scope (`hoodydb/access/verifier.py`), refuses unknown, revoked and
expired tokens with 401 (429 while a token id's wrong secrets are throttled), and a KV-only
token's request to any other route with 403. The scope rides along in the ASGI scope for the
routes' own checks (`hoodydb/api/access.py`).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from hoodydb.access.scope import SQL
from hoodydb.access.verifier import Refusal, TokenVerifier
from hoodydb.api.errors import TOO_MANY_ATTEMPTS, UNAUTHORIZED, error_response, forbidden_response
from hoodydb.api.metrics import Metrics

PROTECTED_PREFIX = "/api/"
# Where the token's scope is kept for the route (hoodydb/api/access.py reads it).
SCOPE_KEY = "hoodydb.token_scope"
# The routes a `--kv-only` token may use: the KV store, and the one that says what it may do.
KV_ONLY_ROUTES = ("/api/v1/sqlite/kv", "/api/v1/sqlite/token")


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


def _kv_route(path: str) -> bool:
    return any(path == route or path.startswith(route + "/") for route in KV_ONLY_ROUTES)


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, *, verifier: TokenVerifier, metrics: Metrics) -> None:
        self.app = app
        self.verifier = verifier
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        found = await self.verifier.check(_bearer(scope))
        if isinstance(found, Refusal):
            code = UNAUTHORIZED if found.retry_after is None else TOO_MANY_ATTEMPTS
            response = error_response(code, found.message, retry_after=found.retry_after)
            self.metrics.auth_refused.labels(str(response.status_code), found.reason).inc()
            await response(scope, receive, send)
            return
        if found.kv_only and not _kv_route(scope["path"]):
            self.metrics.auth_refused.labels("403", SQL).inc()
            message = f"the token {found.name!r} may only use the key-value routes"
            await forbidden_response(SQL, message)(scope, receive, send)
            return
        scope[SCOPE_KEY] = found
        await self.app(scope, receive, send)
