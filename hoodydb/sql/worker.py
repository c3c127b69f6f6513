"""One worker thread per database, and the pool that hands requests to them.

Blocking apsw calls never run on the event loop. Each database gets one thread that owns one
connection and runs jobs in arrival order (Datasette's writer-thread idea, used here for reads too):
requests to one database queue in the API process instead of contending for SQLite's locks, and
through the mount the API process is one more client of the admission gate, next to native ones.

The pool keeps at most `max_open` databases open, closing the least recently used idle one. Each
worker takes at most `max_queue` jobs (running and waiting) and refuses more with `queue_full`; a
job whose caller went away is dropped if it has not started, and interrupted if it has.

Through a hoodydb mount (`label_writers`), a worker tells the mount which API token its next jobs
run for, so the commit feed names the token rather than only this process (hoodydb/fs/commits.py):
one extended attribute set on the database through the mount, only when the token changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import apsw

from hoodydb.fs.commits import WRITER_XATTR
from hoodydb.sql import errors
from hoodydb.sql.connection import (
    DEFAULT_BUSY_TIMEOUT_S,
    DEFAULT_STATEMENT_TIMEOUT_S,
    GuardedConnection,
    open_database,
)
from hoodydb.sql.errors import SqlApiError
from hoodydb.sql.limits import SqlLimits
from hoodydb.sql.transaction import translate

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[[GuardedConnection], Any]


@dataclass(frozen=True)
class JobTiming:
    """Seconds a job waited for its worker, ran, and (within that) waited for the write lock."""

    queued: float
    ran: float
    lock_wait: float = 0.0


Observer = Callable[[JobTiming], None]
# How long a job runs before the pool starts watching whether its caller is still there.
WATCH_AFTER_S = 0.1


@dataclass
class _Work:
    job: Job
    future: Future[Any]
    enqueued: float
    # Set when the caller went away while the job ran; the connection's progress handler reads it.
    cancelled: threading.Event
    writer: str | None = None  # the API token the job runs for, told to the mount (label_writers)

    def cancel(self) -> None:
        if not self.future.cancel():  # already running (or done): interrupt it instead
            self.cancelled.set()


class DatabaseWorker:
    """A thread owning one connection to one database. Jobs run one at a time, in order."""

    def __init__(
        self,
        path: Path,
        *,
        opener: Callable[[Path], GuardedConnection],
        observer: Observer | None,
        max_queue: int,
        label_writers: bool = False,
    ) -> None:
        self.path = path
        self._opener = opener
        self._label_writers = label_writers
        self._labelled: str | None = None  # what the mount was last told for this thread
        self._observer = observer
        self._queue: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._busy = False
        self._max_queue = max_queue
        # Jobs submitted and not yet finished; changed by the submitter and the worker thread.
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"hoodydb-db:{path.name}", daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        return not self._busy and self._queue.empty()

    def submit(self, job: Callable[[GuardedConnection], T], writer: str | None = None) -> _Work:
        """Queue `job`; `queue_full` (nothing queued) when `max_queue` jobs are already pending."""
        with self._pending_lock:
            if self._pending >= self._max_queue:
                raise SqlApiError(
                    errors.QUEUE_FULL, f"{self._max_queue} requests are already waiting for this database"
                )
            self._pending += 1
        work = _Work(job, Future(), time.monotonic(), threading.Event(), writer)
        self._queue.put(work)
        return work

    def _finished(self) -> None:
        with self._pending_lock:
            self._pending -= 1

    def close(self) -> None:
        """Finish queued jobs, then close the connection and end the thread (does not wait)."""
        self._queue.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _identity(self) -> tuple[int, int]:
        """(device, inode) of the database file now; `db_not_found` if it is gone."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            raise SqlApiError(errors.DB_NOT_FOUND, "the database no longer exists") from None
        return st.st_dev, st.st_ino

    def _run(self) -> None:
        conn: GuardedConnection | None = None
        opened_as: tuple[int, int] | None = None
        try:
            while (work := self._queue.get()) is not None:
                self._busy = True
                started = time.monotonic()
                try:
                    if not work.future.set_running_or_notify_cancel():
                        continue
                    identity = self._identity()
                    if conn is not None and identity != opened_as:
                        # The file was replaced (or removed) since we opened it: a kept
                        # connection would read and write the old, unlinked file.
                        conn.close()
                        conn = None
                    if conn is None:
                        # Opened lazily and again after a failure, so a database that was broken
                        # once (or not yet a database) is retried by the next request.
                        conn = self._open()
                        opened_as = identity
                    self._label(work.writer)
                    conn.lock_wait = 0.0
                    conn.cancel_event = work.cancelled
                    work.future.set_result(work.job(conn))
                except BaseException as exc:
                    work.future.set_exception(exc)
                finally:
                    self._finished()
                    self._busy = False
                    if self._observer is not None:
                        timing = JobTiming(
                            queued=started - work.enqueued,
                            ran=time.monotonic() - started,
                            lock_wait=conn.lock_wait if conn is not None else 0.0,
                        )
                        self._observer(timing)
        finally:
            if conn is not None:
                conn.close()

    def _label(self, writer: str | None) -> None:
        """Tell the mount that this thread's commits are for `writer` from now on."""
        if not self._label_writers or writer is None or writer == self._labelled:
            return
        self._labelled = writer
        try:
            os.setxattr(self.path, WRITER_XATTR, writer.encode())
        except OSError as exc:  # a mount without a feed, or not ours: commits then name serve only
            self._label_writers = False
            log.info("commits on %s will not name API tokens: %s", self.path, exc.strerror)

    def _open(self) -> GuardedConnection:
        try:
            return self._opener(self.path)
        except apsw.Error as exc:
            error = translate(exc)
            if isinstance(exc, apsw.CantOpenError) and not os.path.exists(self.path):
                error = SqlApiError(errors.DB_NOT_FOUND, "the database disappeared")
            raise (error or exc) from None


def _read_only(job: Callable[[GuardedConnection], T], gc: GuardedConnection) -> T:
    return gc.read_only_job(job)


class DatabasePool:
    """Maps resolved database paths to workers; lives on the event loop's thread."""

    def __init__(
        self,
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        statement_timeout: float = DEFAULT_STATEMENT_TIMEOUT_S,
        max_open: int = 64,
        observer: Observer | None = None,
        limits: SqlLimits | None = None,
        label_writers: bool = False,
    ) -> None:
        self.busy_timeout = busy_timeout
        self.label_writers = label_writers  # databases are served through a hoodydb mount
        self.statement_timeout = statement_timeout
        self.limits = limits or SqlLimits()
        self.max_open = max_open
        self._observer = observer
        self._workers: OrderedDict[Path, DatabaseWorker] = OrderedDict()
        self._closed = False

    def _open(self, path: Path, *, create: bool = False) -> GuardedConnection:
        return open_database(
            path,
            create=create,
            busy_timeout=self.busy_timeout,
            statement_timeout=self.statement_timeout,
            limits=self.limits,
        )

    @property
    def open_count(self) -> int:
        return len(self._workers)

    def _worker(self, path: Path) -> DatabaseWorker:
        if self._closed:
            raise RuntimeError("the database pool is closed")
        worker = self._workers.get(path)
        if worker is not None:
            self._workers.move_to_end(path)
            return worker
        worker = DatabaseWorker(
            path,
            opener=self._open,
            observer=self._observer,
            max_queue=self.limits.max_queue,
            label_writers=self.label_writers,
        )
        self._workers[path] = worker
        self._evict()
        return worker

    def _evict(self) -> None:
        for path in list(self._workers):
            if len(self._workers) <= self.max_open:
                return
            if self._workers[path].idle:
                self._workers.pop(path).close()

    async def run(
        self,
        path: Path,
        job: Callable[[GuardedConnection], T],
        *,
        gone: Callable[[], Awaitable[object]] | None = None,
        read_only: bool = False,
        writer: str | None = None,
    ) -> T:
        """Run `job(connection)` on the database's worker thread and await its result.

        `gone()`, when given, completes when the caller no longer wants the result (its client
        disconnected): the job is then dropped or interrupted, and `client_gone` is raised.
        With `read_only`, SQLite refuses every write the job tries (`forbidden`). `writer` names
        the API token the job runs for, in the commit feed.
        """
        if read_only:
            job = partial(_read_only, job)
        work = self._worker(path).submit(job, None if read_only else writer)
        result: asyncio.Future[T] = asyncio.wrap_future(work.future)
        if gone is None:
            return await result
        loop = asyncio.get_running_loop()
        left = False
        watcher: asyncio.Task[None] | None = None

        async def watch() -> None:
            nonlocal left
            await gone()
            left = True
            work.cancel()

        def start_watching() -> None:
            nonlocal watcher
            watcher = loop.create_task(watch())

        # Most jobs finish within milliseconds: watching each one for a disconnect would cost more
        # than it saves, so only jobs still unfinished after a moment are watched.
        timer = loop.call_later(WATCH_AFTER_S, start_watching)
        try:
            return await result
        except asyncio.CancelledError:
            if not left:  # this task itself was cancelled (shutdown): the work goes too
                work.cancel()
                raise
        except Exception:
            if not left:
                raise
        finally:
            timer.cancel()
            if watcher is not None:
                watcher.cancel()
        raise SqlApiError(errors.CLIENT_GONE, "the client went away; its request was cancelled")

    async def create(self, path: Path) -> None:
        """Create a new, empty database at a confined path; `db_exists` if something is there."""
        await asyncio.get_running_loop().run_in_executor(None, self._create_blocking, path)

    def _create_blocking(self, path: Path) -> None:
        try:
            # O_EXCL makes "exists" atomic: of two concurrent creators exactly one wins.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            raise SqlApiError(errors.DB_EXISTS, "a file already exists at that path") from None
        except OSError as exc:
            raise SqlApiError(errors.STORAGE_ERROR, f"cannot create the database: {exc.strerror}") from None
        os.close(fd)
        try:
            self._open(path, create=True).close()
        except BaseException as exc:
            # The file is ours (O_EXCL) and empty: a failed creation must not leave it behind.
            with contextlib.suppress(OSError):
                os.unlink(path)
            error = translate(exc) if isinstance(exc, apsw.Error) else None
            raise (error or exc) from None

    async def close(self) -> None:
        """Close every worker and wait for them (use-after-close raises)."""
        self._closed = True
        workers = list(self._workers.values())
        self._workers.clear()
        for worker in workers:
            worker.close()
        loop = asyncio.get_running_loop()
        for worker in workers:
            await loop.run_in_executor(None, worker.join, 30.0)
