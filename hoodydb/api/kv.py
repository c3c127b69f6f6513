"""`/api/v1/sqlite/kv`: a JSON key-value store inside a database, with ETags and optional TTL.

- `PUT /kv/{key}?db=&ttl=` stores the body (any JSON); 201 when created, 200 when replaced.
- `GET /kv/{key}?db=` returns the stored JSON itself; `ETag` carries the version.
- `DELETE /kv/{key}?db=`; `GET /kv?db=&prefix=&limit=&cursor=` lists in key order.
`If-Match` (a version or `*`) and `If-None-Match` (`*` or versions) guard writes: 412 on mismatch.
"""

from __future__ import annotations

import json
import math
import time
from functools import partial
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import Response

from hoodydb.api.access import require_write, token_scope
from hoodydb.api.body import dump_json, read_json
from hoodydb.api.disconnect import disconnected
from hoodydb.api.responses import JsonResponse
from hoodydb.api.state import app_state, database_path
from hoodydb.sql import errors as codes
from hoodydb.sql import kv
from hoodydb.sql.errors import SqlApiError

MAX_TTL_S = 10 * 365 * 86400
DEFAULT_LIST_LIMIT = 100


def etag(version: int) -> str:
    return f'"{version}"'


def _parse_etags(header: str) -> tuple[bool, frozenset[int]]:
    """(`*` present, the numeric versions listed). Tags that are not ours can never match."""
    star = False
    versions: set[int] = set()
    for raw in header.split(","):
        tag = raw.strip().removeprefix("W/").strip('"')
        if tag == "*":
            star = True
        elif tag.isascii() and tag.isdigit() and len(tag) < 20:
            versions.add(int(tag))
    return star, frozenset(versions)


def precondition(request: Request) -> kv.Precondition:
    match_any, match_versions, none_any, none_versions = False, None, False, None
    if (if_match := request.headers.get("if-match")) is not None:
        match_any, versions = _parse_etags(if_match)
        match_versions = None if match_any else versions
    if (if_none_match := request.headers.get("if-none-match")) is not None:
        none_any, none_versions = _parse_etags(if_none_match)
    return kv.Precondition(
        match_any=match_any,
        match_versions=match_versions,
        none_match_any=none_any,
        none_match_versions=none_versions,
    )


def _key(request: Request) -> str:
    key = str(request.path_params["key"])
    raw_path: bytes | None = request.scope.get("raw_path")
    if raw_path is not None:
        # The decoded path replaces invalid UTF-8 with U+FFFD, so `z%FFz` and `z%FEz` would be
        # one key: refuse such keys instead.
        try:
            unquote_to_bytes(raw_path.partition(b"?")[0]).decode("utf-8")
        except UnicodeDecodeError:
            raise SqlApiError(codes.BAD_REQUEST, "the key is not valid UTF-8 once percent-decoded") from None
    kv.check_key(key)
    return key


def _ttl(request: Request) -> float | None:
    raw = request.query_params.get("ttl")
    if raw is None or raw == "":
        return None
    try:
        ttl = float(raw)
    except ValueError:
        raise SqlApiError(codes.BAD_REQUEST, "ttl must be a number of seconds") from None
    if not math.isfinite(ttl) or not 0 < ttl <= MAX_TTL_S:
        raise SqlApiError(codes.BAD_REQUEST, f"ttl must be more than 0 and at most {MAX_TTL_S} seconds")
    return ttl


def _entry_headers(entry: kv.Entry) -> dict[str, str]:
    headers = {"ETag": etag(entry.version)}
    if entry.expires_at is not None:
        headers["X-Hoodydb-Expires-At"] = f"{entry.expires_at:.3f}"
    return headers


def _stored_value(entry: kv.Entry) -> Any:
    try:
        return json.loads(entry.value_json)
    except ValueError:
        return entry.value_json  # written by someone else, not as JSON: hand back the text


async def put_key(request: Request) -> Response:
    state = app_state(request)
    # The body is read before anything is checked: an unread body makes the server drop the
    # keep-alive connection, and the client's next request on it would fail.
    value = await read_json(request, state.config.max_body_bytes)
    key, ttl, condition = _key(request), _ttl(request), precondition(request)
    value_json = dump_json(value)
    require_write(request, "set keys")
    path = await database_path(request)
    job = partial(kv.put, key=key, value_json=value_json, now=time.time(), ttl=ttl, precondition=condition)
    entry, created = await state.pool.run(
        path, job, gone=partial(disconnected, request), writer=token_scope(request).name
    )
    body = {"key": key, "version": entry.version, "expiresAt": entry.expires_at}
    return JsonResponse(body, status_code=201 if created else 200, headers=_entry_headers(entry))


async def get_key(request: Request) -> Response:
    state = app_state(request)
    key = _key(request)
    path = await database_path(request)
    entry = await state.pool.run(
        path,
        partial(kv.get, key=key, now=time.time()),
        gone=partial(disconnected, request),
        read_only=token_scope(request).read_only,
        writer=token_scope(request).name,
    )
    if entry is None:
        raise SqlApiError(codes.NOT_FOUND, f"no key {key!r}")
    headers = _entry_headers(entry)
    none_any, none_versions = _parse_etags(request.headers.get("if-none-match", ""))
    if none_any or entry.version in none_versions:
        return Response(status_code=304, headers=headers)
    # The stored text is already compact JSON: send it as it is.
    return Response(entry.value_json.encode("utf-8"), media_type="application/json", headers=headers)


async def delete_key(request: Request) -> Response:
    state = app_state(request)
    key, condition = _key(request), precondition(request)
    require_write(request, "delete keys")
    path = await database_path(request)
    entry = await state.pool.run(
        path,
        partial(kv.delete, key=key, now=time.time(), precondition=condition),
        gone=partial(disconnected, request),
        writer=token_scope(request).name,
    )
    return JsonResponse({"key": key, "deleted": True, "version": entry.version})


def _limit(request: Request) -> int:
    raw = request.query_params.get("limit")
    if raw is None or raw == "":
        return DEFAULT_LIST_LIMIT
    # isascii: "²" is a digit to str.isdigit but not to int().
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= kv.MAX_LIST_LIMIT:
        raise SqlApiError(codes.BAD_REQUEST, f"limit must be an integer from 1 to {kv.MAX_LIST_LIMIT}")
    return int(raw)


async def list_keys(request: Request) -> Response:
    state = app_state(request)
    prefix = request.query_params.get("prefix", "")
    limit = _limit(request)
    cursor = request.query_params.get("cursor") or None
    after = kv.decode_cursor(cursor) if cursor is not None else None
    path = await database_path(request)
    job = partial(
        kv.list_entries,
        prefix=prefix,
        limit=limit,
        after=after,
        now=time.time(),
        max_bytes=state.config.limits.max_result_bytes,
    )
    scope = token_scope(request)
    entries, next_cursor = await state.pool.run(
        path, job, gone=partial(disconnected, request), read_only=scope.read_only, writer=scope.name
    )
    items = [
        {"key": e.key, "value": _stored_value(e), "version": e.version, "expiresAt": e.expires_at}
        for e in entries
    ]
    return JsonResponse({"items": items, "nextCursor": next_cursor})
