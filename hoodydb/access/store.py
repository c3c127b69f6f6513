"""Scoped tokens on disk: `DATA/.hoodydb/tokens.json`, hashes only, written by `hoodydb token`.

A token reads `hdb_<id>_<secret>`. The id is public (it is how the server finds the one record to
check, so a request costs one hash, not one per token); the secret is 32 random bytes and is stored
only as a scrypt hash (hashlib's, OpenSSL underneath: no home-made scheme). Revoked tokens keep
their record, marked, so the server can answer "revoked" instead of "unknown" and `token list`
shows when.

Writers (`create`, `revoke`) hold an exclusive lock on `tokens.lock` and replace the file with a
rename, so a reader (the server, which reloads when the file's identity changes) never sees half a
file and two concurrent `hoodydb token` commands never lose each other's change.

Last use is written by the server into its own file, `tokens-used.json`, so the server never
rewrites the file the CLI owns.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hoodydb.access.scope import Scope, check_glob
from hoodydb.sql.paths import STATE_DIR_NAME

TOKENS_FILE = "tokens.json"
LAST_USE_FILE = "tokens-used.json"
_LOCK_FILE = "tokens.lock"
PREFIX = "hdb"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ID = re.compile(r"[0-9a-f]{16}")
# scrypt's interactive-login cost (RFC 7914): ~16 MiB and tens of milliseconds per check.
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1
_SCRYPT_MAXMEM = 64 * 1024 * 1024


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    hash: str
    read_only: bool
    databases: tuple[str, ...]
    kv_only: bool
    created_at: float
    expires_at: float | None = None
    revoked_at: float | None = None

    def scope(self) -> Scope:
        return Scope(
            name=self.name,
            read_only=self.read_only,
            databases=self.databases,
            kv_only=self.kv_only,
            expires_at=self.expires_at,
        )

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> TokenRecord:
        expires, revoked = raw.get("expires_at"), raw.get("revoked_at")
        return cls(
            id=str(raw["id"]),
            name=str(raw["name"]),
            hash=str(raw["hash"]),
            read_only=bool(raw["read_only"]),
            databases=tuple(str(g) for g in raw.get("databases") or ()),  # type: ignore[attr-defined]
            kv_only=bool(raw["kv_only"]),
            created_at=float(raw["created_at"]),  # type: ignore[arg-type]
            expires_at=None if expires is None else float(expires),  # type: ignore[arg-type]
            revoked_at=None if revoked is None else float(revoked),  # type: ignore[arg-type]
        )


def state_dir(base: Path) -> Path:
    return base / STATE_DIR_NAME


def tokens_path(base: Path) -> Path:
    return state_dir(base) / TOKENS_FILE


# --- hashing ----------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def hash_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(
        secret.encode("utf-8"), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, maxmem=_SCRYPT_MAXMEM
    )
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Whether `secret` hashes to `stored` (constant-time comparison of the digests)."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            secret.encode("utf-8"),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            maxmem=_SCRYPT_MAXMEM,
            dklen=len(expected),
        )
    except (ValueError, UnicodeEncodeError):
        return False
    return hmac.compare_digest(actual, expected)


def split_token(token: str) -> tuple[str, str] | None:
    """(id, secret) of a token in our format, or None."""
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != PREFIX or not _ID.fullmatch(token_id) or not secret:
        return None
    return token_id, secret


# --- the file -------------------------------------------------------------------------------------


def load_records(path: Path) -> list[TokenRecord]:
    """Every record in the tokens file; none when there is no file. ValueError if it is damaged."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    try:
        raw = json.loads(text)
        return [TokenRecord.from_json(r) for r in raw["tokens"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{path} is damaged: {exc}") from None


def _write_json(path: Path, value: object) -> None:
    """Replace `path` atomically, readable by its owner only."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked(base: Path) -> Iterator[list[TokenRecord]]:
    """The records under the writers' lock; what the caller leaves in the list is written back."""
    directory = state_dir(base)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(directory / _LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        records = load_records(tokens_path(base))
        yield records
        _write_json(tokens_path(base), {"tokens": [asdict(r) for r in records]})
    finally:
        os.close(fd)


def create_token(
    base: Path,
    *,
    name: str,
    read_only: bool,
    databases: Sequence[str],
    kv_only: bool,
    expires_at: float | None,
    now: float,
) -> str:
    """Store a new token's hash and return the token itself (the only time it exists in clear)."""
    if not _NAME.fullmatch(name):
        raise ValueError(f"{name!r}: a token name is 1-64 letters, digits, '.', '_' or '-'")
    globs = tuple(check_glob(g) for g in databases)
    token_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
    record = TokenRecord(
        id=token_id,
        name=name,
        hash=hash_secret(secret),
        read_only=read_only,
        databases=globs,
        kv_only=kv_only,
        created_at=now,
        expires_at=expires_at,
    )
    with _locked(base) as records:
        if any(r.name == name and r.revoked_at is None for r in records):
            raise ValueError(f"a token named {name!r} already exists (revoke it first)")
        records.append(record)
    return f"{PREFIX}_{token_id}_{secret}"


def revoke_token(base: Path, name: str, *, now: float) -> bool:
    """Mark the live token called `name` revoked; False if there is none."""
    with _locked(base) as records:
        for i, record in enumerate(records):
            if record.name == name and record.revoked_at is None:
                records[i] = TokenRecord(**{**asdict(record), "revoked_at": now})
                return True
    return False


def read_last_use(base: Path) -> dict[str, float]:
    """Token id -> when the server last accepted it (as the server last wrote it)."""
    try:
        raw = json.loads((state_dir(base) / LAST_USE_FILE).read_text(encoding="utf-8"))
        return {str(k): float(v) for k, v in raw.items()}
    except (OSError, ValueError, AttributeError, TypeError):
        return {}


def merge_last_use(base: Path, updates: dict[str, float]) -> None:
    """Write the server's newer last-use times over the file's (which a previous run may have)."""
    _write_json(state_dir(base) / LAST_USE_FILE, {**read_last_use(base), **updates})
