"""What one token may do: write or only read, which databases, SQL or only the key-value routes.

A scope is checked where the thing it limits is decided, never by reading SQL:
- `read_only` by SQLite itself (the connection's authorizer and `query_only`, see
  `hoodydb/sql/connection.py`) and, for KV writes and database creation, by the route;
- `databases` on the resolved path of every database a request names (after symlinks and `..`),
  and on every name the database list and the lock view show;
- `kv_only` on the route, before the request reaches it.

Database globs are relative to the served root: `*` and `?` stay inside one path component, `**`
crosses them (`reports/**` is everything under reports/). They match the resolved path, so a
symlink inside the root is judged by the file it leads to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

# Names of what a token may lack, reported in a 403's `scope` and counted in /metrics.
WRITE = "write"
DATABASE = "database"
SQL = "sql"


def check_glob(glob: str) -> str:
    """`glob` if it is usable as a database scope, else ValueError saying why."""
    if not glob or "\x00" in glob:
        raise ValueError("a database glob must not be empty")
    if glob.startswith("/"):
        raise ValueError(f"{glob!r}: database globs are relative to the served root")
    if ".." in glob.split("/"):
        raise ValueError(f"{glob!r}: '..' cannot appear in a database glob")
    return glob


def glob_pattern(glob: str) -> re.Pattern[str]:
    """The regular expression for one database glob (`**`, `*`, `?`; everything else literal)."""
    parts: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**", i):
            parts.append(".*")
            i += 2
        elif glob[i] == "*":
            parts.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            parts.append("[^/]")
            i += 1
        else:
            parts.append(re.escape(glob[i]))
            i += 1
    return re.compile("".join(parts), re.DOTALL)


@dataclass(frozen=True)
class Scope:
    """A token's permissions. `databases` empty means every database under the roots."""

    name: str
    read_only: bool = False
    databases: tuple[str, ...] = ()
    kv_only: bool = False
    expires_at: float | None = None
    admin: bool = False

    @cached_property
    def _patterns(self) -> tuple[re.Pattern[str], ...]:
        return tuple(glob_pattern(g) for g in self.databases)

    def allows_database(self, relative_name: str) -> bool:
        """Whether the database at this root-relative (resolved) path is in scope."""
        if not self.databases:
            return True
        return any(p.fullmatch(relative_name) for p in self._patterns)

    def describe(self) -> dict[str, object]:
        """What the token may do, as the API and the console show it."""
        return {
            "name": self.name,
            "admin": self.admin,
            "readOnly": self.read_only,
            "databases": list(self.databases) or None,
            "kvOnly": self.kv_only,
            "expiresAt": self.expires_at,
        }


ADMIN = Scope(name="admin", admin=True)


def scope_summary(read_only: bool, databases: Sequence[str], kv_only: bool) -> str:
    """A one-line description for `hoodydb token list`."""
    words = ["read-only" if read_only else "read-write"]
    words.append("kv-only" if kv_only else "sql+kv")
    words.append("db: " + ", ".join(databases) if databases else "all databases")
    return "; ".join(words)
