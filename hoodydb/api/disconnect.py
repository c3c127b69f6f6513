"""Know when a request's client has gone away, so its database work can be dropped or interrupted."""

from __future__ import annotations

from starlette.requests import Request


async def disconnected(request: Request) -> None:
    """Complete when the client disconnects. Only call it once the request body has been read."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
