"""Bearer-token authentication for every `/api/` route; health, metrics and the OpenAPI document stay open."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from hoodydb.api.errors import UNAUTHORIZED, error_response

PROTECTED_PREFIX = "/api/"


def _bearer(scope: Scope) -> bytes | None:
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else None
    return None


class BearerAuthMiddleware:
    def __init__(self, app: ASGIApp, *, tokens: Iterable[str]) -> None:
        self.app = app
        self._tokens = [t.encode("utf-8") for t in tokens]

    def _allowed(self, token: bytes | None) -> bool:
        if not token:
            return False
        # Compare against every token in constant time, so timing tells nothing about any of them.
        matches = [hmac.compare_digest(token, known) for known in self._tokens]
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        token = _bearer(scope)
        if self._allowed(token):
            await self.app(scope, receive, send)
            return
        message = "missing bearer token" if token is None else "invalid bearer token"
        await error_response(UNAUTHORIZED, message)(scope, receive, send)
