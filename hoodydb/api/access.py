"""The routes' side of scoped tokens: the request's scope, and the checks a route makes with it.

The middleware (`auth.py`) has already refused unknown tokens and KV-only tokens outside the KV
routes; what is left depends on what the route touches: a database (checked on its resolved path,
so `..`, absolute spellings and symlinks inside the root are judged by the file they reach), or a
write (database creation, KV set/delete; SQL writes are refused by SQLite itself).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from hoodydb.access.scope import DATABASE, WRITE, Scope
from hoodydb.api.auth import SCOPE_KEY
from hoodydb.api.responses import JsonResponse
from hoodydb.sql.errors import ForbiddenError
from hoodydb.sql.paths import Roots, resolve_path


def token_scope(request: Request) -> Scope:
    scope = request.scope.get(SCOPE_KEY)
    if not isinstance(scope, Scope):
        # Only reachable if a protected route were mounted outside the middleware: fail closed.
        raise RuntimeError("no token scope on a protected route")
    return scope


def require_write(request: Request, what: str) -> None:
    scope = token_scope(request)
    if scope.read_only:
        raise ForbiddenError(WRITE, f"the token {scope.name!r} is read-only: it may not {what}")


def check_database(scope: Scope, real: Path, roots: Roots) -> None:
    """Refuse a resolved database path outside the token's `--db` globs."""
    if not scope.allows_database(roots.relative_name(real)):
        raise ForbiddenError(
            DATABASE,
            f"the token {scope.name!r} may only use the databases {', '.join(scope.databases)}",
        )


def resolve_in_scope(scope: Scope, db: str, roots: Roots, resolve: Callable[[str, Roots], Path]) -> Path:
    """`resolve(db, roots)`, refused when the token may not use the database (blocking: stat()).

    The scope is checked before `resolve` looks at the file, so a request outside it learns nothing
    about what exists there, and again on the final path in case a symlink changed meanwhile.
    """
    if scope.databases:
        check_database(scope, resolve_path(db, roots), roots)
    real = resolve(db, roots)
    check_database(scope, real, roots)
    return real


async def describe_token(request: Request) -> Response:
    """`GET /api/v1/sqlite/token`: what the request's own token may do (the console reads it)."""
    return JsonResponse(token_scope(request).describe())
