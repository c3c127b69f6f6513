"""Which scope a presented bearer token has, cheaply enough to ask on every request.

- Admin tokens (`--token`, `HOODYDB_TOKENS`, `--token-file`, the generated one) are compared in
  constant time, as before: no file is looked at for them.
- Scoped tokens live in `tokens.json` (`store.py`). Its identity (inode, size, mtime) is checked
  with one stat() per request; when it changed, the records are read again, so `hoodydb token
  create/revoke` takes effect on the next request without a restart.
- A scrypt check costs tens of milliseconds, so verified tokens are remembered by their SHA-256
  (a fast hash of a 256-bit secret is safe to use as a key), mapped to the record id. The record's
  state (revoked, expired) is looked up afresh on every request; the memory is dropped when the
  file changes. A cache miss runs scrypt on a worker thread, never on the event loop, and at most
  two at a time: a flood of wrong secrets for a known id queues behind them instead of taking
  every thread of the pool (and 16 MiB each).
- Wrong secrets for one token id are throttled: after `WRONG_SECRETS_PER_WINDOW` of them in a
  window of `WRONG_SECRET_WINDOW_S`, that id's unverified secrets are refused without scrypt
  (429, `Retry-After`) until the window ends. Whoever knows an id (it is in every token and in
  `hoodydb token list`) could otherwise keep both scrypt slots busy and make every other new
  token wait. A secret already verified is remembered, so the holder of the right one is not
  locked out by someone else's guesses.
- Last use is kept in memory and written to `tokens-used.json` when a token is first seen and then
  at most once a minute per token.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from hoodydb.access import store
from hoodydb.access.scope import ADMIN, Scope

log = logging.getLogger(__name__)

# Reasons a token is refused (401), as /metrics counts them.
MISSING = "missing"
UNKNOWN = "unknown"
REVOKED = "revoked"
EXPIRED = "expired"
THROTTLED = "throttled"
LAST_USE_RESOLUTION_S = 60.0
# Bounds the memory of verified tokens even if the file is rewritten with many tokens.
_MAX_REMEMBERED = 10_000
# scrypt checks running at once (each holds a thread and 16 MiB); the machine may have 2 cores.
_SCRYPT_AT_ONCE = 2
# Wrong secrets checked per token id and window; more are refused without a check until it ends.
WRONG_SECRETS_PER_WINDOW = 10
WRONG_SECRET_WINDOW_S = 60.0


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str
    retry_after: int | None = None  # seconds, when trying again later can succeed (THROTTLED)


class TokenVerifier:
    """Lives on the event loop; `check()` is its only entry point."""

    def __init__(
        self,
        admin_tokens: Iterable[str],
        state_base: Path | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = [t.encode("utf-8") for t in admin_tokens]
        self._clock = clock
        self._base = state_base
        self._identity: tuple[int, int, int] | None = None
        self._records: dict[str, store.TokenRecord] = {}
        self._verified: dict[bytes, str] = {}
        self._last_use: dict[str, float] = {}
        self._last_written: dict[str, float] = {}
        self._writing = False
        self._scrypt_slots = asyncio.Semaphore(_SCRYPT_AT_ONCE)
        self._wrong: dict[str, tuple[float, int]] = {}  # token id -> (window start, wrong secrets)

    def _is_admin(self, token: bytes) -> bool:
        # Every comparison runs, so timing tells nothing about which token (if any) matched.
        matches = [hmac.compare_digest(token, known) for known in self._admin]
        return any(matches)

    def _reload_if_changed(self) -> None:
        if self._base is None:
            return
        path = store.tokens_path(self._base)
        try:
            st = os.stat(path)
            identity = (st.st_ino, st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            identity = None
        if identity == self._identity:
            return
        try:
            records = store.load_records(path)
        except (OSError, ValueError) as exc:
            # Keep serving with no scoped token rather than with stale (possibly revoked) ones.
            log.error("scoped tokens not loaded: %s", exc)
            records = []
        self._records = {r.id: r for r in records}
        self._verified.clear()
        self._wrong = {k: v for k, v in self._wrong.items() if k in self._records}
        self._identity = identity

    async def check(self, raw: bytes | None) -> Scope | Refusal:
        if not raw:
            return Refusal(MISSING, "missing bearer token")
        if self._is_admin(raw):
            return ADMIN
        self._reload_if_changed()
        try:
            token = raw.decode("ascii")
        except UnicodeDecodeError:
            return Refusal(UNKNOWN, "invalid bearer token")
        parts = store.split_token(token)
        record = self._records.get(parts[0]) if parts else None
        if parts is None or record is None:
            return Refusal(UNKNOWN, "invalid bearer token")
        key = hashlib.sha256(raw).digest()
        if self._verified.get(key) != record.id:
            async with self._scrypt_slots:
                # (Asked once a slot is free: the requests queued behind a flood are throttled too.)
                throttled = self._throttled(record)
                if throttled is not None:
                    return throttled
                verified = await run_in_threadpool(store.verify_secret, parts[1], record.hash)
            if not verified:
                self._note_wrong(record.id)
                return Refusal(UNKNOWN, "invalid bearer token")
            if len(self._verified) >= _MAX_REMEMBERED:
                self._verified.clear()
            self._verified[key] = record.id
        # The file may have changed while scrypt ran: judge by the record as it is now.
        record = self._records.get(record.id)
        now = time.time()
        if record is None or record.revoked_at is not None:
            name = parts[0] if record is None else repr(record.name)
            return Refusal(REVOKED, f"the token {name} was revoked")
        if record.expires_at is not None and now >= record.expires_at:
            return Refusal(EXPIRED, f"the token {record.name!r} has expired")
        await self._note_use(record.id, now)
        return record.scope()

    def _throttled(self, record: store.TokenRecord) -> Refusal | None:
        start, wrong = self._wrong.get(record.id, (0.0, 0))
        left = start + WRONG_SECRET_WINDOW_S - self._clock()
        if wrong < WRONG_SECRETS_PER_WINDOW or left <= 0:
            return None
        seconds = max(1, int(left + 0.999))
        message = f"too many wrong secrets for the token {record.name!r}: try again in {seconds} s"
        return Refusal(THROTTLED, message, retry_after=seconds)

    def _note_wrong(self, token_id: str) -> None:
        now = self._clock()
        start, wrong = self._wrong.get(token_id, (now, 0))
        if now - start >= WRONG_SECRET_WINDOW_S:
            start, wrong = now, 0
        self._wrong[token_id] = (start, wrong + 1)

    async def _note_use(self, token_id: str, now: float) -> None:
        self._last_use[token_id] = now
        if now - self._last_written.get(token_id, 0.0) < LAST_USE_RESOLUTION_S or self._writing:
            return
        self._last_written[token_id] = now
        assert self._base is not None  # a scoped token was found, so there is a store
        self._writing = True
        try:
            await run_in_threadpool(store.merge_last_use, self._base, dict(self._last_use))
        except OSError as exc:
            log.warning("cannot record the tokens' last use: %s", exc)
        finally:
            self._writing = False
