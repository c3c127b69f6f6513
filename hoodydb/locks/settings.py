"""Every setting of the lock core, each defined once with a named default.

One frozen `LockSettings` is given to the manager, which hands it to every part (the gates, the
wait room), so no part keeps a default of its own that the others do not run with. Durations are
in seconds. The mount builds it from its command line (hoodydb/fs/mount.py); tests build it with
the fields they change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hoodydb.locks.layout import LockLayout
from hoodydb.locks.types import Policy

DEFAULT_POLICY = Policy.BESIDE
DEFAULT_LOCK_TIMEOUT = 30.0
DEFAULT_WINDOW = 0.05
DEFAULT_READER_LEAD = 0.05
DEFAULT_WRITE_RETRY_GRACE = 0.01
DEFAULT_READER_PATIENCE = 1.0
DEFAULT_RESERVATION = 2.0
DEFAULT_BUSY_WINDOW = 1.0
DEFAULT_BUSY_PATIENCE = 10.0
DEFAULT_EXCLUSIVE_PRIORITY = 1.0
DEFAULT_SCHEMA_GRACE = 0.005
DEFAULT_VIEW_AGE = 0.05
DEFAULT_POLL_INTERVAL = 0.1
DEFAULT_MAX_WAITERS = 200
DEFAULT_HEAD_TICK = 1.0
DEFAULT_SHM_INIT_POLL = 0.002
DEFAULT_CROWD = 256


@dataclass(frozen=True, slots=True)
class LockSettings:
    # Who takes turns: `beside` (writers, FIFO; readers run beside), `serial` (every transaction
    # not opened read-only) or `off` (plain POSIX: every conflict answered at once).
    policy: Policy = DEFAULT_POLICY

    # Where SQLite's lock bytes are: test builds of SQLite move the PENDING byte.
    layout: LockLayout = field(default_factory=LockLayout)

    # A queued transaction start is answered EAGAIN ("database is locked") when the turn has not
    # moved for this long since it arrived; any other wait ends this long after it began.
    lock_timeout: float = DEFAULT_LOCK_TIMEOUT

    # Policy `beside`: a transaction keeps the turn this long before, if it has not asked to write
    # and its thread sleeps, it goes on beside as a reader and the turn passes on.
    window: float = DEFAULT_WINDOW

    # Policy `beside`: a predicted reader (an owner whose last transaction only read) and a write
    # from beside the turn go ahead of writers that arrived less than this before them.
    reader_lead: float = DEFAULT_READER_LEAD

    # Policy `beside`, WAL mode: a predicted reader's transaction runs beside the writers instead
    # of taking a turn, as WAL readers do natively. If it writes after all and someone committed
    # since its snapshot, SQLite answers "database is locked" as natively (a busy timeout makes an
    # autocommit statement start over, in a turn). Off: no transaction that may write ever fails.
    speculative_reads: bool = False

    # Policy `beside`, WAL mode: a transaction start waits at most this long for a turn held by a
    # writer asleep in its open transaction (a shell left at `BEGIN; INSERT ...`, a program
    # stopped with SIGSTOP): then it reads beside, as natively, and if it writes, SQLite checks its
    # snapshot once the writer is done (native's "database is locked" after a commit). Also the
    # longest a read slot waits for another connection's write lock on that slot (a read mark
    # moves in a moment; a checkpoint truncating the WAL holds READ0 while it works).
    reader_patience: float = DEFAULT_READER_PATIENCE

    # Policy `beside`, on a busy host (more threads runnable than CPUs): a holder asleep may only
    # be waiting for another process that waits for a CPU (the program feeding its shell, the
    # other end of its pipe), not taking its time. Its window then stretches up to `busy_window`
    # from its admission, and it counts as asleep in its write transaction only after
    # `busy_patience`: a read-then-write transaction whose next statement is late for lack of CPU
    # must not lose its turn (its write would fail on a stale snapshot).
    busy_window: float = DEFAULT_BUSY_WINDOW
    busy_patience: float = DEFAULT_BUSY_PATIENCE

    # A write from beside the turn (SQLite already holds a snapshot) keeps the turn this long after
    # it lets go of the WRITE lock while its owner still reads: a stale snapshot's write was refused
    # (SQLITE_BUSY_SNAPSHOT) and SQLite's busy handler retries within a few milliseconds.
    write_retry_grace: float = DEFAULT_WRITE_RETRY_GRACE

    # A WAL read slot admitted after waiting is answered EAGAIN and the turn kept for SQLite's
    # retry this long at most (a client that never comes back must not hold everyone).
    reservation: float = DEFAULT_RESERVATION

    # While the admitted owner waits for EXCLUSIVE straight from SHARED, newcomers' first step to
    # SHARED waits behind it, for this long at most per turn.
    exclusive_priority: float = DEFAULT_EXCLUSIVE_PRIORITY

    # A connection's first transaction (the schema read of the statement it prepares) keeps the
    # turn this long after it ends, so the statement itself does not queue a second time.
    schema_grace: float = DEFAULT_SCHEMA_GRACE

    # A WAL read start carries SQLite's view of the WAL index, read just before it asked. Admitted
    # after waiting, it must look again (EAGAIN and a reservation, or READ0's retry grace) only if
    # the index may have changed since that view: a WRITE lock on the -shm (every commit, WAL
    # restart and recovery holds it) was held after, or less than this before, it asked (a client
    # may be descheduled between reading the header and asking). A view older than that and
    # stale after all costs a second wait, never an error: SQLite checks the header itself.
    view_age: float = DEFAULT_VIEW_AGE

    # How often a parked request asks an abort check that cannot tell it when to ask (tests'
    # plain callables; the mount's checks are watched and never polled).
    poll_interval: float = DEFAULT_POLL_INTERVAL

    # At most this many requests parked at once (each holds a daemon thread); more are refused.
    max_waiters: int = DEFAULT_MAX_WAITERS

    # The head of a queue sleeps until the turn's next timed moment and is woken when one is set;
    # it also looks this often, as a backstop.
    head_tick: float = DEFAULT_HEAD_TICK

    # How often a DMS probe looks again while the first connection (re)builds the -shm: its
    # downgrade from WRLCK to RDLCK wakes nobody.
    shm_init_poll: float = DEFAULT_SHM_INIT_POLL

    # WAL: while this many transaction starts or more wait for the turn, a new connection waits
    # in line at its DMS probe, before it maps the -shm, and its first transaction runs in the
    # turn it gets there. The kernel writes a shared FUSE mapping back whenever a process unmaps
    # it or closes the file, and write-protects each dirty page in every process that maps it: with
    # thousands of clients queued at their read slot (-shm mapped), each one's exit walked
    # thousands of mappings while the next writer's page faults waited for it. Not for small
    # crowds: the mapping then happens inside the turn, which cost 64 one-shot writers a fifth of
    # their rate at 32. 0: never.
    crowd: int = DEFAULT_CROWD
