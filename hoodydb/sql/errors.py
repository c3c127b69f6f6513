"""The one error type of the SQL core: a machine-readable code, a message, and the failing item's index."""

from __future__ import annotations

# Codes are part of the public API (docs/http-api.md lists them); add, never rename.
BAD_REQUEST = "bad_request"
BAD_JSON = "bad_json"
UNKNOWN_ITEM_KIND = "unknown_item_kind"
BAD_VALUES = "bad_values"
SQL_ERROR = "sql_error"
CONSTRAINT_VIOLATION = "constraint_violation"
STATEMENT_TIMEOUT = "statement_timeout"
DATABASE_LOCKED = "database_locked"
READ_ONLY = "read_only"
NOT_A_DATABASE = "not_a_database"
STORAGE_ERROR = "storage_error"
DB_NOT_FOUND = "db_not_found"
DB_EXISTS = "db_exists"
PATH_OUTSIDE_ROOTS = "path_outside_roots"
BAD_DB_PATH = "bad_db_path"
NOT_FOUND = "not_found"
PRECONDITION_FAILED = "precondition_failed"
RESULT_TOO_LARGE = "result_too_large"
QUEUE_FULL = "queue_full"
CLIENT_GONE = "client_gone"
UNAVAILABLE = "unavailable"
FORBIDDEN = "forbidden"


class SqlApiError(Exception):
    """A failure the caller can act on. `req_idx` is set when one transaction item caused it."""

    def __init__(
        self, code: str, message: str, *, req_idx: int | None = None, transient: bool = False
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.req_idx = req_idx
        # True when running the same transaction again may well succeed (SQLite's SQLITE_PROTOCOL).
        self.transient = transient

    def at_item(self, req_idx: int) -> SqlApiError:
        return SqlApiError(self.code, self.message, req_idx=req_idx, transient=self.transient)


class ForbiddenError(SqlApiError):
    """A known token asked for something outside its scope; `scope` names what it lacks."""

    def __init__(self, scope: str, message: str, *, req_idx: int | None = None) -> None:
        super().__init__(FORBIDDEN, message, req_idx=req_idx)
        self.scope = scope

    def at_item(self, req_idx: int) -> SqlApiError:
        return ForbiddenError(self.scope, self.message, req_idx=req_idx)
