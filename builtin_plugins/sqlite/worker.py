"""The SQLite store's connection and worker thread: opening, the one worker thread every
blocking call runs on, writes committed inline on the caller's thread when that cannot wait, the
write queue and its group commit, and WAL checkpoints.

`SqliteCore` holds the adapter's state; the read, write and search methods (reads.py, writes.py,
search.py) build on it and `SqliteAdapter` (adapter.py) joins them.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

from contracts.storage import StorageError
from host.storekit import IndexParams, IndexSet

from .labels import LabelSets
from .schema import MigrationStep, migrate

T = TypeVar("T")

INLINE_ROWS = 64
"""Most rows a write commits on the caller's thread (a millisecond or two); larger writes, and
any write while others are queued, go to the worker thread."""
CHECKPOINT_PAGES = 1000
"""WAL pages (estimated) written inline after which the worker runs a passive checkpoint
(SQLite's own auto-checkpoint threshold)."""
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

Step = Callable[[sqlite3.Connection], tuple[T, Callable[[], None]]]
"""One write: runs inside an open transaction, returns its result and what updates the vector
indexes once that transaction has committed."""
Outcome = tuple[bool, Any]
"""A queued write's outcome: (True, its result) or (False, its exception)."""


def _deliver(delivered: list[tuple[asyncio.Future[Any], Outcome]]) -> None:
    for future, (ok, value) in delivered:
        if future.done():  # its caller was cancelled; the write stands
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SqliteCore:
    """The connections, the worker thread and the write queue of a `SqliteAdapter`."""

    def __init__(
        self,
        path: str | Path,
        *,
        index_params: IndexParams | None = None,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._indexes = IndexSet(index_params)
        self._labels = LabelSets()
        """The rows of the filters searched (labels.py), kept in step like the indexes."""
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None
        self._on_migration: MigrationStep | None = None
        """A second connection for searches answered on the caller's thread (`_search_here`)."""
        self._inline = False
        """Whether small calls may run on the caller's thread when the worker is idle (WAL or
        memory journal with ``synchronous`` OFF/NORMAL: a commit never waits for the disk)."""
        self._conn_lock = threading.Lock()
        """Held by whichever thread uses the connection: the worker, or the caller inline."""
        self._queue: list[tuple[Step[Any], int, asyncio.Future[Any], asyncio.AbstractEventLoop]]
        self._queue = []
        """Writes waiting for the worker's next group commit (`_drain`)."""
        self._queue_lock = threading.Lock()
        self._draining = False
        """Whether a `_drain` is submitted to the worker and has not taken the queue yet."""
        self._worker_calls = 0
        """Calls of the caller's loop waiting on the worker: while there are some, writes
        queue for a group commit instead of running inline (other tasks are at work)."""
        self._wal_pages = 0
        self._checkpointing = False
        self._index_lock = threading.Lock()
        """Held by whoever uses or changes the vector indexes: the worker thread (searches,
        builds, writes applied) or a search answered on the caller's thread."""

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        index_params: IndexParams | None = None,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
        on_migration: MigrationStep | None = None,
    ) -> Self:
        """Open (creating it and its directory if needed) and migrate the database at `path`
        (`on_migration` is told each migration it applies)."""
        adapter = cls(
            path, index_params=index_params, busy_timeout=busy_timeout, synchronous=synchronous
        )
        adapter._on_migration = on_migration
        adapter._executor = ThreadPoolExecutor(1, thread_name_prefix=f"sqlite:{adapter.path.name}")
        try:
            await adapter._run(adapter._connect)
        except BaseException:
            adapter._executor.shutdown(wait=False)
            adapter._executor = None
            raise
        return adapter

    def _connect(self) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open SQLite database {self.path}: {exc}") from exc
        try:
            journal = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.execute("PRAGMA foreign_keys=ON")
            migrate(conn, str(self.path), self._on_migration)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StorageError(f"SQLite database {self.path} is unusable: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        if str(self.path) != ":memory:":  # a second :memory: connection is another database
            # timeout 0: a reader that would wait (WAL recovery) falls back to the worker
            self._reader = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            self._reader.execute("PRAGMA query_only=ON")
        self._inline = journal in ("wal", "memory") and self._synchronous in ("OFF", "NORMAL")
        if self._inline and journal == "wal":
            conn.execute("PRAGMA wal_autocheckpoint=0")  # a commit inline must not checkpoint

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise StorageError(f"SQLite adapter for {self.path} is closed (or was never opened)")
        loop = asyncio.get_running_loop()
        self._worker_calls += 1
        try:
            return await loop.run_in_executor(
                self._executor, functools.partial(self._locked, fn, *args)
            )
        finally:
            self._worker_calls -= 1

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._conn_lock:
            return fn(*args)

    @contextlib.contextmanager
    def _here(self) -> Iterator[sqlite3.Connection | None]:
        """The worker's connection for a write on the caller's thread, or None when the write
        must go to the worker: inline writes off, the worker busy (other tasks are at work: let
        writes queue for its group commit), or the connection in use. The worker's own
        connection, not a second one: another connection's commits would empty its page cache
        before each of its scans. While it is held, SQLite's locks are not waited for (another
        process holding one: ``SQLITE_BUSY``, the caller falls back to the worker)."""
        conn = self._conn
        if (
            not self._inline
            or conn is None
            or self._worker_calls
            or self._draining
            or self._queue
            or not self._conn_lock.acquire(blocking=False)
        ):
            yield None
            return
        try:
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                yield conn
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
        finally:
            self._conn_lock.release()

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(f"SQLite adapter for {self.path} is closed")
        return self._conn

    def _write(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` in one ``BEGIN IMMEDIATE`` transaction: commit on return, else roll back."""
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = body(conn)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    def _commit_one(self, step: Step[T]) -> T:
        """Run one write `step` in its own transaction on this thread, then update the indexes
        (the index lock held throughout: see `_commit_group`)."""
        with self._index_lock:
            result, apply = self._write(step)
            apply()
        return result

    async def _submit(self, step: Step[T], rows: int) -> T:
        """Commit write `step` (`rows` rows): at once on this thread when that cannot wait
        (`_write_inline`), else queued for the worker, which commits every write queued
        meanwhile in one transaction (`_commit_group`). Returns once the step's transaction has
        committed: nothing is acknowledged before it is in the WAL."""
        if self._executor is None:
            raise StorageError(f"SQLite adapter for {self.path} is closed (or was never opened)")
        if rows <= INLINE_ROWS:
            done = None
            with self._here() as conn:
                if conn is not None and self._index_lock.acquire(blocking=False):
                    try:
                        done = self._write_inline(conn, step)
                    finally:
                        self._index_lock.release()
            if done is not None:
                self._wrote(rows)
                await asyncio.sleep(0)  # a writer in a loop lets the other tasks run
                return done[0]
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._queue_lock:
            self._queue.append((step, rows, future, loop))
            start = not self._draining
            self._draining = True
        if start:
            self._executor.submit(self._drain)
        result: T = await future
        return result

    def _wrote(self, rows: int) -> None:
        """Count the WAL pages a commit of `rows` rows added (an estimate: the rows, their
        five index entries, the table's version); past `CHECKPOINT_PAGES` the worker runs a
        passive checkpoint (auto-checkpoints are off where calls run inline)."""
        if not self._inline:
            return
        self._wal_pages += 8 + rows
        executor = self._executor
        if self._wal_pages >= CHECKPOINT_PAGES and not self._checkpointing and executor:
            self._checkpointing = True
            executor.submit(self._checkpoint)

    def _write_inline(self, conn: sqlite3.Connection, step: Step[T]) -> tuple[T] | None:
        """`step` in its own transaction on `conn` (the caller's thread, the connection and
        index locks held), without waiting for SQLite's write lock: None if another connection
        holds it (nothing written). The connection never checkpoints on commit (the worker
        does, `_checkpoint`), and in WAL mode with ``synchronous`` NORMAL a commit appends to
        the WAL without an fsync, so this never waits on the disk."""
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in _BUSY:
                return None
            raise
        try:
            result, apply = step(conn)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            conn.execute("ROLLBACK")
            if exc.sqlite_errorcode & 0xFF in _BUSY:
                return None
            raise
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        apply()
        return (result,)

    def _drain(self) -> None:
        """The worker's turn at the write queue: commit every write queued so far as one
        group, then hand each caller its outcome (one wake-up of each caller's loop)."""
        with self._queue_lock:
            jobs, self._queue = self._queue, []
            self._draining = False
        if not jobs:
            return
        with self._conn_lock:
            outcomes = self._commit_group([job[0] for job in jobs])
        self._wrote(sum(job[1] for job in jobs))
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
        for (_step, _rows, future, loop), outcome in zip(jobs, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, delivered in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_deliver, delivered)

    def _commit_group(self, steps: list[Step[Any]]) -> list[Outcome]:
        """Run `steps` in one transaction, each inside a savepoint (a step that fails is rolled
        back alone and gets its error), commit once, then update the indexes step by step.

        Group commit: writes queued while the worker was busy share one ``BEGIN IMMEDIATE`` /
        ``COMMIT``. The index lock is held from the transaction's start to the last index
        update, so a write on the loop's thread (`_write_inline`) never lands between a
        commit and its index update (which would make the index miss a version and rebuild).
        """
        conn = self._db
        outcomes: list[Outcome] = []
        applies: list[Callable[[], None]] = []
        with self._index_lock:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except BaseException as exc:
                return [(False, exc)] * len(steps)
            try:
                if len(steps) == 1:  # no savepoint needed: its failure fails the transaction
                    result, apply = steps[0](conn)
                    outcomes.append((True, result))
                    applies.append(apply)
                else:
                    for step in steps:
                        conn.execute("SAVEPOINT job")
                        try:
                            result, apply = step(conn)
                        except Exception as exc:
                            conn.execute("ROLLBACK TO job")
                            conn.execute("RELEASE job")
                            outcomes.append((False, exc))
                            continue
                        conn.execute("RELEASE job")
                        outcomes.append((True, result))
                        applies.append(apply)
                conn.execute("COMMIT")
            except BaseException as exc:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                return [(False, exc)] * len(steps)
            for apply in applies:
                apply()
        return outcomes

    def _checkpoint(self) -> None:
        """A passive WAL checkpoint on the worker (the connection never checkpoints on commit:
        that would fsync on the caller's thread when the commit runs there)."""
        self._wal_pages = 0
        self._checkpointing = False
        with self._conn_lock, contextlib.suppress(sqlite3.Error, StorageError):
            self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def close(self) -> None:
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._close_conn)
        executor.shutdown(wait=True)
        self._indexes.close()

    def _close_conn(self) -> None:
        with self._index_lock:  # not while a search on the caller's thread reads
            if self._reader is not None:
                self._reader.close()
                self._reader = None

        if self._conn is not None:
            self._conn.close()
            self._conn = None
