"""Which PRAGMAs a request may run: introspection, and the few writes that are the database's own.

Everything else is refused, because the API keeps one connection per database for every request:
a PRAGMA that changes the connection (`locking_mode`, `query_only`, `foreign_keys`, `cache_size`),
weakens durability (`journal_mode=MEMORY|OFF`, `synchronous`), or changes the whole process
(`hard_heap_limit`, `temp_store_directory`) would change what every later request, and every native
client of the file, gets. SQLite asks the authorizer about table-valued forms
(`SELECT * FROM pragma_table_info('t')`) too, so the same list governs them.
"""

from __future__ import annotations

import re

# Read-only pragmas whose argument names an object (a table, an index) or a row count: any argument.
_INTROSPECTION = frozenset(
    {
        "foreign_key_check",
        "foreign_key_list",
        "index_info",
        "index_list",
        "index_xinfo",
        "integrity_check",
        "quick_check",
        "table_info",
        "table_list",
        "table_xinfo",
    }
)
# Settings that may be read (no argument) but not changed.
_READ_ONLY = frozenset(
    {
        "auto_vacuum",
        "busy_timeout",
        "cache_size",
        "collation_list",
        "compile_options",
        "data_version",
        "database_list",
        "encoding",
        "foreign_keys",
        "freelist_count",
        "function_list",
        "journal_size_limit",
        "locking_mode",
        "max_page_count",
        "module_list",
        "page_count",
        "page_size",
        "pragma_list",
        "query_only",
        "recursive_triggers",
        "schema_version",
        "secure_delete",
        "synchronous",
        "temp_store",
        "wal_autocheckpoint",
    }
)
_INTEGER = re.compile(r"[+-]?[0-9]{1,19}")
# Writes that change the file itself, not the connection: name -> the values accepted.
_WRITABLE = {
    "user_version": _INTEGER,
    "application_id": _INTEGER,
    # WAL is stored in the file; DELETE is every connection's default. The other modes are
    # per-connection and MEMORY/OFF can corrupt the file when the process dies mid-transaction.
    "journal_mode": re.compile(r"wal|delete", re.IGNORECASE),
    # Switched off again by SQLite at every COMMIT/ROLLBACK: it never outlives the request.
    "defer_foreign_keys": re.compile(r"0|1|on|off|true|false|yes|no", re.IGNORECASE),
    # Work on the file (free pages, statistics), not settings.
    "incremental_vacuum": _INTEGER,
    "optimize": re.compile(r"(0x)?[0-9a-f]{1,8}", re.IGNORECASE),
}


def pragma_allowed(name: str, value: str | None, schema: str | None) -> bool:
    """Whether `PRAGMA [schema.]name[=value]` may run (as SQLite's authorizer reports it)."""
    name = name.lower()
    if name in _INTROSPECTION:
        return True
    if value is None:
        return name in _READ_ONLY or name in _WRITABLE
    accepted = _WRITABLE.get(name)
    if accepted is None or schema not in (None, "main"):
        return False
    return accepted.fullmatch(value) is not None


# Allowed PRAGMAs that change the file even without a value: refused to read-only tokens.
_WRITE_WITHOUT_VALUE = frozenset({"incremental_vacuum", "optimize"})


def pragma_reads_only(name: str, value: str | None) -> bool:
    """Whether an allowed PRAGMA only reads (what a read-only token may run): introspection, or a
    setting read without a value."""
    name = name.lower()
    if name in _INTROSPECTION:
        return True
    return value is None and name not in _WRITE_WITHOUT_VALUE


def allowed_names() -> list[str]:
    """Every pragma name that is allowed in some form (for the documentation and its test)."""
    return sorted(_INTROSPECTION | _READ_ONLY | set(_WRITABLE))
