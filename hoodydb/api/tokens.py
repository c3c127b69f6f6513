"""Where API tokens come from: the command line, `HOODYDB_TOKENS`, or one generated and kept on disk.

A generated token is stored in `STATE_DIR/token` (mode 0600) and reused on restart, so clients
configured once keep working.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from hoodydb.sql.paths import STATE_DIR_NAME

TOKEN_FILE = "token"
ENV_VAR = "HOODYDB_TOKENS"


def tokens_from(given: Iterable[str], env: str | None) -> list[str]:
    """Tokens from `--token` options and the comma-separated environment value, in that order."""
    tokens = [t.strip() for t in given if t.strip()]
    if env:
        tokens += [t.strip() for t in env.split(",") if t.strip()]
    return list(dict.fromkeys(tokens))


def stored_token(base_dir: Path) -> str:
    """The token kept under `base_dir/.hoodydb/`, created on first use."""
    state_dir = base_dir / STATE_DIR_NAME
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = state_dir / TOKEN_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        token = path.read_text(encoding="utf-8").strip()
        if token:
            return token
        raise RuntimeError(f"{path} is empty; delete it to have a new token generated") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token
