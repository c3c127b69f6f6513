"""`python -m bench.soak --minutes 30`: kill writers at random and the mount daemon every few minutes.

`hoodydb serve` (the mount and the HTTP API) runs on a temporary directory with two databases,
one in rollback-journal mode and one in WAL mode. On each, writers of four kinds move money
between accounts with read-then-write transactions, each adding a uniquely named ledger row
(bench/soak_clients.py and bench/soak_writer.go): Python's sqlite3, an interactive `sqlite3` CLI
session, Go's mattn/go-sqlite3 (the native ones with busy timeout 0), and HTTP requests to the API.
A writer logs a transaction's id as acknowledged only after COMMIT returned success. Read-only
auditors (Python `?mode=ro`, `sqlite3 -readonly`) check in every snapshot that the total is
conserved, that no balance is negative, that the ledger matches a counter and (every tenth
check) that every balance is what the ledger says; now and then they run `PRAGMA quick_check`.

What is killed, all with SIGKILL:
- every `--kill-every` seconds (a random time in the range), one random writer's process group
  (the writer and, for the CLI writer, its `sqlite3` process), mid-transaction or anywhere else;
  a new writer takes its place;
- every `--restart-every` seconds, the FUSE daemon (`hoodydb mount`, the child of `serve`), as a
  crash would; after `--outage` seconds with the dead mount in place, the `serve` process too
  (the API), then the dead mount is lazily unmounted (`fusermount3 -u -z`) and a new `serve` mounts
  afresh. Clients keep running throughout: the failures they see while the mount is dead, or on
  a connection opened into the dead mount or while it was being replaced, are "outage" errors,
  counted apart from errors while the mount was healthy (each of which is a finding).

At the end the writers and auditors are killed and each database is checked through the mount:
every acknowledged id present (lost = 0), `integrity_check` ok, the invariants hold.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.soak_clients import audit_sql
from hoodydb import control_client
from hoodydb.fs.process import FSTYPE, force_unmount, mounted_type, terminate

REPO = Path(__file__).resolve().parents[1]
GO_WRITER_SOURCE = REPO / "bench" / "soak_writer.go"
DATABASES = {"journal.db": "delete", "wal.db": "wal"}
ACCOUNTS = 20
INITIAL_BALANCE = 1000
TOKEN = "soak-token"
# Each kind of writer, and how many run on each database at once.
WRITERS = {"python": 2, "cli": 1, "go": 1, "http": 1}
AUDITORS = ("python", "cli")
# Errors an auditor also gets on a local disk: a read-only connection cannot roll back the hot
# journal a killed writer left (SQLITE_READONLY_ROLLBACK) until a writer does.
BENIGN_AUDITOR_ERRORS = {"attempt to write a readonly database"}
# A failure this soon after the mount came back is still the outage's (a request in flight).
AFTER_OUTAGE_GRACE_S = 1.0


@dataclass
class SoakOptions:
    minutes: float
    kill_every: tuple[float, float] = (0.2, 2.0)
    restart_every: tuple[float, float] = (120.0, 240.0)
    outage: tuple[float, float] = (0.5, 3.0)
    root: str | None = None
    seed: int | None = None
    go_writer: str | None = None  # a built bench/soak_writer.go; built into the temp dir if None
    cpu_hogs: int = 0  # CPU-bound processes run beside it all along: a busy production host
    serve_args: tuple[str, ...] = ()  # more `hoodydb serve` options (`--log-level debug` to trace)
    keep_logs: Path | None = None  # copy the daemon's and every client's log here at the end


@dataclass
class Client:
    role: str  # "writer" or "auditor"
    kind: str
    db: str
    slot: int
    incarnation: int
    log: Path
    proc: subprocess.Popen[bytes]


@dataclass
class Outage:
    killed_at: float
    up_at: float = float("inf")


@dataclass
class SoakResult:
    seconds: float = 0.0
    writer_kills: Counter[str] = field(default_factory=Counter)
    client_exits: list[str] = field(default_factory=list)  # clients that stopped on their own
    daemon_kills: int = 0
    acknowledged: Counter[str] = field(default_factory=Counter)  # by writer kind
    acknowledged_by_db: Counter[str] = field(default_factory=Counter)
    committed_by_db: Counter[str] = field(default_factory=Counter)  # ledger rows at the end
    lost: dict[str, list[str]] = field(default_factory=dict)  # acknowledged ids missing, by db
    outage_errors: Counter[str] = field(default_factory=Counter)  # "client on db: message"
    errors_while_up: Counter[str] = field(default_factory=Counter)
    auditor_checks: Counter[str] = field(default_factory=Counter)
    bad_snapshots: list[str] = field(default_factory=list)
    final_checks: dict[str, str] = field(default_factory=dict)  # db: "ok" or what is wrong
    load: list[float] = field(default_factory=list)  # 1-minute load average, sampled
    hog_cpu_seconds: float = 0.0  # what the CPU hogs burned, all together

    @property
    def lost_count(self) -> int:
        return sum(len(ids) for ids in self.lost.values())

    @property
    def unexpected_errors(self) -> Counter[str]:
        return Counter({k: n for k, n in self.errors_while_up.items() if not _benign(*k.split(": ", 1))})

    @property
    def passed(self) -> bool:
        return (
            self.lost_count == 0
            and not self.bad_snapshots
            and not self.client_exits
            and not self.unexpected_errors
            and all(v == "ok" for v in self.final_checks.values())
            and len(self.final_checks) == len(DATABASES)
        )


def _benign(client: str, message: str) -> bool:
    return " auditor on " in client and message in BENIGN_AUDITOR_ERRORS


def normalise(message: str) -> str:
    """One spelling per SQLite error, whichever client reported it."""
    message = re.sub(r"^(Runtime error near line \d+|Parse error near line \d+|Error): ", "", message)
    message = re.sub(r"^(in prepare, |stepping, )", "", message)
    message = re.sub(r" \(\d+\)$", "", message)
    message = re.sub(r'unable to open database "[^"]*"', 'unable to open database "DB"', message)
    return message.strip()


def build_go_writer(out_dir: Path) -> str:
    """bench/soak_writer.go against Debian's mattn/go-sqlite3 (GOPATH mode, as the tests build it)."""
    binary = out_dir / "soak_writer"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode"}
    subprocess.run(
        ["go", "build", "-o", str(binary), str(GO_WRITER_SOURCE)], env=env, check=True, timeout=900
    )
    return str(binary)


def create_database(path: Path, journal_mode: str) -> None:
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"PRAGMA journal_mode={journal_mode}")
        conn.execute("CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")
        conn.execute("CREATE TABLE ledger(id TEXT PRIMARY KEY, src INT, dst INT, amount INT)")
        conn.execute("CREATE TABLE counter(n INTEGER NOT NULL)")
        conn.executemany(
            "INSERT INTO accounts VALUES (?, ?)", [(i, INITIAL_BALANCE) for i in range(ACCOUNTS)]
        )
        conn.execute("INSERT INTO counter VALUES (0)")
        conn.commit()
    finally:
        conn.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Serve:
    """`hoodydb serve` as a child process, killed and started again in place."""

    def __init__(self, tmp: Path, args: tuple[str, ...] = ()) -> None:
        self.data, self.mnt, self.logs = tmp / "data", tmp / "mnt", tmp / "logs"
        self.args = args
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # Its control socket: in the runtime directory given (the tests'), else in the temp dir.
        runtime = os.environ.get("HOODYDB_RUNTIME_DIR") or str(tmp / "runtime")
        self.env = {**os.environ, "HOODYDB_RUNTIME_DIR": runtime}
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self, timeout: float = 60.0) -> None:
        self.starts += 1
        cmd = [sys.executable, "-m", "hoodydb", "serve", "--data", str(self.data), "--mount", str(self.mnt)]
        cmd += ["--port", str(self.port), "--token", TOKEN, *self.args]
        with open(self.logs / f"serve.{self.starts}.log", "wb") as out:
            self.proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env, cwd=REPO
            )
        deadline = time.monotonic() + timeout
        while not self._healthy():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = (self.logs / f"serve.{self.starts}.log").read_text(errors="replace")
                raise RuntimeError(f"hoodydb serve did not come up:\n{log[-2000:]}")
            time.sleep(0.05)

    def _healthy(self) -> bool:
        if mounted_type(self.mnt) != FSTYPE:
            return False
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2.0).status_code == 200
        except httpx.HTTPError:
            return False

    def daemon_pid(self) -> int:
        path = self.env["HOODYDB_RUNTIME_DIR"] + "/" + control_client.socket_path(self.mnt).name
        return int(control_client.query(Path(path))["pid"])

    def kill_daemon(self) -> None:
        os.kill(self.daemon_pid(), signal.SIGKILL)

    def kill_serve(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        force_unmount(self.mnt)  # the dead FUSE mount: fusermount3 -u -z

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 30.0)
        force_unmount(self.mnt)


class Fleet:
    """The writers and auditors: started, killed and replaced, each in its own process group."""

    def __init__(self, serve: Serve, go_writer: str, rng: random.Random) -> None:
        self.serve, self.go_writer, self.rng = serve, go_writer, rng
        self.clients: dict[tuple[str, str, str, int], Client] = {}
        self.all_logs: list[Client] = []

    def _command(self, role: str, kind: str, db: str, log: Path, prefix: str) -> list[str]:
        path = str(self.serve.mnt / db)
        module = [sys.executable, "-m", "bench.soak_clients"]
        if role == "auditor":
            return [*module, f"{kind}-auditor", path, str(log), str(INITIAL_BALANCE), str(ACCOUNTS)]
        if kind == "go":
            return [self.go_writer, path, str(log), prefix, str(ACCOUNTS)]
        if kind == "http":
            return [*module, "http-writer", self.serve.url, TOKEN, db, str(log), prefix, str(ACCOUNTS)]
        return [*module, f"{kind}-writer", path, str(log), prefix, str(ACCOUNTS)]

    def spawn(self, role: str, kind: str, db: str, slot: int) -> None:
        key = (role, kind, db, slot)
        previous = self.clients.get(key)
        incarnation = previous.incarnation + 1 if previous else 0
        prefix = f"{kind}-{db.split('.')[0]}-{slot}.{incarnation}"
        log = self.serve.logs / f"{role}-{prefix}.log"
        with open(log.with_suffix(".stderr"), "wb") as err:
            proc = subprocess.Popen(
                self._command(role, kind, db, log, prefix),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                cwd=REPO,
                start_new_session=True,  # a process group: the CLI driver and its sqlite3 die together
            )
        client = Client(role, kind, db, slot, incarnation, log, proc)
        self.clients[key] = client
        self.all_logs.append(client)

    def start_all(self) -> None:
        for db in DATABASES:
            for kind, count in WRITERS.items():
                for slot in range(count):
                    self.spawn("writer", kind, db, slot)
            for kind in AUDITORS:
                self.spawn("auditor", kind, db, 0)

    @staticmethod
    def kill(client: Client) -> None:
        with suppress(ProcessLookupError):
            os.killpg(client.proc.pid, signal.SIGKILL)
        client.proc.wait()

    def kill_random_writer(self, result: SoakResult) -> None:
        writers = [c for c in self.clients.values() if c.role == "writer"]
        victim = self.rng.choice(writers)
        self.kill(victim)
        result.writer_kills[victim.kind] += 1
        self.spawn("writer", victim.kind, victim.db, victim.slot)

    def replace_exited(self, result: SoakResult) -> None:
        """A client never stops by itself; if one does, say so and start another."""
        for client in list(self.clients.values()):
            if client.proc.poll() is not None:
                result.client_exits.append(
                    f"{client.log.name} exited with {client.proc.returncode}: "
                    f"{client.log.with_suffix('.stderr').read_text(errors='replace')[-500:]}"
                )
                self.kill(client)  # its process group may still hold a sqlite3
                self.spawn(client.role, client.kind, client.db, client.slot)

    def kill_all(self) -> None:
        for client in self.clients.values():
            self.kill(client)


def _during_outage(t: float, opened: float, outages: list[Outage]) -> bool:
    for o in outages:
        if o.killed_at <= t <= o.up_at + AFTER_OUTAGE_GRACE_S:
            return True
        if opened < o.killed_at <= t:  # a connection into the mount that was killed
            return True
        if o.killed_at <= opened <= o.up_at <= t:
            # Opened while the mount was replaced: the old `serve` mounts again as soon as its
            # daemon dies, and the new `serve` stops that mount as an orphan before mounting its
            # own. A connection opened on it retries SQLite's read start for 10 s after, and
            # then reports "locking protocol" well past `up_at`.
            return True
    return False


def read_logs(fleet: Fleet, outages: list[Outage], result: SoakResult) -> dict[str, set[str]]:
    """Tally every client's log; returns the acknowledged ids per database."""
    acked: dict[str, set[str]] = {db: set() for db in DATABASES}
    for client in fleet.all_logs:
        label = f"{client.kind} {client.role} on {client.db}"
        if not client.log.exists():
            continue
        for line in client.log.read_text(errors="replace").splitlines():
            word, _, rest = line.partition(" ")
            if word == "ack":
                acked[client.db].add(rest)
                result.acknowledged[client.kind] += 1
                result.acknowledged_by_db[client.db] += 1
            elif word == "check":
                result.auditor_checks[f"{client.kind} {client.db}"] += 1
            elif word == "bad":
                result.bad_snapshots.append(f"{client.log.name}: {rest}")
            elif word == "err":
                t, opened, message = rest.split(" ", 2)
                key = f"{label}: {normalise(message)}"
                if _during_outage(float(t), float(opened), outages):
                    result.outage_errors[key] += 1
                else:
                    result.errors_while_up[key] += 1
                    if not _benign(label, normalise(message)):
                        print(
                            f"error while up at {float(t):.3f} in {client.log.name} (its connection "
                            f"opened at {float(opened):.3f}; outages, killed and up again at: "
                            f"{', '.join(f'{o.killed_at:.3f}-{o.up_at:.3f}' for o in outages) or 'none'}): "
                            f"{message}",
                            file=sys.stderr,
                        )
    return acked


def final_check(path: Path, acked: set[str]) -> tuple[str, set[str], int]:
    """("ok" or what is wrong, acknowledged ids missing, ledger rows)."""
    conn = sqlite3.connect(path, timeout=60)
    try:
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
        total, lowest, uncounted, mismatched = conn.execute(audit_sql(INITIAL_BALANCE, True)).fetchone()
        present = {r[0] for r in conn.execute("SELECT id FROM ledger")}
    finally:
        conn.close()
    problems = [] if integrity == "ok" else [f"integrity_check: {integrity[:300]}"]
    if total != ACCOUNTS * INITIAL_BALANCE or lowest < 0 or uncounted or mismatched:
        problems.append(
            f"invariant: total={total} lowest={lowest} ledger-counter={uncounted} off={mismatched}"
        )
    return "; ".join(problems) or "ok", acked - present, len(present)


def run(options: SoakOptions, say: Callable[[str], None] = print) -> SoakResult:
    rng = random.Random(options.seed)
    result = SoakResult()
    with tempfile.TemporaryDirectory(prefix="hoodydb-soak-", dir=options.root) as tmp:
        serve = Serve(Path(tmp), options.serve_args)
        for d in (serve.data, serve.logs):
            d.mkdir()
        for db, mode in DATABASES.items():
            create_database(serve.data / db, mode)
        fleet = Fleet(serve, options.go_writer or build_go_writer(Path(tmp)), rng)
        outages: list[Outage] = []
        hogs = [cpu_hog() for _ in range(options.cpu_hogs)]
        try:
            try:
                serve.start()
                fleet.start_all()
                _kill_for(options, rng, serve, fleet, outages, result, say)
                fleet.replace_exited(result)
            finally:
                fleet.kill_all()
            acked = read_logs(fleet, outages, result)
            for db in DATABASES:
                verdict, lost, rows = final_check(serve.mnt / db, acked[db])
                result.final_checks[db] = verdict
                result.committed_by_db[db] = rows
                if lost:
                    result.lost[db] = sorted(lost)
        finally:
            for hog in hogs:
                hog.kill()
                _, _, usage = os.wait4(hog.pid, 0)
                hog.returncode = -signal.SIGKILL
                result.hog_cpu_seconds += usage.ru_utime + usage.ru_stime
            serve.stop()
            if options.keep_logs is not None:
                shutil.copytree(serve.logs, options.keep_logs, dirs_exist_ok=True)
        result.load.append(os.getloadavg()[0])
    return result


def cpu_hog() -> subprocess.Popen[bytes]:
    """A process that only burns CPU, at the soak's own niceness."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)


def _kill_for(
    options: SoakOptions,
    rng: random.Random,
    serve: Serve,
    fleet: Fleet,
    outages: list[Outage],
    result: SoakResult,
    say: Callable[[str], None],
) -> None:
    """The soak's minutes: writers killed at random, the daemon killed and remounted."""
    t0 = time.monotonic()
    end = t0 + options.minutes * 60
    next_kill = t0 + rng.uniform(*options.kill_every)
    next_restart = t0 + rng.uniform(*options.restart_every)
    next_load = t0
    while (now := time.monotonic()) < end:
        if now >= next_load:
            result.load.append(os.getloadavg()[0])
            next_load = now + 60
        fleet.replace_exited(result)
        if now >= next_kill:
            fleet.kill_random_writer(result)
            next_kill = now + rng.uniform(*options.kill_every)
        if now >= next_restart:
            outage = Outage(time.time())
            serve.kill_daemon()
            outages.append(outage)
            result.daemon_kills += 1
            time.sleep(rng.uniform(*options.outage))
            serve.kill_serve()
            serve.start()
            outage.up_at = time.time()
            say(
                f"[{now - t0:6.0f} s] daemon kill {result.daemon_kills}: down "
                f"{outage.up_at - outage.killed_at:.1f} s; writer kills so far "
                f"{sum(result.writer_kills.values())}"
            )
            next_restart = time.monotonic() + rng.uniform(*options.restart_every)
        time.sleep(0.02)
    result.seconds = time.monotonic() - t0


def report(result: SoakResult) -> str:
    lines = [
        f"Ran {result.seconds / 60:.1f} min; 1-minute load average {min(result.load):.1f} to "
        f"{max(result.load):.1f} on {os.cpu_count()} cores"
        + (f"; CPU hogs burned {result.hog_cpu_seconds:.0f} s of CPU." if result.hog_cpu_seconds else "."),
        "",
        "| | |",
        "| --- | --- |",
        f"| writer kills (SIGKILL) | {sum(result.writer_kills.values())}: "
        + ", ".join(f"{k} {n}" for k, n in sorted(result.writer_kills.items()))
        + " |",
        f"| daemon kills and remounts | {result.daemon_kills} |",
        f"| commits acknowledged | {sum(result.acknowledged.values())}: "
        + ", ".join(f"{k} {n}" for k, n in sorted(result.acknowledged.items()))
        + " |",
        "| acknowledged / ledger rows | "
        + ", ".join(
            f"{db} {result.acknowledged_by_db[db]} / {result.committed_by_db[db]}" for db in DATABASES
        )
        + " |",
        f"| acknowledged commits lost | {result.lost_count} |",
        "| integrity_check and invariants | "
        + ", ".join(f"{db} {v}" for db, v in result.final_checks.items())
        + " |",
        f"| auditor checks | {sum(result.auditor_checks.values())}: "
        + ", ".join(f"{k} {n}" for k, n in sorted(result.auditor_checks.items()))
        + f"; inconsistent snapshots {len(result.bad_snapshots)} |",
        f"| clients that stopped on their own | {len(result.client_exits)} |",
        "",
        "Errors while the mount was down or on a connection into the killed mount (expected):",
        "",
        *(f"- {n} x {k}" for k, n in result.outage_errors.most_common()),
        "",
        "Errors while the mount was up:",
        "",
        *(f"- {n} x {k}" for k, n in result.errors_while_up.most_common()),
    ]
    if not result.errors_while_up:
        lines.append("- none")
    for db, ids in result.lost.items():
        lines.append(f"\nLOST in {db}: {len(ids)}, e.g. {ids[:10]}")
    lines += [f"\nBAD: {b}" for b in result.bad_snapshots[:20]]
    lines += [f"\nEXITED: {e}" for e in result.client_exits[:20]]
    lines.append(f"\nResult: {'PASS' if result.passed else 'FAIL'}")
    return "\n".join(lines)


def _range(text: str) -> tuple[float, float]:
    low, _, high = text.partition("-")
    return float(low), float(high or low)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument(
        "--kill-every", type=_range, default="0.2-2", help="seconds between writer kills: LOW-HIGH"
    )
    parser.add_argument(
        "--restart-every", type=_range, default="120-240", help="seconds between daemon kills"
    )
    parser.add_argument(
        "--outage", type=_range, default="0.5-3", help="seconds the dead mount stays in place"
    )
    parser.add_argument("--root", help="directory for the temporary files (default: the system tmp dir)")
    parser.add_argument("--seed", type=int, help="for the random choices (default: a random one, printed)")
    parser.add_argument("--nice", type=int, default=10, help="niceness of the whole soak: a shared machine")
    parser.add_argument(
        "--cpu-hogs", type=int, default=0, help="CPU-bound processes to run beside it: a busy host"
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="soaks one after the other (seeds SEED, SEED+1, ...)"
    )
    parser.add_argument("--keep-logs", type=Path, help="copy each run's logs to KEEP_LOGS/run-N")
    parser.add_argument(
        "--serve-arg", action="append", default=[], help="an extra `hoodydb serve` option (repeatable)"
    )
    args = parser.parse_args(argv)
    os.nice(args.nice)
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    print(f"Command: python -m bench.soak {' '.join(argv if argv is not None else sys.argv[1:])}".rstrip())
    failed = 0
    for n in range(args.runs):
        options = SoakOptions(
            args.minutes,
            args.kill_every,
            args.restart_every,
            args.outage,
            args.root,
            args.seed + n,
            cpu_hogs=args.cpu_hogs,
            serve_args=tuple(args.serve_arg),
            keep_logs=None if args.keep_logs is None else args.keep_logs / f"run-{n + 1}",
        )
        heading = f"Run {n + 1} of {args.runs}: " if args.runs > 1 else ""
        print(f"{heading}started {time.strftime('%Y-%m-%d %H:%M %Z')}, seed {options.seed}", flush=True)
        result = run(options, say=lambda line: print(line, flush=True))
        print(report(result), flush=True)
        failed += not result.passed
    if args.runs > 1:
        print(f"\n{args.runs - failed} of {args.runs} runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
