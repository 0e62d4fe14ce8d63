"""`SqliteEventStore`: the event log in a SQLite file (its own, or the memory database's).

Like the memory adapter, calls run on one dedicated worker thread (stdlib sqlite3 blocks). An
append is one ``BEGIN IMMEDIATE`` transaction: it takes SQLite's single write lock before
reading the aggregate's version, so concurrent appenders in other processes wait
(``busy_timeout``) instead of racing, versions stay gapless, and positions (``AUTOINCREMENT``,
never reused) commit in increasing order.

Appends of up to `INLINE_ROWS` events run on the event loop's own thread instead, when that
cannot block: the connection is free (a lock shared with the worker), the log is in WAL mode
with ``synchronous`` NORMAL or OFF (a commit writes to the WAL without waiting for the disk),
and the write lock is free right now (``busy_timeout`` 0 for that attempt; if another process
holds it, the append goes to the worker thread and waits there). A write of a few hundred rows
takes well under a millisecond; handing it to a thread cost more, in GIL hand-offs for every
row with the loop busy, than the write itself (docs/benchmarks-eventstore.md). The WAL is then
checkpointed by the worker thread (passive, every ~1000 pages) rather than by the committing
connection, so no fsync ever runs on the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from contracts.eventstore import (
    DomainEvent,
    EncodedEvent,
    EventStoreError,
)

from .common import (
    SCHEMA_INDEXES,
    Notifier,
    SqlEventStore,
    check_encoded,
    encode,
    first_bad_json,
    from_micros,
    new_ids,
    to_micros,
    versions_before,
)
from .sqlite_writer import aggregates_of, at_versions, insert_rows, rollback, stored_versions

if TYPE_CHECKING:
    from .writer_process import WriterProcess

__all__ = ["SCHEMA", "SqliteEventStore"]

T = TypeVar("T")

INLINE_ROWS = 500
"""Most events an append writes on the event loop's thread (about 2 ms); bigger ones go to the
worker thread."""
CHECKPOINT_PAGES = 1000
"""WAL pages (estimated) after which the worker runs a passive checkpoint (SQLite's default
auto-checkpoint threshold)."""
WRITER_CHECKPOINT_PAGES = 4000
"""SQLite's auto-checkpoint threshold (WAL pages, ~16 MB) on a store whose appends all run on
the caller's own thread (``inline_appends=False``: the audit trail's writer). Its default,
1000, checkpointed every ~15 of the trail's commits: each checkpoint fsyncs twice and copies
again the index pages every commit rewrites; 4000 cut the trail's commit cost by a fifth
(docs/benchmarks-pipeline.md)."""
_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS event_log (
    position INTEGER PRIMARY KEY AUTOINCREMENT,  -- global order; never reused
    id BLOB NOT NULL UNIQUE,                     -- event UUID bytes
    aggregate_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,                  -- microseconds since the Unix epoch, UTC
    data TEXT NOT NULL,                          -- JSON
    causation_id BLOB,
    correlation_id BLOB,
    metadata TEXT NOT NULL,                      -- JSON
    UNIQUE (aggregate_id, version)
);
"""
    + SCHEMA_INDEXES
)

_INSERT = (
    "INSERT INTO event_log (id, aggregate_id, version, event_type, schema_version, timestamp,"
    " data, causation_id, correlation_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_JSON = (
    "INSERT INTO event_log (id, aggregate_id, version, event_type, schema_version, timestamp,"
    " data, causation_id, correlation_id, metadata) SELECT id, aggregate_id, version,"
    " event_type, schema_version, timestamp, iif(json_valid(data), data, json(data)),"
    " causation_id, correlation_id, iif(json_valid(metadata), metadata, json(metadata)) FROM"
    " (SELECT ? AS id, ? AS aggregate_id, ? AS version, ? AS event_type, ? AS schema_version,"
    " ? AS timestamp, ? AS data, ? AS causation_id, ? AS correlation_id, ? AS metadata)"
)
"""For text from outside (`append_encoded`): valid JSON is stored as given, anything else
makes ``json()`` raise (malformed JSON), failing the batch. Plain ``?`` placeholders named by
the subquery: numbered ones (``?7`` used twice) are named parameters to sqlite3, and binding a
sequence to them is deprecated since Python 3.12 (an error from 3.14)."""


def _rows(events: list[EncodedEvent]) -> list[tuple[Any, ...]]:
    """INSERT parameters; each version is the event's offset within its aggregate in the batch
    (`_write` adds the aggregate's current version)."""
    offsets: dict[str, int] = {}
    rows = []
    fresh = iter(new_ids(sum(1 for event in events if event.id is None)))
    # unpacked: a NamedTuple's field access is a descriptor call, ten a row
    for aggregate, kind, data, version, timestamp, id_, causation, correlation, meta in events:
        offset = offsets[aggregate] = offsets.get(aggregate, 0) + 1
        rows.append(
            (
                next(fresh) if id_ is None else id_.bytes,
                aggregate,
                offset,
                kind,
                version,
                to_micros(timestamp),
                data,
                None if causation is None else causation.bytes,
                None if correlation is None else correlation.bytes,
                meta,
            )
        )
    return rows


def _not_json(batch: list[EncodedEvent]) -> EventStoreError:
    """The error for an append of `batch` that SQLite refused as malformed JSON."""
    what = first_bad_json(batch) or "an event's data is not JSON"
    return EventStoreError(f"{what}; nothing was appended")


def _row_to_event(row: tuple[Any, ...]) -> DomainEvent:
    """A `DomainEvent` from a ``SELECT {EVENT_COLUMNS}`` row (trusted data: no re-validation)."""
    return DomainEvent.model_construct(
        position=row[0],
        id=UUID(bytes=row[1]),
        aggregate_id=row[2],
        version=row[3],
        event_type=row[4],
        schema_version=row[5],
        timestamp=from_micros(row[6]),
        data=json.loads(row[7]),
        causation_id=None if row[8] is None else UUID(bytes=row[8]),
        correlation_id=None if row[9] is None else UUID(bytes=row[9]),
        metadata=json.loads(row[10]),
    )


@dataclass(frozen=True, slots=True)
class _Options:
    """How `SqliteEventStore.open` was asked to run the log (see there)."""

    busy_timeout: float = 30.0
    synchronous: str = "NORMAL"
    inline_appends: bool = True


class SqliteEventStore(SqlEventStore):
    """An `EventStore` over one SQLite file. Create with ``await SqliteEventStore.open(path)``
    (``":memory:"`` for a private in-memory log)."""

    backend = "sqlite"
    _placeholder = "?"

    def __init__(self, path: str | Path, options: _Options = _Options()) -> None:
        self.path = Path(path)
        self._inline_appends = options.inline_appends
        """False: every append goes to the worker thread (the audit trail's writes: nothing
        of them on the event loop)."""
        self._busy_timeout = options.busy_timeout
        self._synchronous = options.synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._notifier = Notifier()
        self._lock = threading.Lock()
        """Held by whichever thread uses the connection (the worker, or the loop inline)."""
        self._inline = False
        """Whether small appends may run on the loop's thread (WAL or memory, no fsync)."""
        self._checkpoints = False
        """Whether this store checkpoints the WAL itself (auto-checkpoints are off)."""
        self._wal_pages = 0
        self._checkpoint: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop that opened the store (`append_encoded_blocking` wakes subscribers there)."""

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        busy_timeout: float = 30.0,
        synchronous: str = "NORMAL",
        inline_appends: bool = True,
    ) -> SqliteEventStore:
        """Open (creating the file, its directory and the tables if needed) the log at `path`.
        `inline_appends` False sends every append to the worker thread (see the module doc)."""
        store = cls(path, _Options(busy_timeout, synchronous, inline_appends))
        store._executor = ThreadPoolExecutor(1, thread_name_prefix=f"events:{store.path.name}")
        store._loop = asyncio.get_running_loop()
        try:
            await store._run(store._connect)
        except BaseException:
            store._executor.shutdown(wait=False)
            store._executor = None
            raise
        return store

    def _connect(self) -> None:
        memory = str(self.path) == ":memory:"
        if not memory:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise EventStoreError(f"cannot open SQLite event store {self.path}: {exc}") from exc
        try:
            journal = "memory" if memory else conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
            synchronous = conn.execute("PRAGMA synchronous").fetchone()[0]
            self._inline = (
                self._inline_appends
                and str(journal).lower() in ("wal", "memory")
                and int(synchronous) <= 1
            )
            if self._inline and not memory:
                conn.execute("PRAGMA wal_autocheckpoint=0")  # the worker checkpoints instead
                self._checkpoints = True
            elif not self._inline_appends and not memory:
                conn.execute(f"PRAGMA wal_autocheckpoint={WRITER_CHECKPOINT_PAGES}")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise EventStoreError(f"SQLite event store {self.path} is unusable: {exc}") from exc
        self._conn = conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        self._check_open()
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(self._locked, fn, *args)
        )

    def _locked(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return fn(*args)

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise EventStoreError(f"SQLite event store {self.path} is closed")
        return self._conn

    # -- writes -------------------------------------------------------------------------------

    async def _append_batch(
        self, aggregate_id: str, batch: list[DomainEvent], expected_version: int | None
    ) -> list[DomainEvent]:
        # Encode on the loop: the worker thread then mostly runs SQLite (which releases the
        # GIL), instead of holding the GIL for JSON work while the loop waits for it.
        rows = _rows([encode(event) for event in batch])
        check = (aggregate_id, expected_version)
        before, first = await self._write_rows(rows, _INSERT, check)
        current = before[aggregate_id]
        return [
            DomainEvent.model_construct(
                **(event.__dict__ | {"version": current + i, "position": first + i - 1})
            )
            for i, event in enumerate(batch, start=1)
        ]

    async def append_encoded(self, events: Sequence[EncodedEvent]) -> int:
        batch = check_encoded(events)
        if not batch:
            return 0
        try:
            await self._write_rows(_rows(batch), _INSERT_JSON, None)
        except sqlite3.OperationalError as exc:
            if "malformed JSON" not in str(exc):
                raise
            raise _not_json(batch) from exc
        return len(batch)

    def append_encoded_blocking(
        self, events: Sequence[EncodedEvent], *, json_checked: bool = False
    ) -> int:
        """`append_encoded` on the calling thread, waiting for SQLite's write lock there: for
        a writer thread of the caller's own (the audit trail's), never the event loop's. A
        batch costs no hop to the worker thread and no wake-up of the loop (subscribers on
        the loop are woken only if there are any).

        `json_checked`: the caller vouches that every data and metadata text is JSON because
        it made them with a JSON serializer (the audit trail's are pydantic-core's output), so
        SQLite does not parse each text again to check it (about a quarter of a row's cost,
        issue 20). Text that is not JSON would then be stored and fail every read of it."""
        self._check_open()
        batch = check_encoded(events)
        if not batch:
            return 0
        rows = _rows(batch)
        try:
            with self._lock:
                self._write(rows, _INSERT if json_checked else _INSERT_JSON, None)
                if self._checkpoints and self._wal_pages >= CHECKPOINT_PAGES:
                    self._checkpoint_wal()
        except sqlite3.OperationalError as exc:
            if "malformed JSON" not in str(exc):
                raise
            raise _not_json(batch) from exc
        self.notify_appended()
        return len(batch)

    def notify_appended(self) -> None:
        """Wake this process's subscribers after an append made off the loop (any thread)."""
        loop = self._loop
        self._notifier.noted()
        if loop is not None and self._notifier.waiting:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody to wake
                loop.call_soon_threadsafe(self._notifier.wake)

    def writer_process(self) -> WriterProcess | None:
        """A `WriterProcess` appending to this log from a child process (the audit trail's
        ``writer: process``), waking this store's subscribers; None for an in-memory log, or
        where no Python can be started for it (`writer_process.can_start`)."""
        if str(self.path) == ":memory:":
            return None
        from .writer_process import WriterProcess, can_start

        if not can_start():
            return None

        return WriterProcess(
            self.path,
            busy_timeout=self._busy_timeout,
            synchronous=self._synchronous,
            autocheckpoint=WRITER_CHECKPOINT_PAGES,
            on_appended=self.notify_appended,
            check_open=self._check_open,
        )

    def _check_open(self) -> None:
        """`EventStoreError` once closed (`open` sets the executor and the loop together)."""
        if self._executor is None:
            raise EventStoreError(f"SQLite event store {self.path} is closed (or never opened)")

    async def _write_rows(
        self, rows: list[tuple[Any, ...]], sql: str, check: tuple[str, int | None] | None
    ) -> tuple[dict[str, int], int]:
        """`_write` on the loop's thread when it cannot block there (see the module doc), else
        on the worker thread; then wake subscribers and checkpoint if due."""
        done = None
        if self._inline and len(rows) <= INLINE_ROWS and self._lock.acquire(blocking=False):
            try:
                done = self._write_now(rows, sql, check)
            finally:
                self._lock.release()
        if done is None:
            done = await self._run(self._write, rows, sql, check)
        self._notifier.notify()
        if self._checkpoints and self._wal_pages >= CHECKPOINT_PAGES and self._checkpoint is None:
            self._checkpoint = asyncio.get_running_loop().create_task(self._run_checkpoint())
        return done

    def _write_now(
        self, rows: list[tuple[Any, ...]], sql: str, check: tuple[str, int | None] | None
    ) -> tuple[dict[str, int], int] | None:
        """`_write` without waiting for SQLite's write lock; None if another connection holds
        it (nothing written)."""
        conn = self._db
        conn.execute("PRAGMA busy_timeout = 0")
        try:
            return self._write(rows, sql, check)
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF in _BUSY:
                return None
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")

    async def _run_checkpoint(self) -> None:
        try:
            await self._run(self._checkpoint_wal)
        except (sqlite3.Error, EventStoreError):
            pass  # a passive checkpoint that fails (store closing, a reader) is retried later
        finally:
            self._checkpoint = None

    def _checkpoint_wal(self) -> None:
        self._wal_pages = 0
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def _write(
        self, rows: list[tuple[Any, ...]], sql: str, check: tuple[str, int | None] | None
    ) -> tuple[dict[str, int], int]:
        """Insert `rows` (from `_rows`: versions relative to each aggregate's current one) in
        one transaction, checking `check` (aggregate, expected version) first; each
        aggregate's version before, and the first position."""
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            aggregates = aggregates_of(rows)
            before = versions_before(aggregates, stored_versions(conn, aggregates), check)
            rows = at_versions(rows, before)
            try:
                first = insert_rows(conn, sql, rows) - len(rows) + 1
            except sqlite3.IntegrityError as exc:
                raise EventStoreError(
                    f"{self._duplicate(conn, rows) or 'an event'} cannot be appended to"
                    f" {', '.join(map(repr, aggregates))}: {exc}; nothing was appended"
                ) from exc
            except (OverflowError, ValueError) as exc:  # refused, not retried: a schema version
                # past 64 bits, a lone surrogate in an event type (not UTF-8)
                raise EventStoreError(f"{type(exc).__name__}: {exc}; nothing was appended") from exc
            conn.execute("COMMIT")
        except BaseException:
            rollback(conn)
            raise
        if self._checkpoints:  # else SQLite's auto-checkpoints count for themselves
            # Pages this commit added to the WAL: the rows' bytes, and the B-tree pages
            # touched (the log, its four indexes, the streams table).
            self._wal_pages += 6 + sum(len(r[6]) + len(r[9]) + 100 for r in rows) // 4096
        return before, first

    @staticmethod
    def _duplicate(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> str | None:
        """Which event of a failed batch already exists (or repeats), as text for the error."""
        seen: set[bytes] = set()
        for index, row in enumerate(rows):
            stored = conn.execute("SELECT 1 FROM event_log WHERE id = ?", (row[0],)).fetchone()
            if stored is not None or row[0] in seen:
                return f"event {index} ({row[3]}, id {UUID(bytes=row[0])} already stored)"
            seen.add(row[0])
        return None

    # -- reads --------------------------------------------------------------------------------

    @staticmethod
    def _time(value: datetime) -> int:
        return to_micros(value)

    @staticmethod
    def _uuid(value: UUID) -> bytes:
        return value.bytes

    def _select(self, sql: str, params: Sequence[Any]) -> list[DomainEvent]:
        return [_row_to_event(row) for row in self._db.execute(sql, params)]

    async def _events(self, sql: str, params: Sequence[Any]) -> list[DomainEvent]:
        return await self._run(self._select, sql, params)

    def _scalar_now(self, sql: str, params: Sequence[Any]) -> int:
        row = self._db.execute(sql, params).fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    async def _scalar(self, sql: str, params: Sequence[Any]) -> int:
        return await self._run(self._scalar_now, sql, params)

    def _aggregates(self) -> list[tuple[str, int]]:
        rows = self._db.execute(
            "SELECT aggregate_id, version FROM event_streams ORDER BY aggregate_id"
        )
        return [(str(r[0]), int(r[1])) for r in rows]

    async def aggregates(self) -> list[tuple[str, int]]:
        return await self._run(self._aggregates)

    async def close(self) -> None:
        if self._executor is None:
            return
        if self._checkpoint is not None:
            await asyncio.gather(self._checkpoint, return_exceptions=True)
        try:
            await self._run(self._close_conn)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
