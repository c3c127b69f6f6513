"""`GET /healthz`: 200 once every root (the mount, under `serve`) answers, 503 otherwise."""

from __future__ import annotations

import asyncio
import os

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from hoodydb.api.errors import UNAVAILABLE, error_response
from hoodydb.api.responses import JsonResponse
from hoodydb.api.state import app_state

# A hung mount must not hang the health check: answer 503 after this long instead.
CHECK_TIMEOUT_S = 5.0


def _roots_answer(roots: list[str]) -> bool:
    return all(os.path.isdir(root) for root in roots)


async def healthz(request: Request) -> Response:
    roots = [str(r) for r in app_state(request).config.roots.given]
    try:
        ok = await asyncio.wait_for(run_in_threadpool(_roots_answer, roots), CHECK_TIMEOUT_S)
    except TimeoutError:
        ok = False
    if not ok:
        return error_response(UNAVAILABLE, "a database root does not answer")
    return JsonResponse({"status": "ok"})
