"""CORS for browser pages on other origins, off unless origins are given (`serve --cors-origin`).

The token travels in the `Authorization` header, never in cookies, so credentials stay off; the
headers the API reads and sends (`If-Match`, `ETag`, …) are allowed and exposed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.middleware import Middleware


def origins_from(given: Iterable[str]) -> tuple[str, ...]:
    """Origins from `--cors-origin` options (or `HOODYDB_CORS_ORIGINS`), without blanks or a final /."""
    return tuple(dict.fromkeys(o.strip().rstrip("/") for o in given if o.strip()))


def cors_middleware(origins: Sequence[str]) -> list[Middleware]:
    # Imported here: `serve` reads its options at start-up, before Starlette is needed at all.
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
