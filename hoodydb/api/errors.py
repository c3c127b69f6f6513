"""The one JSON error shape, `{"error", "code", "reqIdx"?, "scope"?}`, and the map from codes to statuses.

`scope` comes with `forbidden` (403): the scope the token lacks (`write`, `database` or `sql`).
"""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from hoodydb.api.responses import JsonResponse
from hoodydb.sql import errors as codes
from hoodydb.sql.errors import ForbiddenError, SqlApiError

UNAUTHORIZED = "unauthorized"
TOO_MANY_ATTEMPTS = "too_many_attempts"
BODY_TOO_LARGE = "body_too_large"
METHOD_NOT_ALLOWED = "method_not_allowed"
UNAVAILABLE = codes.UNAVAILABLE
INTERNAL_ERROR = "internal_error"

STATUS_BY_CODE: dict[str, int] = {
    codes.BAD_REQUEST: 400,
    codes.BAD_JSON: 400,
    codes.UNKNOWN_ITEM_KIND: 400,
    codes.BAD_VALUES: 400,
    codes.SQL_ERROR: 400,
    codes.STATEMENT_TIMEOUT: 400,
    codes.RESULT_TOO_LARGE: 400,
    codes.NOT_A_DATABASE: 400,
    codes.BAD_DB_PATH: 400,
    codes.PATH_OUTSIDE_ROOTS: 400,
    UNAUTHORIZED: 401,
    codes.READ_ONLY: 403,
    codes.FORBIDDEN: 403,
    codes.DB_NOT_FOUND: 404,
    codes.NOT_FOUND: 404,
    METHOD_NOT_ALLOWED: 405,
    codes.CONSTRAINT_VIOLATION: 409,
    codes.DB_EXISTS: 409,
    codes.PRECONDITION_FAILED: 412,
    BODY_TOO_LARGE: 413,
    TOO_MANY_ATTEMPTS: 429,
    # nginx's "client closed request": only metrics and logs see it, the client is gone.
    codes.CLIENT_GONE: 499,
    codes.STORAGE_ERROR: 500,
    INTERNAL_ERROR: 500,
    codes.DATABASE_LOCKED: 503,
    UNAVAILABLE: 503,
    codes.QUEUE_FULL: 503,
}


class ApiError(SqlApiError):
    """An error raised by the HTTP layer itself (auth, body size, routing)."""


def error_response(
    code: str,
    message: str,
    *,
    req_idx: int | None = None,
    scope: str | None = None,
    body_unread: bool = False,
    retry_after: int | None = None,
) -> JsonResponse:
    body: dict[str, object] = {"error": message, "code": code}
    if req_idx is not None:
        body["reqIdx"] = req_idx
    if scope is not None:
        body["scope"] = scope
    status = STATUS_BY_CODE.get(code, 500)
    headers: dict[str, str] = {}
    if status in (401, 413, 429) or body_unread:
        # The request body was not (fully) read, so the connection cannot carry another request:
        # say so, or a keep-alive client sends its next request into a closing socket.
        headers["Connection"] = "close"
    if status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if retry_after is not None or status == 503:
        headers["Retry-After"] = str(retry_after or 1)
    return JsonResponse(body, status_code=status, headers=headers)


def forbidden_response(scope: str, message: str) -> JsonResponse:
    """403 before the route ran (its body unread): the token lacks `scope`."""
    return error_response(codes.FORBIDDEN, message, scope=scope, body_unread=True)


async def handle_sql_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SqlApiError)  # registered for this type only
    if isinstance(exc, ForbiddenError):
        request.app.state.hoodydb.metrics.auth_refused.labels("403", exc.scope).inc()
        return error_response(exc.code, exc.message, req_idx=exc.req_idx, scope=exc.scope)
    return error_response(exc.code, exc.message, req_idx=exc.req_idx)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)  # registered for this type only
    code = {404: codes.NOT_FOUND, 405: METHOD_NOT_ALLOWED}.get(exc.status_code, codes.BAD_REQUEST)
    response = error_response(code, str(exc.detail))
    response.status_code = exc.status_code
    return response


async def handle_unexpected(request: Request, exc: Exception) -> Response:
    # A bug, not bad input: say so in the shape clients parse, and keep the traceback in the log.
    return error_response(INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
