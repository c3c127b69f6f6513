"""The bounds every API request runs within, besides its time limit: sizes, result caps, queue depth.

Why each exists:
- `max_value_bytes` (SQLite's LENGTH limit) and `max_like_pattern_bytes` (its LIKE/GLOB pattern
  limit): the statement timeout is checked between SQLite VM steps, and one LIKE, GLOB, instr() or
  replace() call is a single step whose cost grows with the product of its operands' lengths.
  Bounding both keeps the longest single step to a fraction of a second, so the timeout holds.
- `max_result_rows` / `max_result_bytes`: a response is built in memory before it is sent; the cap
  keeps one request from growing the server's memory with the size of a table.
- `max_queue`: requests for one database wait in line for its worker; past this many the API
  answers 503 at once instead of letting the line (and its memory) grow without bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from hoodydb.sql import errors
from hoodydb.sql.errors import SqlApiError

DEFAULT_MAX_VALUE_BYTES = 16 * 1024 * 1024
DEFAULT_MAX_LIKE_PATTERN_BYTES = 100
DEFAULT_MAX_RESULT_ROWS = 100_000
DEFAULT_MAX_RESULT_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_QUEUE = 64


@dataclass(frozen=True)
class SqlLimits:
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_like_pattern_bytes: int = DEFAULT_MAX_LIKE_PATTERN_BYTES
    max_result_rows: int = DEFAULT_MAX_RESULT_ROWS
    max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES
    max_queue: int = DEFAULT_MAX_QUEUE

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1")


class ResultBudget:
    """What is left of one request's result allowance; `take` raises `result_too_large` past it."""

    __slots__ = ("bytes_left", "limits", "rows_left")

    def __init__(self, limits: SqlLimits) -> None:
        self.limits = limits
        self.rows_left = limits.max_result_rows
        self.bytes_left = limits.max_result_bytes

    def take(self, rows: list[list[object]], overhead: int) -> None:
        """Count rows; each is estimated as its text plus `overhead` + 8 bytes per cell."""
        self.rows_left -= len(rows)
        cells = [c for row in rows for c in row]
        text = sum([len(c) for c in cells if type(c) is str])
        self.bytes_left -= text + 8 * len(cells) + overhead * len(rows)
        if self.rows_left < 0:
            raise SqlApiError(
                errors.RESULT_TOO_LARGE,
                f"the result has more than {self.limits.max_result_rows} rows; "
                "narrow the query or page through it (LIMIT/OFFSET or a key range)",
            )
        if self.bytes_left < 0:
            raise SqlApiError(
                errors.RESULT_TOO_LARGE,
                f"the result is larger than {self.limits.max_result_bytes} bytes; "
                "narrow the query or page through it (LIMIT/OFFSET or a key range)",
            )
