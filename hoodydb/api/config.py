"""What the API needs to know to run: roots, tokens and limits. Built by `hoodydb serve`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hoodydb.sql.connection import DEFAULT_BUSY_TIMEOUT_S, DEFAULT_STATEMENT_TIMEOUT_S
from hoodydb.sql.limits import SqlLimits
from hoodydb.sql.paths import Roots

DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class ApiConfig:
    roots: Roots
    tokens: frozenset[str]
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S
    statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_S
    max_open_databases: int = 64
    limits: SqlLimits = field(default_factory=SqlLimits)
    extra: dict[str, str] = field(default_factory=dict)
    # Browser origins allowed to call the API (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    # The mount's control socket, read by the /locks route; None without a mount.
    control_socket: Path | None = None
    # Where `.hoodydb/tokens.json` (scoped tokens, `hoodydb token`) lives; None: admin tokens only.
    state_base: Path | None = None

    def __post_init__(self) -> None:
        if not self.tokens or any(not t for t in self.tokens):
            # An API without a token would be open to anyone who can reach the port.
            raise ValueError("the API needs at least one non-empty token")
