"""`SqliteAdapter`: the default `DatabaseAdapter`, one SQLite file in WAL mode.

Database calls run on one dedicated worker thread (stdlib sqlite3 blocks), so the event loop never
waits on disk. Writes are ``BEGIN IMMEDIATE`` transactions: a batch commits whole or rolls back
whole, and a call returns only once its transaction has committed. Writes queued while the worker
is busy share one transaction (group commit: a savepoint each, so a failing batch is rolled back
alone and the others commit). A small write while the worker is idle commits at once on the
caller's thread, on the worker's connection (under a lock), without waiting for SQLite's lock
(another process holding it: the write goes to the worker); the connection never checkpoints on
commit (the worker does): in WAL mode with ``synchronous`` NORMAL a commit appends to the WAL
without an fsync, and the hop to the worker and back costs more than the write. Small reads (a
room's history) are answered there too, from a read-only connection, as approximate searches are
(`_search_here`).

Vector indexes (host.vectors) are built lazily on the first ``ivf``/``hnsw``/``flat`` search of a
table and kept in step with this adapter's writes; each table carries a version bumped by every
write, so an index that missed a write (another process sharing the file) is rebuilt. They are not
persisted: the table is the only source of truth, and a rebuild (seconds for 100k rows) is cheaper
than keeping a second file consistent across crashes and writers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, SafeUUID

import numpy as np

from contracts.memory import DEFAULT_TABLE, Memory, MemoryQuery, MemoryUpdate
from contracts.storage import (
    DEFAULT_SEARCH,
    BatchError,
    DimensionMismatchError,
    DuplicateMemoryError,
    IndexType,
    RoomSummary,
    SearchParams,
    StorageError,
    sort_rooms,
)
from contracts.vector import Vector
from host.storekit import (
    F64,
    IndexParams,
    IndexSet,
    VectorIndex,
    above_threshold,
    as_vector,
    check_dimension,
    check_index_type,
    check_search,
    check_table_name,
    content_from_json,
    content_json,
    float32_bytes,
    metadata_from_json,
    metadata_json,
    query_vector,
    trusted_memory,
    unbatched,
)

from .schema import MigrationStep, migrate

__all__ = ["SqliteAdapter"]

T = TypeVar("T")
A = TypeVar("A")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COLUMNS = (
    "seq, id, table_name, agent_id, entity_id, room_id, created_at, content, metadata,"
    " embedding, is_unique"
)
_INSERT = (
    "INSERT INTO memories (id, table_name, agent_id, entity_id, room_id, created_at, content,"
    " metadata, embedding, is_unique) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_COLUMNS_NO_EMBEDDING = _COLUMNS.replace(" embedding,", " NULL,")  # vectors left unread
# the table's version as a last column: rows and version from one statement, one snapshot
_VERSION = ", (SELECT version FROM memory_tables WHERE table_name = ?)"
_IN_MARKS = 256
"""Up to this many seqs are read with ``IN (?, ...)``, more as one JSON list (``json_each``):
the virtual table cost ~40 us more for a search's 10 rows, and the statement for each count is
prepared once (sqlite3's statement cache)."""


@functools.lru_cache(maxsize=64)
def _by_seqs_sql(count: int, *, versioned: bool, vectors: bool) -> str:
    """``SELECT {_COLUMNS}`` of `count` seqs (the version last if `versioned`: its table is the
    first parameter), the embedding column NULL unless `vectors`."""
    columns = _COLUMNS if vectors else _COLUMNS_NO_EMBEDDING
    if versioned:
        columns += _VERSION
    seqs = "SELECT value FROM json_each(?)" if count > _IN_MARKS else ",".join("?" * count)
    return f"SELECT {columns} FROM memories WHERE seq IN ({seqs})"


def _seq_params(labels: list[int]) -> list[Any] | tuple[str]:
    return labels if len(labels) <= _IN_MARKS else (json.dumps(labels),)


_EVERYTHING = MemoryQuery()
_CHUNK = 500  # ids per IN (...) list, well under SQLite's variable limit
embedding_blob = float32_bytes  # float32 little-endian blob of an embedding
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


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact, no float rounding)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime `micros` microseconds after the epoch."""
    return _EPOCH + timedelta(microseconds=micros)


@functools.lru_cache(maxsize=4096)
def _uuid(raw: bytes) -> UUID:
    """UUIDs of agents, rooms and entities repeat across rows: parse each once."""
    return UUID(bytes=raw)


def where_clause(query: MemoryQuery, *, keyset: bool = True) -> tuple[str, list[Any]]:
    """SQL ``WHERE`` text and parameters for `query`'s filters (and its cursor if `keyset`)."""
    parts: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("agent_id", query.agent_id),
        ("entity_id", query.entity_id),
        ("room_id", query.room_id),
    ):
        if value is not None:
            parts.append(f"{column} = ?")
            params.append(value.bytes)
    if query.table_name is not None:
        parts.append("table_name = ?")
        params.append(query.table_name)
    if query.start is not None:
        parts.append("created_at >= ?")
        params.append(to_micros(query.start))
    if query.end is not None:
        parts.append("created_at < ?")
        params.append(to_micros(query.end))
    if query.unique is not None:
        parts.append("is_unique = ?")
        params.append(int(query.unique))
    if keyset and query.after is not None:
        parts.append(f"(created_at, id) {'>' if query.order == 'asc' else '<'} (?, ?)")
        params.extend((to_micros(query.after.created_at), query.after.id.bytes))
    return (" WHERE " + " AND ".join(parts)) if parts else "", params


_vector = Vector.from_bytes  # the stored blob itself, no copy: ~0.3 us where floats took ~10
_new = object.__new__
_set = object.__setattr__
_from_bytes = int.from_bytes
_UNKNOWN = SafeUUID.unknown


def _row_uuid(raw: bytes) -> UUID:
    """``UUID(bytes=raw)`` without its argument checks (16 bytes from our own column)."""
    value = _new(UUID)
    _set(value, "int", _from_bytes(raw, "big"))
    _set(value, "is_safe", _UNKNOWN)
    return value


def row_to_memory(row: tuple[Any, ...]) -> Memory:
    """A `Memory` from a ``SELECT {_COLUMNS}`` row, columns past those ignored (trusted data:
    no re-validation)."""
    _, raw_id, table, agent, entity, room, created, content, metadata, embedding, unique = row[:11]
    return trusted_memory(
        {
            "id": _row_uuid(raw_id),
            "agent_id": _uuid(agent),
            "entity_id": _uuid(entity),
            "room_id": _uuid(room),
            "table_name": table,
            "content": content_from_json(content),
            "embedding": None if embedding is None else _vector(embedding),
            "metadata": metadata_from_json(metadata),
            "created_at": from_micros(created),
            "unique": unique == 1,
        }
    )


class SqliteAdapter:
    """A `DatabaseAdapter` over one SQLite file. Create with ``await SqliteAdapter.open(path)``."""

    backend = "sqlite"

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
    ) -> SqliteAdapter:
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

    # -- tables: dimension and version -------------------------------------------------------

    @staticmethod
    def _table_state(conn: sqlite3.Connection, table: str) -> tuple[int | None, int]:
        row = conn.execute(
            "SELECT dimension, version FROM memory_tables WHERE table_name = ?", (table,)
        ).fetchone()
        return (None, 0) if row is None else (row[0], row[1])

    @staticmethod
    def _bump(conn: sqlite3.Connection, table: str, dimension: int | None) -> int:
        row = conn.execute(
            "INSERT INTO memory_tables (table_name, dimension, version) VALUES (?, ?, 1)"
            " ON CONFLICT (table_name) DO UPDATE SET version = version + 1,"
            " dimension = COALESCE(dimension, excluded.dimension) RETURNING version",
            (table, dimension),
        ).fetchone()
        return int(row[0])

    # -- writes -------------------------------------------------------------------------------

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        return await unbatched(self.create_memories_batch([memory], table_name))

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        if table_name is not None:
            check_table_name(table_name)
        batch = list(memories)
        if not batch:
            return []
        return await self._submit(
            functools.partial(self._replace_step, [], batch, table_name), len(batch)
        )

    def _create_batch(self, batch: list[Memory], override: str | None) -> list[UUID]:
        return self._replace_batch([], batch, override)

    def _replace_batch(
        self, ids: list[UUID], batch: list[Memory], override: str | None
    ) -> list[UUID]:
        """Delete `ids` and insert `batch` in one transaction, then update the indexes once
        (on the calling thread: the worker's, or a test's)."""
        return self._commit_one(functools.partial(self._replace_step, ids, batch, override))

    def _replace_step(
        self, ids: list[UUID], batch: list[Memory], override: str | None, conn: sqlite3.Connection
    ) -> tuple[list[UUID], Callable[[], None]]:
        """Delete `ids` and insert `batch` inside the caller's transaction; the ids, and what
        brings the indexes up to date once that transaction has committed."""
        state: dict[str, tuple[int | None, int]] = {}  # table -> (dimension, version)
        removed: dict[str, list[int]] = {}  # table -> seqs deleted
        added: dict[str, tuple[int, int]] = {}  # table -> (version before, version after)
        vectors: dict[str, tuple[list[int], Any] | None] = {}  # table -> rows for its indexes
        self._delete_rows(conn, ids, removed)
        for table in removed:
            state[table] = self._table_state(conn, table)
        rows: list[tuple[Any, ...]] = []
        seen: dict[UUID, int] = {}
        for index, memory in enumerate(batch):
            try:
                table = override or memory.table_name
                if table not in state:
                    dim, version = self._table_state(conn, table)
                    state[table] = (dim, version)
                dim, version = state[table]
                blob = None
                if memory.embedding is not None:
                    got = check_dimension(table, dim, len(memory.embedding))
                    state[table] = (got, version)
                    blob = embedding_blob(memory.embedding)
                if memory.id in seen:
                    raise DuplicateMemoryError(memory.id)
                seen[memory.id] = index
                rows.append(
                    (
                        memory.id.bytes,
                        table,
                        memory.agent_id.bytes,
                        memory.entity_id.bytes,
                        memory.room_id.bytes,
                        to_micros(memory.created_at),
                        content_json(memory.content),
                        metadata_json(memory.metadata),
                        blob,
                        int(memory.unique),
                    )
                )
            except (StorageError, TypeError, ValueError) as exc:
                # Rows are checked against existing ids only by the INSERT below; report an
                # earlier duplicate first, as the other backends do.
                earlier = self._first_existing(conn, batch[:index], None)
                if earlier is not None:
                    raise earlier from None
                raise BatchError("create_memories_batch", index, exc) from exc
        # the seqs this batch writes are above it (read also for the errors' "stored before")
        before_seq = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM memories").fetchone()[0]
        try:
            conn.executemany(_INSERT, rows)
        except sqlite3.IntegrityError as exc:
            error = self._first_existing(conn, batch, before_seq)
            raise error or BatchError("create_memories_batch", 0, StorageError(str(exc))) from exc
        for table, (dim, version) in state.items():
            added[table] = (version, self._bump(conn, table, dim))
            if self._indexes.has(table):  # (the index lock is held through the write)
                vectors[table] = self._vectors_since(conn, table, before_seq, dim)

        def apply() -> None:
            for table, (old, new) in added.items():
                self._indexes.apply(
                    table, old, new, removed=removed.get(table, ()), added=vectors.get(table)
                )

        return [m.id for m in batch], apply

    @staticmethod
    def _delete_rows(
        conn: sqlite3.Connection, ids: list[UUID], removed: dict[str, list[int]]
    ) -> int:
        """Delete `ids` inside the caller's transaction, noting each table's deleted seqs."""
        count = 0
        for start in range(0, len(ids), _CHUNK):
            chunk = [i.bytes for i in ids[start : start + _CHUNK]]
            marks = ",".join("?" * len(chunk))
            for seq, table in conn.execute(
                f"DELETE FROM memories WHERE id IN ({marks}) RETURNING seq, table_name", chunk
            ).fetchall():
                removed.setdefault(table, []).append(seq)
                count += 1
        return count

    def _first_existing(
        self, conn: sqlite3.Connection, batch: list[Memory], before_seq: int | None
    ) -> BatchError | None:
        """The error for the first row of `batch` whose id is stored (with seq <= `before_seq`,
        i.e. stored before this batch, when given); None if there is none."""
        existing: set[bytes] = set()
        limit = "" if before_seq is None else f"seq <= {int(before_seq)} AND "
        for start in range(0, len(batch), _CHUNK):
            chunk = [m.id.bytes for m in batch[start : start + _CHUNK]]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT id FROM memories WHERE {limit}id IN ({marks})"
            existing.update(r[0] for r in conn.execute(sql, chunk))
        for index, memory in enumerate(batch):
            if memory.id.bytes in existing:
                return BatchError("create_memories_batch", index, DuplicateMemoryError(memory.id))
        return None

    @staticmethod
    def _vectors_since(
        conn: sqlite3.Connection, table: str, after_seq: int, dim: int | None
    ) -> tuple[list[int], Any] | None:
        if dim is None:
            return None
        rows = conn.execute(
            "SELECT seq, embedding FROM memories WHERE table_name = ? AND seq > ?"
            " AND embedding IS NOT NULL ORDER BY seq",
            (table, after_seq),
        ).fetchall()
        return _to_matrix(rows, dim)

    async def update_memory(self, update: MemoryUpdate) -> bool:
        return await unbatched(self.update_memories_batch([update]))

    async def update_memories_batch(self, updates: Sequence[MemoryUpdate]) -> list[bool]:
        batch = list(updates)
        if not batch:
            return []
        return await self._submit(functools.partial(self._update_step, batch), len(batch))

    def _update_batch(self, batch: list[MemoryUpdate]) -> list[bool]:
        return self._commit_one(functools.partial(self._update_step, batch))

    def _update_step(
        self, batch: list[MemoryUpdate], conn: sqlite3.Connection
    ) -> tuple[list[bool], Callable[[], None]]:
        tables: dict[str, tuple[int | None, int]] = {}
        # table -> seq -> its new embedding blob (None: cleared), the last update of a row winning
        vectors: dict[str, dict[int, bytes | None]] = {}
        versions: dict[str, tuple[int, int]] = {}

        def body() -> list[bool]:
            found: list[bool] = []
            for index, update in enumerate(batch):
                try:
                    row = conn.execute(
                        "SELECT seq, table_name FROM memories WHERE id = ?", (update.id.bytes,)
                    ).fetchone()
                    if row is None:
                        found.append(False)
                        continue
                    seq, table = row
                    if table not in tables:
                        tables[table] = self._table_state(conn, table)
                    dim, version = tables[table]
                    sets: list[str] = []
                    params: list[Any] = []
                    changes = update.changes
                    if "content" in changes and update.content is not None:
                        sets.append("content = ?")
                        params.append(content_json(update.content))
                    if "metadata" in changes and update.metadata is not None:
                        sets.append("metadata = ?")
                        params.append(metadata_json(update.metadata))
                    if "unique" in changes and update.unique is not None:
                        sets.append("is_unique = ?")
                        params.append(int(update.unique))
                    if "embedding" in changes:
                        blob = None
                        if update.embedding is not None:
                            got = check_dimension(table, dim, len(update.embedding))
                            tables[table] = (got, version)
                            blob = embedding_blob(update.embedding)
                        sets.append("embedding = ?")
                        params.append(blob)
                        vectors.setdefault(table, {})[seq] = blob
                    if sets:
                        conn.execute(
                            f"UPDATE memories SET {', '.join(sets)} WHERE seq = ?", (*params, seq)
                        )
                        versions.setdefault(table, (version, 0))
                    found.append(True)
                except (StorageError, TypeError, ValueError) as exc:
                    raise BatchError("update_memories_batch", index, exc) from exc
            for table, (old, _) in versions.items():
                versions[table] = (old, self._bump(conn, table, tables[table][0]))
            return found

        result = body()
        return result, functools.partial(self._apply_updates, versions, tables, vectors)

    def _apply_updates(
        self,
        versions: dict[str, tuple[int, int]],
        tables: dict[str, tuple[int | None, int]],
        vectors: dict[str, dict[int, bytes | None]],
    ) -> None:
        for table, (old, new) in versions.items():
            dim = tables[table][0]
            changed = vectors.get(table, {})
            kept = {seq: blob for seq, blob in changed.items() if blob is not None}
            added = None
            if kept and dim is not None:
                matrix = np.frombuffer(b"".join(kept.values()), "<f4").reshape(-1, dim).copy()
                added = (list(kept), matrix)
            self._indexes.apply(table, old, new, removed=changed, added=added)

    async def delete_memory(self, memory_id: UUID) -> bool:
        return await self.delete_memories_batch([memory_id]) == 1

    async def delete_memories_batch(self, memory_ids: Sequence[UUID]) -> int:
        ids = list(dict.fromkeys(memory_ids))
        if not ids:
            return 0
        return await self._submit(functools.partial(self._delete_step, ids), len(ids))

    async def replace_memories(
        self,
        delete_ids: Sequence[UUID],
        memories: Sequence[Memory],
        table_name: str | None = None,
    ) -> list[UUID]:
        if table_name is not None:
            check_table_name(table_name)
        ids, batch = list(dict.fromkeys(delete_ids)), list(memories)
        if not ids and not batch:
            return []
        return await self._submit(
            functools.partial(self._replace_step, ids, batch, table_name), len(ids) + len(batch)
        )

    def _delete_batch(self, ids: list[UUID]) -> int:
        return self._commit_one(functools.partial(self._delete_step, ids))

    def _delete_step(
        self, ids: list[UUID], conn: sqlite3.Connection
    ) -> tuple[int, Callable[[], None]]:
        removed: dict[str, list[int]] = {}
        versions: dict[str, tuple[int, int]] = {}
        count = self._delete_rows(conn, ids, removed)
        for table in removed:
            dim, version = self._table_state(conn, table)
            versions[table] = (version, self._bump(conn, table, dim))

        def apply() -> None:
            for table, (old, new) in versions.items():
                self._indexes.apply(table, old, new, removed=removed[table])

        return count, apply

    # -- reads --------------------------------------------------------------------------------

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        return await self._run(self._get_one, memory_id)

    def _get_one(self, memory_id: UUID) -> Memory | None:
        row = self._db.execute(
            f"SELECT {_COLUMNS} FROM memories WHERE id = ?", (memory_id.bytes,)
        ).fetchone()
        return None if row is None else row_to_memory(row)

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        if query.limit is not None and query.limit <= INLINE_ROWS:
            found = self._read_here(self._get_many, query)
            if found is not None:
                return found[0]
        return await self._run(self._get_many, query)

    def _read_here(self, read: Callable[[A, sqlite3.Connection], T], arg: A) -> tuple[T] | None:
        """A small read (a room's history: a few rows) answered on the caller's thread from
        the read-only connection, as `_search_here` answers searches: the hop to the worker
        and back costs more than the read. That connection never waits for a lock (timeout 0:
        a WAL reader waits for nothing but another process's recovery) and is not the
        worker's, whose page cache stays warm for its scans. None when the read must go to
        the worker (the reader in use or closing, a busy database)."""
        reader = self._reader
        if reader is None or not self._index_lock.acquire(blocking=False):
            return None
        try:
            return (read(arg, reader),)
        except sqlite3.OperationalError:
            return None
        finally:
            self._index_lock.release()

    def _get_many(self, query: MemoryQuery, conn: sqlite3.Connection | None = None) -> list[Memory]:
        where, params = where_clause(query)
        direction = "ASC" if query.order == "asc" else "DESC"
        columns = _COLUMNS if query.with_embeddings else _COLUMNS_NO_EMBEDDING
        sql = (
            f"SELECT {columns} FROM memories{where} ORDER BY created_at {direction}, id {direction}"
        )
        if query.limit is not None:
            sql += " LIMIT ?"
            params.append(query.limit)
        return [row_to_memory(row) for row in (conn or self._db).execute(sql, params)]

    async def count_memories(self, query: MemoryQuery | None = None) -> int:
        return await self._run(self._count, query or MemoryQuery())

    def _count(self, query: MemoryQuery) -> int:
        where, params = where_clause(query)
        return int(self._db.execute(f"SELECT COUNT(*) FROM memories{where}", params).fetchone()[0])

    async def room_summaries(self, query: MemoryQuery | None = None) -> list[RoomSummary]:
        return await self._run(self._rooms, query or MemoryQuery())

    def _rooms(self, query: MemoryQuery) -> list[RoomSummary]:
        where, params = where_clause(query, keyset=False)
        rows = self._db.execute(
            f"SELECT room_id, COUNT(*), MAX(created_at) FROM memories{where} GROUP BY room_id",
            params,
        )
        return sort_rooms(
            [RoomSummary(_uuid(room), int(count), from_micros(last)) for room, count, last in rows]
        )

    async def reset_embeddings(self, table_name: str) -> int:
        check_table_name(table_name)
        return await self._run(self._reset_embeddings, table_name)

    def _reset_embeddings(self, table: str) -> int:
        def body(conn: sqlite3.Connection) -> int:
            cleared = conn.execute(
                "UPDATE memories SET embedding = NULL"
                " WHERE table_name = ? AND embedding IS NOT NULL",
                (table,),
            ).rowcount
            conn.execute(
                "UPDATE memory_tables SET dimension = NULL, version = version + 1"
                " WHERE table_name = ?",
                (table,),
            )
            return int(cleared)

        with self._index_lock:
            cleared = self._write(body)
            self._indexes.drop(table)
        return cleared

    async def embedding_dimension(self, table_name: str) -> int | None:
        found = self._read_here(self._dimension, table_name)
        if found is not None:
            return found[0]
        return await self._run(self._dimension, table_name)

    def _dimension(self, table: str, conn: sqlite3.Connection | None = None) -> int | None:
        return self._table_state(conn or self._db, table)[0]

    async def search_memories(
        self,
        embedding: Sequence[float],
        query: MemoryQuery | None = None,
        params: SearchParams | None = None,
    ) -> list[tuple[Memory, float]]:
        params = params or DEFAULT_SEARCH
        kind = check_search(params)
        vector = as_vector(embedding)  # a copy: the caller may reuse its sequence meanwhile
        args = (vector, query or _EVERYTHING, params)
        if kind != "flat" and self._executor is not None:
            found = self._search_here(*args)
            if found is not None:
                return found
        return await self._run(self._search, *args)

    def _search_here(
        self, embedding: F64, query: MemoryQuery, params: SearchParams
    ) -> list[tuple[Memory, float]] | None:
        """An approximate search answered on the caller's thread (the event loop), None when it
        must go to the worker thread instead.

        The hop to the worker and back costs 0.1-0.2 ms on a quiet machine and several ms on a
        loaded one, more than the HNSW search itself; an ANN search over an index already built
        and current needs no disk write, only a read snapshot of a few rows. So when the reader
        connection, the index lock and a current index are all at hand at once, it runs here,
        on its own connection in its own read transaction (WAL: readers never wait on the
        writer). Whatever would wait or change an index (the worker busy with the indexes, a
        missing or stale index, a build to start or install, a locked database) goes to the
        worker as before."""
        reader = self._reader
        if reader is None or not self._index_lock.acquire(blocking=False):
            return None
        try:
            if query.filters_rows:  # the allowed rows and the index at one snapshot
                return self._search_on(reader, embedding, query, params, here=True)
            return self._search_unfiltered(
                reader, embedding, query.table_name or DEFAULT_TABLE, params
            )
        except sqlite3.OperationalError:
            return None  # busy or locked: the worker waits its busy_timeout
        finally:
            self._index_lock.release()

    def _search(
        self, embedding: F64, query: MemoryQuery, params: SearchParams
    ) -> list[tuple[Memory, float]]:
        with self._index_lock:
            found = self._search_on(self._db, embedding, query, params, here=False)
        assert found is not None  # only a search `here` gives up
        return found

    def _search_unfiltered(
        self, conn: sqlite3.Connection, embedding: F64, table: str, params: SearchParams
    ) -> list[tuple[Memory, float]] | None:
        """An unfiltered search on the index as it stands, its rows read by one statement that
        also reads the table's version: when that is the index's version, the rows and the
        index are of one snapshot (else None: the worker searches again). One statement where
        the snapshot of `_search_on` costs four (BEGIN, the table's state, the rows, COMMIT)."""
        index = self._indexes.latest(table, params.index_type)
        if index is None or len(embedding) != index.dim:
            return None  # the worker builds it, or names the dimension mismatch
        labels, scores = index.search(
            query_vector(embedding, index.dim),
            params.k,
            probes=params.probes,
            ef_search=params.ef_search,
        )
        labels, scores = above_threshold(labels, scores, params.threshold)
        if not labels:
            return None  # nothing read to check the version against: the worker answers
        sql = _by_seqs_sql(len(labels), versioned=True, vectors=params.with_embeddings)
        rows = {r[0]: r for r in conn.execute(sql, (table, *_seq_params(labels)))}
        if len(rows) != len(labels) or any(r[-1] != index.version for r in rows.values()):
            return None
        return [
            (row_to_memory(rows[label]), score) for label, score in zip(labels, scores, strict=True)
        ]

    def _search_on(
        self,
        conn: sqlite3.Connection,
        embedding: F64,
        query: MemoryQuery,
        params: SearchParams,
        *,
        here: bool,
    ) -> list[tuple[Memory, float]] | None:
        kind = params.index_type
        with self._snapshot(conn):
            table = query.table_name or DEFAULT_TABLE
            dim, version = self._table_state(conn, table)
            if dim is None:
                return []
            if len(embedding) != dim:
                raise DimensionMismatchError(table, dim, len(embedding))
            if here:
                index = self._indexes.current(table, kind, dim, version)
                if index is None:
                    return None
            else:
                index = self._index(table, kind, dim, version)
            q = query_vector(embedding, dim)
            allowed = None
            if query.filters_rows:
                scoped = query.model_copy(update={"table_name": table, "after": None})
                where, values = where_clause(scoped, keyset=False)
                allowed = [r[0] for r in conn.execute(f"SELECT seq FROM memories{where}", values)]
            labels, scores = index.search(
                q, params.k, allowed=allowed, probes=params.probes, ef_search=params.ef_search
            )
            labels, scores = above_threshold(labels, scores, params.threshold)
            if not labels:
                return []
            # One statement for the k rows (`_by_seqs_sql`).
            sql = _by_seqs_sql(len(labels), versioned=False, vectors=params.with_embeddings)
            rows = {r[0]: r for r in conn.execute(sql, _seq_params(labels))}
            return [
                (row_to_memory(rows[label]), score)
                for label, score in zip(labels, scores, strict=True)
                if label in rows
            ]

    @contextlib.contextmanager
    def _snapshot(self, conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
        """One read transaction, so that a table's version, its index load, a filter and the
        rows all come from one snapshot. In autocommit each statement saw the latest commit:
        another process deleting the newest row and inserting elsewhere between them (SQLite
        reuses that rowid, the index label) made a search return another table's row."""
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def _index(self, table: str, kind: IndexType, dim: int, version: int) -> VectorIndex:
        """`kind`'s index of `table` (on the worker, in a read snapshot); the exact one while
        an approximate one is built on the index thread."""
        index = self._indexes.get(table, kind, dim, version, lambda: self._load(table, dim))
        if index is None:
            index = self._indexes.get(table, "flat", dim, version, lambda: self._load(table, dim))
            assert index is not None  # flat indexes are built at once
        return index

    async def build_index(self, index_type: IndexType, table_name: str | None = None) -> None:
        kind = check_index_type(index_type)
        table = table_name or DEFAULT_TABLE
        while (build := await self._run(self._start_index, table, kind)) is not None:
            await asyncio.wait([asyncio.wrap_future(build)])  # the worker stays free meanwhile

    def _start_index(self, table: str, kind: IndexType) -> Future[VectorIndex] | None:
        """None once `table`'s `kind` index serves (or the table has no vectors), else the
        build to wait for (started if none was)."""
        with self._index_lock, self._snapshot(self._db) as conn:
            dim, version = self._table_state(conn, table)
            if dim is None:
                return None
            if self._indexes.get(table, kind, dim, version, lambda: self._load(table, dim)):
                return None
            return self._indexes.pending(table, kind)

    def _load(self, table: str, dim: int) -> tuple[Any, Any]:
        rows = self._db.execute(
            "SELECT seq, embedding FROM memories WHERE table_name = ? AND embedding IS NOT NULL"
            " ORDER BY seq",
            (table,),
        ).fetchall()
        labels, matrix = _to_matrix(rows, dim)
        return np.asarray(labels, dtype=np.int64), matrix

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

    def __repr__(self) -> str:
        return f"SqliteAdapter({str(self.path)!r})"


def _to_matrix(rows: Iterable[tuple[int, bytes]], dim: int) -> tuple[list[int], Any]:
    rows = list(rows)
    labels = [r[0] for r in rows]
    matrix = np.frombuffer(b"".join(r[1] for r in rows), "<f4").reshape(-1, dim).copy()
    return labels, matrix
