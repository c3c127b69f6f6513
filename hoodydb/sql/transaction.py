"""The transaction executor: ws4sqlite's request shape, run as one SQLite transaction.

Request: `{"transaction": [ITEM, ...], "resultFormat": "map" | "list"}` where ITEM is
`{"query": SQL}` or `{"statement": SQL}`, with optional `values` (object: named, array: positional),
`valuesBatch` (statements only) and `noFail`.

Rules:
- The whole array is one transaction: `BEGIN IMMEDIATE` if any item is a statement (take the write
  lock up front, so the transaction can never fail half-way on a lock upgrade), plain `BEGIN` when
  it only queries.
- An item that fails without `noFail` rolls everything back; the error carries its index.
- A `noFail` item runs inside a savepoint, so a failure undoes that item alone (not a half-applied
  batch) and the rest goes on; its result is `{"success": false, "error": ...}`.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import apsw

from hoodydb.sql import errors
from hoodydb.sql.connection import GuardedConnection, forbidden_write
from hoodydb.sql.errors import SqlApiError

Scalar = None | bool | int | float | str
Values = Mapping[str, Scalar] | Sequence[Scalar]
ResultFormat = Literal["map", "list"]
JsonObject = dict[str, Any]

_ITEM_KEYS = frozenset({"query", "statement", "values", "valuesBatch", "noFail"})
_REQUEST_KEYS = frozenset({"transaction", "resultFormat"})
_INT64 = (-(2**63), 2**63 - 1)


@dataclass(frozen=True)
class Item:
    kind: Literal["query", "statement"]
    sql: str
    values: Values | None = None
    values_batch: tuple[Values, ...] | None = None
    no_fail: bool = False


@dataclass(frozen=True)
class TransactionRequest:
    items: tuple[Item, ...]
    result_format: ResultFormat = "map"

    @property
    def writes(self) -> bool:
        return any(item.kind == "statement" for item in self.items)


# --- parsing -------------------------------------------------------------------------------------


def _bad(message: str, idx: int | None = None, code: str = errors.BAD_REQUEST) -> SqlApiError:
    return SqlApiError(code, message, req_idx=idx)


def _parse_scalar(value: object, idx: int) -> Scalar:
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, int):
        if not _INT64[0] <= value <= _INT64[1]:
            raise _bad(f"integer {value} does not fit in 64 bits", idx, errors.BAD_VALUES)
        return value
    raise _bad("values must be null, booleans, numbers or strings", idx, errors.BAD_VALUES)


def _parse_values(raw: object, idx: int) -> Values:
    if isinstance(raw, dict):
        return {str(k): _parse_scalar(v, idx) for k, v in raw.items()}
    if isinstance(raw, list):
        return [_parse_scalar(v, idx) for v in raw]
    raise _bad("'values' must be an object (named) or an array (positional)", idx, errors.BAD_VALUES)


def _parse_item(raw: object, idx: int) -> Item:
    if not isinstance(raw, dict):
        raise _bad("each transaction item must be an object", idx)
    kinds = [k for k in ("query", "statement") if k in raw]
    if len(kinds) != 1:
        found = ", ".join(sorted(map(str, raw))) or "nothing"
        raise _bad(
            f"an item needs exactly one of 'query' or 'statement' (found: {found})",
            idx,
            errors.UNKNOWN_ITEM_KIND,
        )
    extra = set(raw) - _ITEM_KEYS
    if extra:
        raise _bad(f"unknown item field(s): {', '.join(sorted(extra))}", idx)
    kind: Literal["query", "statement"] = "query" if kinds[0] == "query" else "statement"
    sql = raw[kind]
    if not isinstance(sql, str) or not sql.strip():
        raise _bad(f"'{kind}' must be a non-empty SQL string", idx)
    no_fail = raw.get("noFail", False)
    if not isinstance(no_fail, bool):
        raise _bad("'noFail' must be a boolean", idx)
    values = None if raw.get("values") is None else _parse_values(raw["values"], idx)
    batch: tuple[Values, ...] | None = None
    if raw.get("valuesBatch") is not None:
        if kind != "statement":
            raise _bad("'valuesBatch' is only allowed on statements", idx)
        if values is not None:
            raise _bad("use either 'values' or 'valuesBatch', not both", idx)
        if not isinstance(raw["valuesBatch"], list):
            raise _bad("'valuesBatch' must be an array", idx, errors.BAD_VALUES)
        batch = tuple(_parse_values(v, idx) for v in raw["valuesBatch"])
    return Item(kind=kind, sql=sql, values=values, values_batch=batch, no_fail=no_fail)


def parse_transaction(body: object) -> TransactionRequest:
    """Validate a decoded JSON request body; raise `SqlApiError` (400-class codes) on any flaw."""
    if not isinstance(body, dict):
        raise _bad("the request body must be a JSON object")
    extra = set(body) - _REQUEST_KEYS
    if extra:
        raise _bad(f"unknown request field(s): {', '.join(sorted(map(str, extra)))}")
    raw_items = body.get("transaction")
    if not isinstance(raw_items, list) or not raw_items:
        raise _bad("'transaction' must be a non-empty array of items")
    fmt = body.get("resultFormat", "map")
    if fmt is None:
        fmt = "map"
    if fmt not in ("map", "list"):
        raise _bad("'resultFormat' must be 'map' or 'list'")
    items = tuple(_parse_item(raw, i) for i, raw in enumerate(raw_items))
    return TransactionRequest(items=items, result_format="list" if fmt == "list" else "map")


# --- results -------------------------------------------------------------------------------------


def json_cell(value: object) -> object:
    """A SQLite value as JSON: BLOBs become base64 text, non-finite floats become null."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def translate(exc: BaseException) -> SqlApiError | None:
    """Map an exception from apsw (or from binding values) to an API error; None if it is a bug."""
    if isinstance(exc, SqlApiError):
        return exc
    message = str(exc) or type(exc).__name__
    if isinstance(exc, apsw.ConstraintError):
        return SqlApiError(errors.CONSTRAINT_VIOLATION, message)
    if isinstance(exc, apsw.AuthError):
        return SqlApiError(
            errors.SQL_ERROR,
            "not authorized: the API refuses ATTACH/DETACH, creating TEMP objects and PRAGMAs "
            "outside its allowlist (docs/http-api.md, Security)",
        )
    if isinstance(exc, apsw.TooBigError):
        return SqlApiError(errors.SQL_ERROR, f"{message} (the API's limit on one value or LIKE pattern)")
    if isinstance(exc, apsw.InterruptError):
        return SqlApiError(
            errors.STATEMENT_TIMEOUT, "the statement ran past its time limit and was interrupted"
        )
    if isinstance(exc, apsw.ProtocolError):
        # WAL's lock-protocol race: SQLite gave up re-reading the WAL index while others moved it.
        return SqlApiError(errors.DATABASE_LOCKED, message, transient=True)
    if isinstance(exc, apsw.BusyError | apsw.LockedError):
        return SqlApiError(errors.DATABASE_LOCKED, message)
    if isinstance(exc, apsw.ReadOnlyError):
        return SqlApiError(errors.READ_ONLY, message)
    if isinstance(exc, apsw.NotADBError):
        return SqlApiError(errors.NOT_A_DATABASE, message)
    if isinstance(exc, apsw.BindingsError):
        return SqlApiError(errors.BAD_VALUES, message)
    if isinstance(exc, KeyError):
        return SqlApiError(errors.BAD_VALUES, f"no value given for the named parameter {exc.args[0]!r}")
    if isinstance(exc, UnicodeEncodeError):
        return SqlApiError(errors.BAD_VALUES, "text must be valid Unicode (no lone surrogates)")
    if isinstance(exc, UnicodeDecodeError):
        return SqlApiError(errors.SQL_ERROR, "a result holds text that is not valid UTF-8")
    if isinstance(exc, OverflowError | TypeError):
        return SqlApiError(errors.BAD_VALUES, message)
    if isinstance(
        exc,
        apsw.CorruptError | apsw.IOError | apsw.FullError | apsw.CantOpenError | apsw.NoMemError,
    ):
        return SqlApiError(errors.STORAGE_ERROR, message)
    if isinstance(exc, apsw.Error):
        return SqlApiError(errors.SQL_ERROR, message)
    return None


# SQLite values that are already JSON: skipping json_cell() for them pays for the result budget.
_AS_IS = frozenset({int, str, type(None)})
# Rows between two checks of the result budget: a response overshoots the cap by less than this.
_COUNT_EVERY = 64


def _header_bytes(headers: list[str], fmt: ResultFormat) -> int:
    """Bytes a row adds besides its cells: map results repeat the column names in every row."""
    return 0 if fmt == "list" else sum(map(len, headers))


def _run_query(gc: GuardedConnection, item: Item, fmt: ResultFormat) -> JsonObject:
    cursor = gc.conn.cursor()
    headers: list[str] = []

    def remember_headers(_cursor: apsw.Cursor, _sql: str, _bindings: object) -> bool:
        # The statement is prepared but not stepped here: the only point where an empty result
        # still tells its column names.
        if not headers:
            headers.extend(name for name, _ in _cursor.get_description())
        return True

    cursor.exec_trace = remember_headers
    budget = gc.result_budget
    rows: list[list[object]] = []
    counted = 0
    try:
        for row in cursor.execute(item.sql, item.values, can_cache=gc.can_cache):
            rows.append([v if type(v) in _AS_IS else json_cell(v) for v in row])
            # Counted in chunks: per row, the accounting would cost as much as the row itself.
            if len(rows) - counted == _COUNT_EVERY:
                budget.take(rows[counted:], _header_bytes(headers, fmt))
                counted = len(rows)
        budget.take(rows[counted:], _header_bytes(headers, fmt))
    finally:
        cursor.close()
    if fmt == "list":
        return {"success": True, "resultHeaders": headers, "resultSet": rows}
    return {"success": True, "resultSet": [dict(zip(headers, row, strict=False)) for row in rows]}


def _run_statement(gc: GuardedConnection, sql: str, values: Values | None) -> int:
    before = gc.conn.total_changes()
    for _ in gc.conn.execute(sql, values, can_cache=gc.can_cache):
        pass  # statements may return rows (RETURNING); they are consumed, not reported
    return int(gc.conn.total_changes() - before)


def _run_item(gc: GuardedConnection, item: Item, fmt: ResultFormat) -> JsonObject:
    if item.kind == "query":
        return _run_query(gc, item, fmt)
    if item.values_batch is not None:
        return {
            "success": True,
            "rowsUpdatedBatch": [_run_statement(gc, item.sql, v) for v in item.values_batch],
        }
    return {"success": True, "rowsUpdated": _run_statement(gc, item.sql, item.values)}


def _run_guarded(gc: GuardedConnection, item: Item, fmt: ResultFormat, idx: int) -> JsonObject:
    """Run one item; for `noFail` items, inside a savepoint that a failure rolls back."""
    savepoint = f"hoodydb_item_{idx}"
    if item.no_fail:
        gc.control(f"SAVEPOINT {savepoint}")
    try:
        result = _run_item(gc, item, fmt)
    except Exception as exc:
        error = translate(exc)
        if error is None:
            raise
        if gc.write_refused(error):
            # Outside the token's scope: the whole request is refused, noFail or not.
            raise forbidden_write(idx) from None
        if not gc.in_transaction:
            # SQLite rolled the whole transaction back on its own (e.g. `OR ROLLBACK`, disk full):
            # nothing later may run outside it, so the request fails here even for noFail.
            raise SqlApiError(
                error.code,
                f"{error.message} (the transaction was rolled back)",
                req_idx=idx,
                transient=error.transient,
            ) from None
        if not item.no_fail or error.code in _FATAL or error.transient:
            raise error.at_item(idx) from None
        gc.control(f"ROLLBACK TO {savepoint}")
        gc.control(f"RELEASE {savepoint}")
        return {"success": False, "error": error.message}
    if not gc.in_transaction:
        raise SqlApiError(errors.SQL_ERROR, "the item ended the transaction", req_idx=idx)
    if item.no_fail:
        gc.control(f"RELEASE {savepoint}")
    return result


# Limits of the request as a whole: no item may survive them, noFail or not.
_FATAL = frozenset({errors.STATEMENT_TIMEOUT, errors.RESULT_TOO_LARGE})
# How often a transaction that hit a transient error (nothing committed) is run again.
TRANSIENT_RETRIES = 3


def execute_transaction(gc: GuardedConnection, request: TransactionRequest) -> list[JsonObject]:
    """Run a parsed request as one transaction; commit only if every non-noFail item succeeded.

    A transient failure (SQLITE_PROTOCOL) rolled everything back, so the whole request is simply
    run again, a few times, before the error is reported.
    """
    for attempt in range(TRANSIENT_RETRIES + 1):
        try:
            return _execute_once(gc, request)
        except SqlApiError as error:
            if not error.transient or attempt == TRANSIENT_RETRIES:
                raise
    raise AssertionError("unreachable")


def _execute_once(gc: GuardedConnection, request: TransactionRequest) -> list[JsonObject]:
    if gc.in_transaction:  # never expected; a leftover transaction must not swallow this one
        gc.control("ROLLBACK")
    gc.start_request()
    try:
        try:
            # A read-only token's statements can only fail: they must not take the write lock.
            gc.control("BEGIN IMMEDIATE" if request.writes and not gc.read_only else "BEGIN")
        except Exception as exc:
            raise (translate(exc) or exc) from None
        try:
            results = [
                _run_guarded(gc, item, request.result_format, i) for i, item in enumerate(request.items)
            ]
            # Past the items the deadline has done its job; it must not interrupt COMMIT/ROLLBACK.
            gc.clear_deadline()
            gc.control("COMMIT")
        except BaseException:
            gc.clear_deadline()
            if gc.in_transaction:
                gc.control("ROLLBACK")
            raise
        return results
    except SqlApiError:
        raise
    except Exception as exc:
        error = translate(exc)
        if error is None:
            raise
        raise error from None
    finally:
        gc.clear_deadline()
