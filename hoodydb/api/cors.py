"""CORS for browser pages on other origins, off unless origins are given (`serve --cors-origin`).

The token travels in the `Authorization` header, never in cookies, so credentials stay off; the
headers the API reads and sends (`If-Match`, `ETag`, …) are allowed and exposed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.middleware import Middleware

ENV_VAR = "HOODYDB_CORS_ORIGINS"


def origins_from(given: Iterable[str], env: str | None) -> tuple[str, ...]:
    """Origins from `--cors-origin` options and the comma-separated environment value, in order."""
    origins = [o.strip().rstrip("/") for o in given if o.strip()]
    if env:
        origins += [o.strip().rstrip("/") for o in env.split(",") if o.strip()]
    return tuple(dict.fromkeys(origins))


def cors_middleware(origins: Sequence[str]) -> list[Middleware]:
    # Imported here: `serve` reads ENV_VAR at start-up, before Starlette is needed at all.
    from starlette.middleware import Middleware
    from starlette.middleware.cors import CORSMiddleware

    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(origins),
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "If-Match", "If-None-Match"],
            expose_headers=["ETag", "Retry-After", "X-Hoodydb-Expires-At"],
            max_age=600,
        )
    ]
