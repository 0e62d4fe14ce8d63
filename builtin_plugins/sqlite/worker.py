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
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Self, TypeVar

from loguru import logger

from contracts.storage import StorageError
from host.storekit import IndexParams, IndexSet

from .gather import gather_while_worker_busy
from .labels import LabelSets
from .schema import MigrationStep, migrate

T = TypeVar("T")
_log = logger.bind(plugin="sqlite")

INLINE_ROWS = 64
"""Most rows a write commits on the caller's thread (a millisecond or two); larger writes, and
any write while others are queued, go to the worker thread."""
CHECKPOINT_PAGES = 1000
"""WAL pages (estimated) written inline after which the worker runs a passive checkpoint
(SQLite's own auto-checkpoint threshold)."""
RESTART_AFTER = 4
"""The WAL is made to start over (`_checkpoint`) once it holds this many times
`CHECKPOINT_PAGES` pages."""
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_clock = time.perf_counter

Step = Callable[[sqlite3.Connection], tuple[T, Callable[[], None]]]
"""One write: runs inside an open transaction, returns its result and what updates the vector
indexes once that transaction has committed."""
Outcome = tuple[bool, Any]
"""A queued write's outcome: (True, its result) or (False, its exception)."""


Job = tuple[Step[Any], int, asyncio.Future[Any], asyncio.AbstractEventLoop]
"""A write waiting for its commit: its step, its rows, its caller's future and loop."""


def _busy(exc: BaseException) -> bool:
    """Whether `exc` is SQLite's ``SQLITE_BUSY`` / ``SQLITE_LOCKED`` (another connection holds
    the lock)."""
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF in _BUSY


YIELD_EVERY = 0.001
"""Seconds a task writing with nothing else ready (`_submit`), or reading and searching on the
loop's thread (`_paced`), may go on without yielding to the loop: the loop still polls for I/O
(and runs its other tasks and its timers) at least this often."""


def _alone(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether nothing else is ready to run on `loop` now (asyncio's own loop: its queue of
    ready callbacks is empty): no other task can write before the next poll for I/O. A loop
    that does not show its queue (uvloop) is never taken to be alone."""
    ready = getattr(loop, "_ready", None)
    return ready is not None and not ready


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
        self._queue: list[Job] = []
        """Writes waiting for the worker's next group commit (`_drain`)."""
        self._yielded: tuple[asyncio.AbstractEventLoop | None, float] = (None, 0.0)
        """The loop last known to have turned for this store's caller, and when: a group's
        first writer yielded (`_submit`), a call answered here paced (`_paced`), or a call
        waited for the worker (`_run`)."""
        self._pacing: tuple[asyncio.Task[Any] | None, float] = (None, 0.0)
        """The task that last had a call answered on its loop's thread (`_paced`), and since
        when it has been running without another task having one."""
        self._groups: dict[asyncio.AbstractEventLoop, list[Job]] = {}
        """Per event loop, the small writes of its current turn, committed together on its
        thread by the first of them (`_submit`); no entry while none is gathering. Per loop:
        a group is only ever touched by its own loop's thread."""
        self._waits = True
        """Whether the connection's busy timeout is on (`_wait_for_locks`)."""
        self._queue_lock = threading.Lock()
        self._draining = False
        """Whether a `_drain` is submitted to the worker and has not taken the queue yet."""
        self._worker_calls = 0
        """Calls of the caller's loop waiting on the worker: while there are some, writes
        queue for a group commit instead of running inline (other tasks are at work)."""
        self._wal_pages = 0
        self._checkpointing = False
        self._checkpointer: sqlite3.Connection | None = None
        """The connection the worker checkpoints the WAL with (`_checkpoint`)."""
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
            self.turned(loop)  # waiting for the worker, the loop turned

    async def _paced(self, value: T) -> T:
        """`value`, after one turn of the loop if calls answered on its thread (`_read_here`,
        `_search_here`, small writes) have kept it from turning for `YIELD_EVERY`. Such a call
        never suspends: without this, a task reading or searching in a loop (each answered
        here) would run forever, and every other task, timer and I/O callback of the loop
        would wait for it (a group commit's callers included).

        Counted per task: when another task of the loop had the last such call, this one has
        suspended since its own last one (the loop turned for it: a task resumes in a later
        turn than the one it suspended in), so its run is new and no turn is due yet. With
        many tasks at once (100 rooms) the store's last turn is always over `YIELD_EVERY` ago
        (a loop turn runs every ready task), and each of their reads and searches yielded:
        1.1 yields a message of 100 rooms, and the history provider, made to wait, ran the
        other providers in tasks under a timer; now 0.01. One room's turn yields 1.0 times a
        message instead of 2.1 (its providers' tasks take turns)."""
        loop = asyncio.get_running_loop()
        if not self._turn_due(loop):
            return value
        task, now = asyncio.current_task(loop), _clock()
        last, since = self._pacing
        if last is task and now - since < YIELD_EVERY:
            return value
        if last is not task and last is not None and last.get_loop() is loop:
            self._pacing = (task, now)
            self._yielded = (loop, now)
            return value
        self._pacing = (task, now)  # the others' calls meanwhile: this one came last
        await asyncio.sleep(0)
        self.turned(loop)
        self._pacing = (task, _clock())
        return value

    def worker_busy(self) -> bool:
        """Whether the worker has this process's calls or writes in hand or queued, or the
        connection is in use (the caller's thread committing a group)."""
        return bool(self._worker_calls or self._draining or self._queue or self._conn_lock.locked())

    def indexes_busy(self) -> bool:
        """Whether someone uses or changes the vector indexes now (`_index_lock`)."""
        return self._index_lock.locked()

    def turned(self, loop: asyncio.AbstractEventLoop) -> None:
        """Note that `loop` has just turned for this store's caller (`_paced` counts from it)."""
        self._yielded = (loop, _clock())

    def _turn_due(self, loop: asyncio.AbstractEventLoop) -> bool:
        """Whether `loop` has not turned for this store's caller for `YIELD_EVERY` (or this
        store has not seen it turn yet): calls answered on its thread then let it turn."""
        last = self._yielded
        return last[0] is not loop or _clock() - last[1] >= YIELD_EVERY

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._conn_lock:
            self._wait_for_locks(True)
            return fn(*args)

    def _on_writes_conn(self, statements: Callable[[sqlite3.Connection], T]) -> tuple[T] | None:
        """`statements` run on the caller's thread on the writes' connection, when the worker
        is not using it and writes commit inline (`_inline`: it holds no transaction open
        then), without waiting for SQLite's locks; None when it is not free now. That
        connection's page cache survives this store's own writes, where the read-only
        connection's is emptied after each (SQLite drops a connection's cache when another
        connection has written): `_read_here` and `_search_here` read there first."""
        conn = self._conn
        if conn is None or not self._inline or not self._conn_lock.acquire(blocking=False):
            return None
        try:
            conn = self._conn  # closed meanwhile (`_close_conn` takes the lock)
            if conn is None:
                return None
            self._wait_for_locks(False)
            return (statements(conn),)
        finally:
            self._conn_lock.release()

    def _wait_for_locks(self, wait: bool) -> None:
        """Whether the connection waits (its busy timeout) for SQLite's locks, or not at all
        (a commit on the caller's thread: ``SQLITE_BUSY`` sends it to the worker instead). Set
        only when it changes (the connection lock held): a PRAGMA costs a statement."""
        conn = self._conn
        if conn is None or self._waits is wait:
            return
        conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000) if wait else 0}")
        self._waits = wait

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
            self._apply([apply])
        return result

    def _apply(self, applies: list[Callable[[], None]]) -> None:
        """Bring the vector indexes and label sets along the writes just committed (the index
        lock held). They are caches of the file: one that cannot be (faiss out of memory) is
        no reason to fail writes that stand, or to leave their callers unanswered (a group's
        outcomes are delivered after this); every index and set is dropped instead, and
        rebuilt from the file when next searched."""
        try:
            for apply in applies:
                apply()
        except Exception as exc:
            self._indexes.drop()
            self._labels.drop()
            _log.error(
                "sqlite: {}: vector indexes dropped, rebuilt at the next search (updating them"
                " after a write failed: {!r})",
                self.path,
                exc,
            )

    async def _submit(self, step: Step[T], rows: int) -> T:
        """Commit write `step` (`rows` rows) and return its result once its transaction has
        committed: nothing is acknowledged before it is in the WAL.

        A small write (up to `INLINE_ROWS` rows, inline writes on) joins this turn of the loop's
        group: its first writer yields once, so that the writes other tasks make meanwhile join
        in, then commits them all in one transaction on this thread (`_commit_here`): with many
        tasks at work (100 rooms) several writes share one commit. With nothing else ready to
        run (`_alone`: one room's messages) it commits at once, without the yield (a loop turn
        and a poll for I/O, ~20 us: one room's message paid it twice), unless the loop last
        turned for a write over `YIELD_EVERY` ago: a task writing in a loop still lets the
        loop poll for I/O and run its timers. Larger writes, and a group that cannot commit
        here now, are queued for the worker, which commits every write queued meanwhile in
        one transaction (`_drain`)."""
        if self._executor is None:
            raise StorageError(f"SQLite adapter for {self.path} is closed (or was never opened)")
        loop = asyncio.get_running_loop()
        lone = rows <= INLINE_ROWS and self._inline and loop not in self._groups
        if lone and not self._turn_due(loop) and _alone(loop):
            # alone (one room's message): what the group below would do with no yield and
            # nobody to join it, without its future, its group or its delivery
            outcomes = self._try_here([step])
            if outcomes is not None:
                self._wrote(rows)
                ok, value = outcomes[0]
                if ok:
                    done: T = value
                    return done
                raise value
        future: asyncio.Future[Any] = loop.create_future()
        job = (step, rows, future, loop)
        if rows > INLINE_ROWS or not self._inline:
            self._enqueue([job])
        elif (group := self._groups.get(loop)) is not None:  # another task gathers: join it
            group.append(job)
        else:
            self._groups[loop] = group = [job]
            try:
                if self._turn_due(loop) or not _alone(loop):
                    await asyncio.sleep(0)  # the writes other tasks make meanwhile join the group
                    self.turned(loop)
                await gather_while_worker_busy(self, loop)
            finally:  # cancelled meanwhile, the group still commits (as a queued write would)
                del self._groups[loop]
                self._commit_here(group)
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved, even when this caller is gone (cancelled)
        result: T = await future  # done already when committed here: no further wake-up
        return result

    def _commit_here(self, jobs: list[Job]) -> None:
        """Commit `jobs` in one transaction on this thread, and deliver their outcomes; or
        queue them for the worker when they cannot commit here without waiting: the worker
        busy or writes queued for it (order is kept: these go after them), the connection or
        the indexes in use, another process holding SQLite's write lock (``SQLITE_BUSY``).
        The worker's own connection, not a second one: another connection's commits would
        empty its page cache before each of its scans. It never checkpoints on commit (the
        worker does, `_checkpoint`), and in WAL mode with ``synchronous`` NORMAL a commit
        appends to the WAL without an fsync, so this never waits on the disk."""
        outcomes = self._try_here([job[0] for job in jobs])
        if outcomes is None:
            self._enqueue(jobs)
            return
        self._wrote(sum(job[1] for job in jobs))
        _deliver([(job[2], outcome) for job, outcome in zip(jobs, outcomes, strict=True)])

    def _try_here(self, steps: list[Step[Any]]) -> list[Outcome] | None:
        """`steps` committed in one transaction on this thread (`_commit_steps`); None, nothing
        written, when they cannot be without waiting (see `_commit_here`): the worker busy,
        the writes' connection or the indexes in use."""
        if self.worker_busy():
            return None

        def commit(conn: sqlite3.Connection) -> list[Outcome] | None:
            if not self._index_lock.acquire(blocking=False):
                return None
            try:
                return self._commit_steps(conn, steps, here=True)
            finally:
                self._index_lock.release()

        done = self._on_writes_conn(commit)
        return None if done is None else done[0]

    def _enqueue(self, jobs: list[Job]) -> None:
        """Queue `jobs` for the worker's next group commit (`_drain`)."""
        executor = self._executor
        if executor is None:
            closed = StorageError(f"SQLite adapter for {self.path} is closed")
            _deliver([(job[2], (False, closed)) for job in jobs])
            return
        with self._queue_lock:
            self._queue.extend(jobs)
            start = not self._draining
            self._draining = True
        if start:
            executor.submit(self._drain)

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

    def _drain(self) -> None:
        """The worker's turn at the write queue: commit every write queued so far as one
        group, then hand each caller its outcome (one wake-up of each caller's loop)."""
        with self._queue_lock:
            jobs, self._queue = self._queue, []
            self._draining = False
        if not jobs:
            return
        with self._conn_lock:
            self._wait_for_locks(True)
            outcomes = self._commit_group([job[0] for job in jobs])
        self._wrote(sum(job[1] for job in jobs))
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Outcome]]] = {}
        for (_step, _rows, future, loop), outcome in zip(jobs, outcomes, strict=True):
            by_loop.setdefault(loop, []).append((future, outcome))
        for loop, delivered in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits
                loop.call_soon_threadsafe(_deliver, delivered)

    def _commit_group(self, steps: list[Step[Any]]) -> list[Outcome]:
        """`steps` committed by the worker as one group (`_commit_steps`)."""
        conn = self._conn
        if conn is None:
            return [(False, StorageError(f"SQLite adapter for {self.path} is closed"))] * len(steps)
        with self._index_lock:
            outcomes = self._commit_steps(conn, steps, here=False)
        assert outcomes is not None  # only a commit here gives up on a busy database
        return outcomes

    def _commit_steps(
        self, conn: sqlite3.Connection, steps: list[Step[Any]], *, here: bool
    ) -> list[Outcome] | None:
        """Run `steps` in one transaction, commit once, then update the indexes step by step;
        each step's outcome. A step that fails is rolled back alone and gets its error: the
        steps run first without savepoints (2 statements each), and only when one fails are
        they run again each inside a savepoint of its own. `here` (the caller's thread, locks
        not waited for): None when SQLite's write lock is held by another connection, nothing
        written.

        Group commit: several writes share one ``BEGIN IMMEDIATE`` / ``COMMIT`` (and the WAL
        pages they touch in common are written once). The caller holds the index lock from
        the transaction's start to the last index update, so no other write lands between a
        commit and its index update (which would make the index miss a version and rebuild).
        """
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            if here and _busy(exc):
                return None
            return [(False, exc)] * len(steps)
        outcomes: list[Outcome]
        applies: list[Callable[[], None]]
        try:
            if len(steps) == 1:  # no savepoint needed: its failure fails the transaction
                result, apply = steps[0](conn)
                outcomes, applies = [(True, result)], [apply]
            else:
                conn.execute("SAVEPOINT steps")
                try:
                    done = [step(conn) for step in steps]
                except Exception as exc:
                    if here and _busy(exc):
                        raise
                    conn.execute("ROLLBACK TO steps")
                    outcomes, applies = self._each_in_savepoint(conn, steps, here)
                else:
                    outcomes = [(True, result) for result, _ in done]
                    applies = [apply for _, apply in done]
                conn.execute("RELEASE steps")
            conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if here and _busy(exc):
                return None
            return [(False, exc)] * len(steps)
        self._apply(applies)
        return outcomes

    @staticmethod
    def _each_in_savepoint(
        conn: sqlite3.Connection, steps: list[Step[Any]], here: bool
    ) -> tuple[list[Outcome], list[Callable[[], None]]]:
        """`steps` run each inside a savepoint: one that fails is rolled back alone."""
        outcomes: list[Outcome] = []
        applies: list[Callable[[], None]] = []
        for step in steps:
            conn.execute("SAVEPOINT job")
            try:
                result, apply = step(conn)
            except Exception as exc:
                if here and _busy(exc):
                    raise
                conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
                outcomes.append((False, exc))
                continue
            conn.execute("RELEASE job")
            outcomes.append((True, result))
            applies.append(apply)
        return outcomes, applies

    def _checkpoint(self) -> None:
        """A passive WAL checkpoint on the worker (the connection never checkpoints on commit:
        that would sync on the caller's thread when the commit runs there), made on a
        connection of its own (`_copy_wal`): writes go on meanwhile, where one made on the
        writes' connection held them up for milliseconds (it copies a thousand pages into the
        database and syncs it). A checkpoint racing the writes may never end with every page
        copied, and the WAL only starts over after one that does: past `RESTART_AFTER` times
        `CHECKPOINT_PAGES` pages, those written meanwhile are copied with the connection held."""
        self._wal_pages = 0
        self._checkpointing = False
        if self._reader is None:  # no WAL (an in-memory database), or closed
            return
        frames = 0
        with contextlib.suppress(sqlite3.Error):
            frames = self._copy_wal()
        if frames >= RESTART_AFTER * CHECKPOINT_PAGES:
            with self._conn_lock, contextlib.suppress(sqlite3.Error, StorageError):
                self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _copy_wal(self) -> int:
        """Copy the WAL's pages into the database from a connection of the worker's own; the
        WAL's length in pages."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
        _busy, frames, _copied = self._checkpointer.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        return int(frames)

    async def close(self) -> None:
        if self._executor is None:
            return
        executor, self._executor = self._executor, None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(executor, self._close_conn)
        executor.shutdown(wait=True)
        self._indexes.close()

    def _close_conn(self) -> None:
        with self._conn_lock:  # not while a group commits on the caller's thread
            if self._checkpointer is not None:
                self._checkpointer.close()
                self._checkpointer = None
            with self._index_lock:  # not while a search on the caller's thread reads
                if self._reader is not None:
                    self._reader.close()
                    self._reader = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None
