"""The soak's client programs: `python -m bench.soak_clients KIND ARGS...`, one process each.

Writers move money between accounts with read-then-write transactions that also append a row
with a unique id to the ledger and bump a counter (`bench/soak.py` creates the schema). A writer
appends `ack ID` to its log only after COMMIT returned success, and `err UNIXTIME OPENEDAT
MESSAGE` for each failure (OPENEDAT: when the connection in use was opened, which tells a failure
on a connection into a killed mount from one on a healthy mount); then it reopens and goes on.
Each line is one write(2) to an O_APPEND file, so it survives the SIGKILL that may come next.

Auditors read the same databases read-only and append `check` for each consistent snapshot and
`bad UNIXTIME DETAILS` for an inconsistent one.

  python-writer DB LOG PREFIX ACCOUNTS          Python's sqlite3, busy timeout 0
  cli-writer DB LOG PREFIX ACCOUNTS             an interactive `sqlite3 -bail` session, driven here
  http-writer URL TOKEN DB LOG PREFIX ACCOUNTS  POST /api/v1/sqlite/db, one request per transfer
  python-auditor DB LOG INITIAL ACCOUNTS        Python's sqlite3 with ?mode=ro, busy timeout 0
  cli-auditor DB LOG INITIAL ACCOUNTS           `sqlite3 -readonly`
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable

MAX_AMOUNT = 50
RETRY_PAUSE_S = 0.1
AUDIT_PAUSE_S = 0.05
RECONCILE_EVERY = 10  # audits; the ledger reconciliation reads the whole ledger
QUICK_CHECK_EVERY = 200  # audits

INSERT_LEDGER = "INSERT INTO ledger(id, src, dst, amount) VALUES (?, ?, ?, ?)"
DEBIT = "UPDATE accounts SET balance = balance - ? WHERE id = ?"
CREDIT = "UPDATE accounts SET balance = balance + ? WHERE id = ?"
COUNT = "UPDATE counter SET n = n + 1"


def audit_sql(initial: int, reconcile: bool) -> str:
    """One row: total balance, lowest balance, ledger rows minus the counter, accounts whose
    balance differs from what the ledger says (0 unless `reconcile`)."""
    mismatched = "0"
    if reconcile:
        mismatched = f"""(WITH moves(id, delta) AS (
                SELECT src, -amount FROM ledger UNION ALL SELECT dst, amount FROM ledger),
              net(id, total) AS (SELECT id, sum(delta) FROM moves GROUP BY id)
            SELECT count(*) FROM accounts LEFT JOIN net USING (id)
            WHERE balance != {initial} + coalesce(total, 0))"""
    return (
        "SELECT (SELECT sum(balance) FROM accounts), (SELECT min(balance) FROM accounts), "
        f"(SELECT count(*) FROM ledger) - (SELECT n FROM counter), {mismatched}"
    )


class Log:
    """The client's log: one line per write(2), appended."""

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def line(self, text: str) -> None:
        os.write(self._fd, (text.replace("\n", " ") + "\n").encode())

    def error(self, opened: float, message: str) -> None:
        self.line(f"err {time.time():.3f} {opened:.3f} {message}")


def pick_accounts(rng: random.Random, accounts: int) -> tuple[int, int]:
    src, dst = rng.sample(range(accounts), 2)
    return src, dst


def python_writer(path: str, log_path: str, prefix: str, accounts: str) -> None:
    log, rng, n = Log(log_path), random.Random(), int(accounts)
    conn: sqlite3.Connection | None = None
    opened = 0.0
    seq = 0
    while True:
        try:
            if conn is None:
                opened = time.time()
                # mode=rw: never create a database (in the bare mountpoint while the mount is down).
                conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=0, isolation_level=None)
            src, dst = pick_accounts(rng, n)
            tx_id = f"{prefix}.{seq}"
            seq += 1
            conn.execute("BEGIN")
            (balance,) = conn.execute("SELECT balance FROM accounts WHERE id = ?", (src,)).fetchone()
            amount = rng.randint(0, min(balance, MAX_AMOUNT))
            conn.execute(INSERT_LEDGER, (tx_id, src, dst, amount))
            conn.execute(DEBIT, (amount, src))
            conn.execute(CREDIT, (amount, dst))
            conn.execute(COUNT)
            conn.execute("COMMIT")
            log.line(f"ack {tx_id}")
        except sqlite3.Error as exc:
            log.error(opened, str(exc))
            if conn is not None:
                conn.close()  # rolls back whatever was open
                conn = None
            time.sleep(RETRY_PAUSE_S)


class CliSession:
    """A `sqlite3` CLI process fed statements on stdin; -bail makes it exit on the first error."""

    def __init__(self, args: list[str]) -> None:
        self.opened = time.time()
        self.proc = subprocess.Popen(
            ["sqlite3", "-bail", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def send(self, sql: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(sql + "\n")
        self.proc.stdin.flush()

    def read_line(self) -> str:
        """The next output line; raises CliError with the CLI's message if it exited instead."""
        assert self.proc.stdout is not None and self.proc.stderr is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            message = self.proc.stderr.read().strip() or f"sqlite3 exited with {self.proc.returncode}"
            raise CliError(message)
        return line.rstrip("\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate()


class CliError(Exception):
    pass


def cli_writer(path: str, log_path: str, prefix: str, accounts: str) -> None:
    """A person (or a script) at the sqlite3 prompt: BEGIN, read the balance, decide, write, COMMIT.
    The `SELECT 'ack'` after COMMIT prints only if COMMIT succeeded (-bail stops at an error)."""
    log, rng, n = Log(log_path), random.Random(), int(accounts)
    session: CliSession | None = None
    seq = 0
    while True:
        try:
            if session is None:
                session = CliSession([f"file:{path}?mode=rw"])
            src, dst = pick_accounts(rng, n)
            tx_id = f"{prefix}.{seq}"
            seq += 1
            session.send(f"BEGIN; SELECT balance FROM accounts WHERE id = {src};")
            amount = rng.randint(0, min(int(session.read_line()), MAX_AMOUNT))
            session.send(
                f"INSERT INTO ledger(id, src, dst, amount) VALUES ('{tx_id}', {src}, {dst}, {amount}); "
                f"UPDATE accounts SET balance = balance - {amount} WHERE id = {src}; "
                f"UPDATE accounts SET balance = balance + {amount} WHERE id = {dst}; "
                f"{COUNT}; COMMIT; SELECT 'ack {tx_id}';"
            )
            line = session.read_line()
            if line != f"ack {tx_id}":
                raise CliError(f"unexpected output {line!r}")
            log.line(line)
        except (CliError, BrokenPipeError) as exc:
            assert session is not None
            session.close()
            log.error(session.opened, str(exc))
            session = None
            time.sleep(RETRY_PAUSE_S)


def http_writer(url: str, token: str, db: str, log_path: str, prefix: str, accounts: str) -> None:
    """One transfer per request: the API runs the items as one transaction (BEGIN IMMEDIATE), so
    the read is a subquery: the amount is at most what the source holds."""
    import httpx  # only this client needs it

    log, rng, n = Log(log_path), random.Random(), int(accounts)
    client: httpx.Client | None = None
    opened = 0.0
    seq = 0
    while True:
        if client is None:
            opened = time.time()
            client = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        src, dst = pick_accounts(rng, n)
        tx_id = f"{prefix}.{seq}"
        seq += 1
        values = {"id": tx_id, "src": src, "dst": dst, "want": rng.randint(0, MAX_AMOUNT)}
        moved = "(SELECT amount FROM ledger WHERE id = :id)"
        body = {
            "transaction": [
                {
                    "statement": "INSERT INTO ledger(id, src, dst, amount) VALUES (:id, :src, :dst, "
                    "(SELECT min(balance, :want) FROM accounts WHERE id = :src))",
                    "values": values,
                },
                {
                    "statement": f"UPDATE accounts SET balance = balance - {moved} WHERE id = :src",
                    "values": values,
                },
                {
                    "statement": f"UPDATE accounts SET balance = balance + {moved} WHERE id = :dst",
                    "values": values,
                },
                {"statement": COUNT},
            ]
        }
        try:
            response = client.post("/api/v1/sqlite/db", params={"db": db}, json=body)
        except httpx.HTTPError as exc:
            log.error(opened, f"{type(exc).__name__}: {exc}")
            client.close()
            client = None
            time.sleep(RETRY_PAUSE_S)
            continue
        if response.status_code == 200 and all(r.get("success") for r in response.json()["results"]):
            log.line(f"ack {tx_id}")
        else:
            log.error(opened, f"HTTP {response.status_code}: {response.text[:300]}")
            time.sleep(RETRY_PAUSE_S)


def _judge(log: Log, row: tuple[int, int, int, int], total: int) -> None:
    got_total, lowest, uncounted, mismatched = row
    if got_total != total or lowest < 0 or uncounted != 0 or mismatched != 0:
        log.line(
            f"bad {time.time():.3f} total={got_total}/{total} lowest={lowest} "
            f"ledger-counter={uncounted} accounts-off-ledger={mismatched}"
        )
    else:
        log.line("check")


def _audit_loop(log: Log, total: int, audit: Callable[[int], tuple[int, int, int, int] | None]) -> None:
    number = 0
    while True:
        number += 1
        row = audit(number)
        if row is not None:
            _judge(log, row, total)
        time.sleep(AUDIT_PAUSE_S)


def python_auditor(path: str, log_path: str, initial: str, accounts: str) -> None:
    log, start_balance = Log(log_path), int(initial)
    total = start_balance * int(accounts)
    conn: sqlite3.Connection | None = None
    opened = 0.0

    def audit(number: int) -> tuple[int, int, int, int] | None:
        nonlocal conn, opened
        try:
            if conn is None:
                opened = time.time()
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0, isolation_level=None)
            if number % QUICK_CHECK_EVERY == 0:
                result = conn.execute("PRAGMA quick_check").fetchall()
                if result != [("ok",)]:
                    log.line(f"bad {time.time():.3f} quick_check {result[:5]}")
            sql = audit_sql(start_balance, number % RECONCILE_EVERY == 0)
            row: tuple[int, int, int, int] = conn.execute(sql).fetchone()  # one statement: one snapshot
            return row
        except sqlite3.Error as exc:
            log.error(opened, str(exc))
            if conn is not None:
                conn.close()
                conn = None
            time.sleep(RETRY_PAUSE_S)
            return None

    _audit_loop(log, total, audit)


def cli_auditor(path: str, log_path: str, initial: str, accounts: str) -> None:
    log, start_balance = Log(log_path), int(initial)
    total = start_balance * int(accounts)
    session: CliSession | None = None

    def audit(number: int) -> tuple[int, int, int, int] | None:
        nonlocal session
        try:
            if session is None:
                session = CliSession(["-readonly", "-separator", " ", path])
            if number % QUICK_CHECK_EVERY == 0:
                session.send("PRAGMA quick_check;")
                result = session.read_line()
                if result != "ok":
                    log.line(f"bad {time.time():.3f} quick_check {result}")
            session.send(audit_sql(start_balance, number % RECONCILE_EVERY == 0).replace("\n", " ") + ";")
            a, b, c, d = (int(x) for x in session.read_line().split())
            return a, b, c, d
        except (CliError, BrokenPipeError) as exc:
            assert session is not None
            session.close()
            log.error(session.opened, str(exc))
            session = None
            time.sleep(RETRY_PAUSE_S)
            return None

    _audit_loop(log, total, audit)


PROGRAMS: dict[str, Callable[..., None]] = {
    "python-writer": python_writer,
    "cli-writer": cli_writer,
    "http-writer": http_writer,
    "python-auditor": python_auditor,
    "cli-auditor": cli_auditor,
}

if __name__ == "__main__":
    PROGRAMS[sys.argv[1]](*sys.argv[2:])
