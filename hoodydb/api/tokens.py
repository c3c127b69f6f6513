"""Where admin tokens come from: a token file, `--token` (or `HOODYDB_TOKENS`), or one generated and kept.

These may do everything; scoped tokens (`hoodydb token`, `hoodydb/access/`) are added beside them.

A generated token is stored in `STATE_DIR/token` (mode 0600) and reused on restart, so clients
configured once keep working. A token file or the environment keeps tokens out of the process's
command line, which every local user can read in `/proc/PID/cmdline`. The token itself is printed
only the one time it is generated; after that, where it is stored.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from hoodydb.sql.paths import STATE_DIR_NAME

TOKEN_FILE = "token"


def tokens_from(given: Iterable[str]) -> list[str]:
    """Tokens from `--token` options, without blanks (a list in the environment may have them)."""
    return list(dict.fromkeys(t.strip() for t in given if t.strip()))


def tokens_in_file(path: Path) -> list[str]:
    """Tokens from a file: one per line; blank lines and lines starting with `#` are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the token file {path}: {exc}") from None
    tokens = [line.strip() for line in text.splitlines()]
    tokens = [t for t in tokens if t and not t.startswith("#")]
    if not tokens:
        raise ValueError(f"the token file {path} holds no token")
    return tokens


def accepted_tokens(given: Iterable[str], token_file: Path | None, base_dir: Path) -> tuple[list[str], str]:
    """Every accepted token, and the line `serve` prints about them (a token only when new)."""
    tokens = tokens_from(given)
    if token_file is not None:
        tokens = list(dict.fromkeys([*tokens, *tokens_in_file(token_file)]))
    if tokens:
        return tokens, f"tokens: {len(tokens)} given"
    path = base_dir / STATE_DIR_NAME / TOKEN_FILE
    existed = path.exists()
    token = stored_token(base_dir)
    if existed:
        return [token], f"token: stored in {path}"
    return [token], f"token: {token}  (generated; stored in {path})"


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
