"""`GET /api/v1/sqlite/events`: the mount's commit feed as server-sent events.

Each request opens its own watch on the mount's control socket (the one `hoodydb watch` reads),
with asyncio, so an idle subscriber holds a socket and a suspended coroutine here and a sleeping
thread in the daemon: no thread of the server's pool and no CPU between commits. What a client
has not taken stays in the daemon's bounded history; one that falls behind it gets a `missed`
event with the numbers it lost, never a growing buffer.

Each event's `id` is the client's position, `{"db": last seq, ...}` as compact JSON, so a
reconnecting client (EventSource's `Last-Event-ID`, or `since`) resumes exactly where it was, in
every database its glob matches. `since` also takes a plain number: after that sequence number
in every matching database (meant for one database). A comment line every `heartbeat` seconds
keeps proxies from closing a quiet stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from hoodydb.api.access import token_scope
from hoodydb.api.errors import UNAVAILABLE, error_response
from hoodydb.api.state import app_state
from hoodydb.control_client import watch_request
from hoodydb.sql import errors as codes

HEARTBEAT_S = 15.0
CONNECT_TIMEOUT_S = 5.0
RETRY_MS = 1000  # how long an EventSource waits before it reconnects
MAX_LINE = 16 * 1024 * 1024  # one event: a commit's command line is the longest field


def parse_since(raw: str | None) -> int | dict[str, int] | None:
    """A sequence number, or an event id (a JSON object of database -> sequence number)."""
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if raw.isdigit():
        return int(raw)
    try:
        value = json.loads(raw)
    except ValueError:
        value = None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 0
        for k, v in value.items()
    ):
        raise ValueError("since (or Last-Event-ID): a sequence number, or an event id from this route")
    return value


def _event(kind: str, data: dict[str, Any], cursor: dict[str, int] | None = None) -> bytes:
    lines = [f"event: {kind}"]
    if cursor is not None:
        lines.append(f"id: {json.dumps(cursor, separators=(',', ':'))}")
    lines.append(f"data: {json.dumps(data, separators=(',', ':'))}")
    return ("\n".join(lines) + "\n\n").encode()


async def commit_events(request: Request) -> Response:
    socket = app_state(request).config.control_socket
    if socket is None:
        # (Not 503: nothing is down, this server has no feed to serve.)
        return error_response(codes.NOT_FOUND, "no mount (--no-mount): there is no commit feed")
    glob = request.query_params.get("db") or "*"
    try:
        since = parse_since(request.headers.get("last-event-id") or request.query_params.get("since"))
        heartbeat = float(request.query_params.get("heartbeat") or HEARTBEAT_S)
        if not 0.05 <= heartbeat <= 300:
            raise ValueError("heartbeat: seconds between 0.05 and 300")
    except ValueError as exc:
        return error_response(codes.BAD_REQUEST, str(exc))
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(socket), limit=MAX_LINE), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        return error_response(UNAVAILABLE, f"the mount's control socket does not answer ({exc})")
    try:
        writer.write(watch_request(glob.removeprefix("/"), since, heartbeat))
        start = json.loads(await asyncio.wait_for(reader.readline(), CONNECT_TIMEOUT_S) or b"{}")
    except (OSError, TimeoutError, ValueError) as exc:
        writer.close()
        return error_response(UNAVAILABLE, f"the mount's control socket does not answer ({exc})")
    if start.get("type") != "start":
        writer.close()
        return error_response(codes.NOT_FOUND, start.get("message") or "the mount serves no commit feed")
    # A `--db` token follows its own databases only.
    allowed = token_scope(request).allows_database
    positions = {db: seq for db, seq in start["positions"].items() if allowed(db)}
    # Where the client stands: what it resumes from, else where each database is now.
    cursor: dict[str, int] = dict(positions)
    if isinstance(since, dict):
        cursor.update((db, seq) for db, seq in since.items() if allowed(db))
    elif isinstance(since, int):
        cursor = dict.fromkeys(cursor, since)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield f"retry: {RETRY_MS}\n\n".encode()
            yield _event("ready", {"positions": positions}, cursor)
            while line := await reader.readline():
                event = json.loads(line)
                kind = event.get("type")
                if "db" in event and not allowed(event["db"]):
                    continue
                if kind == "heartbeat":
                    yield b": heartbeat\n\n"
                elif kind == "commit":
                    cursor[event["db"]] = event["seq"]
                    yield _event("commit", event, cursor)
                elif kind == "missed":
                    cursor[event["db"]] = max(cursor.get(event["db"], 0), event["last"])
                    yield _event("missed", event, cursor)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
