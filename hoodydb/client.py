"""A small synchronous client for the hoodydb HTTP API; the `db` and `kv` commands use it, and so can you.

    with HoodyClient("http://127.0.0.1:8080", token) as client:
        client.create_database("app.db")
        client.exec_transaction("app.db", [{"statement": "CREATE TABLE t (x)"}])

Every non-2xx answer raises `HoodyHttpError` with the server's machine-readable code.
"""

from __future__ import annotations

import json
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_URL = "http://127.0.0.1:8080"
API = "/api/v1/sqlite"


class HoodyHttpError(Exception):
    """The server answered with an error (`status`, `code`, `message`, `req_idx`), or could not be reached."""

    def __init__(
        self, message: str, *, status: int | None = None, code: str | None = None, req_idx: int | None = None
    ):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.req_idx = req_idx

    def __str__(self) -> str:
        where = f" at item {self.req_idx}" if self.req_idx is not None else ""
        what = (
            f" [{self.code}, HTTP {self.status}]"
            if self.code
            else (f" [HTTP {self.status}]" if self.status else "")
        )
        return f"{self.message}{where}{what}"


def key_path(key: str) -> str:
    """The URL path of a key: every reserved byte percent-encoded, dots too, so no client or proxy
    collapses "." or ".." segments before the server sees them."""
    return f"{API}/kv/{quote(key, safe='').replace('.', '%2E')}"


class HoodyClient:
    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str | None = None,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> HoodyClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise HoodyHttpError(f"cannot reach {self._http.base_url}: {exc}") from None
        if response.is_success or response.status_code == 304:
            return response
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and "error" in body:
            raise HoodyHttpError(
                str(body["error"]),
                status=response.status_code,
                code=body.get("code"),
                req_idx=body.get("reqIdx"),
            )
        raise HoodyHttpError(response.text.strip() or response.reason_phrase, status=response.status_code)

    # --- SQL -------------------------------------------------------------------------------------

    def exec_transaction(
        self, db: str, transaction: list[dict[str, Any]], *, result_format: str | None = None
    ) -> dict[str, Any]:
        """Run `transaction` (a list of ws4sqlite items) as one transaction; returns `{"results": [...]}`."""
        body: dict[str, Any] = {"transaction": transaction}
        if result_format is not None:
            body["resultFormat"] = result_format
        result: dict[str, Any] = self._request("POST", f"{API}/db", params={"db": db}, json=body).json()
        return result

    def create_database(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", f"{API}/databases", json={"path": path}).json()
        return result

    # --- KV --------------------------------------------------------------------------------------

    def kv_set(
        self,
        db: str,
        key: str,
        value: Any,
        *,
        ttl: float | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"db": db} | ({"ttl": ttl} if ttl is not None else {})
        headers = {"Content-Type": "application/json"}
        if if_match is not None:
            headers["If-Match"] = if_match
        if if_none_match is not None:
            headers["If-None-Match"] = if_none_match
        content = json.dumps(value).encode("utf-8")
        result: dict[str, Any] = self._request(
            "PUT", key_path(key), params=params, content=content, headers=headers
        ).json()
        return result

    def kv_get(self, db: str, key: str) -> tuple[Any, int]:
        """The value and its version."""
        response = self._request("GET", key_path(key), params={"db": db})
        return response.json(), int(response.headers["etag"].strip('"'))

    def kv_delete(self, db: str, key: str, *, if_match: str | None = None) -> dict[str, Any]:
        headers = {"If-Match": if_match} if if_match is not None else {}
        result: dict[str, Any] = self._request(
            "DELETE", key_path(key), params={"db": db}, headers=headers
        ).json()
        return result

    def kv_list(
        self, db: str, *, prefix: str = "", limit: int | None = None, cursor: str | None = None
    ) -> dict[str, Any]:
        """One page: `{"items": [{"key", "value", "version", "expiresAt"}], "nextCursor": str | None}`."""
        params: dict[str, Any] = {"db": db, "prefix": prefix}
        if limit is not None:
            params["limit"] = limit
        if cursor is not None:
            params["cursor"] = cursor
        result: dict[str, Any] = self._request("GET", f"{API}/kv", params=params).json()
        return result
