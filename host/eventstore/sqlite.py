"""`SqliteEventStore`: the event log in a SQLite file (its own, or the memory database's).

Like the memory adapter, every call runs on one dedicated worker thread (stdlib sqlite3 blocks),
which serialises this process's calls without locks. An append is one ``BEGIN IMMEDIATE``
transaction: it takes SQLite's single write lock before reading the aggregate's version, so
concurrent appenders in other processes wait (``busy_timeout``) instead of racing, versions stay
gapless, and positions (``AUTOINCREMENT``, never reused) commit in increasing order.
"""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID

from contracts.eventstore import ConcurrencyError, DomainEvent, EventFilter, EventStoreError

from .common import Notifier, StreamingReads, check_batch, filter_sql, from_micros, to_micros

__all__ = ["SCHEMA", "SqliteEventStore"]

T = TypeVar("T")

SCHEMA = """
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
CREATE INDEX IF NOT EXISTS event_log_type ON event_log (event_type, position);
CREATE INDEX IF NOT EXISTS event_log_time ON event_log (timestamp, position);
CREATE INDEX IF NOT EXISTS event_log_correlation ON event_log (correlation_id, position);
CREATE TABLE IF NOT EXISTS event_streams (
    aggregate_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL                     -- the aggregate's current version
);
"""

_COLUMNS = (
    "position, id, aggregate_id, version, event_type, schema_version, timestamp, data,"
    " causation_id, correlation_id, metadata"
)
_INSERT = (
    "INSERT INTO event_log (id, aggregate_id, version, event_type, schema_version, timestamp,"
    " data, causation_id, correlation_id, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _row_to_event(row: tuple[Any, ...]) -> DomainEvent:
    """A `DomainEvent` from a ``SELECT {_COLUMNS}`` row (trusted data: no re-validation)."""
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


class SqliteEventStore(StreamingReads):
    """An `EventStore` over one SQLite file. Create with ``await SqliteEventStore.open(path)``
    (``":memory:"`` for a private in-memory log)."""

    backend = "sqlite"

    def __init__(
        self, path: str | Path, *, busy_timeout: float = 30.0, synchronous: str = "NORMAL"
    ) -> None:
        self.path = Path(path)
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._notifier = Notifier()

    @classmethod
    async def open(
        cls, path: str | Path, *, busy_timeout: float = 30.0, synchronous: str = "NORMAL"
    ) -> SqliteEventStore:
        """Open (creating the file, its directory and the tables if needed) the log at `path`."""
        store = cls(path, busy_timeout=busy_timeout, synchronous=synchronous)
        store._executor = ThreadPoolExecutor(1, thread_name_prefix=f"events:{store.path.name}")
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
            if not memory:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.executescript(f"BEGIN IMMEDIATE;{SCHEMA}COMMIT;")
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise EventStoreError(f"SQLite event store {self.path} is unusable: {exc}") from exc
        self._conn = conn

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise EventStoreError(f"SQLite event store {self.path} is closed (or never opened)")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            raise EventStoreError(f"SQLite event store {self.path} is closed")
        return self._conn

    # -- writes -------------------------------------------------------------------------------

    async def append_event(self, event: DomainEvent) -> DomainEvent:
        expected = event.version - 1 if event.version else None
        return (await self.append_events(event.aggregate_id, [event], expected))[0]

    async def append_events(
        self,
        aggregate_id: str,
        events: Sequence[DomainEvent],
        expected_version: int | None = None,
    ) -> list[DomainEvent]:
        batch = check_batch(aggregate_id, events, expected_version)
        if not batch:
            if expected_version is not None:
                actual = await self.get_version(aggregate_id)
                if actual != expected_version:
                    raise ConcurrencyError(aggregate_id, expected_version, actual)
            return []
        # Encode on the loop: the worker thread then mostly runs SQLite (which releases the
        # GIL), instead of holding the GIL for JSON work while the loop waits for it.
        rows = [
            (
                event.id.bytes,
                aggregate_id,
                offset,
                event.event_type,
                event.schema_version,
                to_micros(event.timestamp),
                json.dumps(event.data, separators=(",", ":")),
                None if event.causation_id is None else event.causation_id.bytes,
                None if event.correlation_id is None else event.correlation_id.bytes,
                json.dumps(event.metadata, separators=(",", ":")),
            )
            for offset, event in enumerate(batch, start=1)
        ]
        current, first = await self._run(self._append, aggregate_id, batch, rows, expected_version)
        self._notifier.notify()
        return [
            DomainEvent.model_construct(
                **(event.__dict__ | {"version": current + i, "position": first + i - 1})
            )
            for i, event in enumerate(batch, start=1)
        ]

    def _append(
        self,
        aggregate_id: str,
        batch: list[DomainEvent],
        rows: list[tuple[Any, ...]],
        expected: int | None,
    ) -> tuple[int, int]:
        """Insert `rows` (versions relative to the current one); (version before, first
        position)."""
        conn = self._db
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT version FROM event_streams WHERE aggregate_id = ?", (aggregate_id,)
            ).fetchone()
            current = 0 if row is None else int(row[0])
            if expected is not None and expected != current:
                raise ConcurrencyError(aggregate_id, expected, current)
            if current:
                rows = [(r[0], r[1], current + r[2], *r[3:]) for r in rows]
            try:
                conn.executemany(_INSERT, rows)
            except sqlite3.IntegrityError as exc:
                raise EventStoreError(
                    f"{self._duplicate(conn, batch) or 'an event'} cannot be appended to"
                    f" {aggregate_id!r}: {exc}; nothing was appended"
                ) from exc
            # The write lock is held and positions are AUTOINCREMENT: this batch's positions
            # are the consecutive ones ending at the last inserted rowid.
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            first = int(last) - len(batch) + 1
            conn.execute(
                "INSERT INTO event_streams (aggregate_id, version) VALUES (?, ?)"
                " ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version",
                (aggregate_id, current + len(batch)),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return current, first

    @staticmethod
    def _duplicate(conn: sqlite3.Connection, batch: list[DomainEvent]) -> str | None:
        """Which event of a failed batch already exists, as text for the error."""
        for index, event in enumerate(batch):
            row = conn.execute("SELECT 1 FROM event_log WHERE id = ?", (event.id.bytes,))
            if row.fetchone() is not None:
                return f"event {index} ({event.event_type}, id {event.id} already stored)"
        return None

    # -- reads --------------------------------------------------------------------------------

    def _select(self, sql: str, params: Sequence[Any]) -> list[DomainEvent]:
        return [_row_to_event(row) for row in self._db.execute(sql, params)]

    async def get_events(
        self, aggregate_id: str, from_version: int = 0, to_version: int | None = None
    ) -> list[DomainEvent]:
        sql = f"SELECT {_COLUMNS} FROM event_log WHERE aggregate_id = ? AND version > ?"
        params: list[Any] = [aggregate_id, from_version]
        if to_version is not None:
            sql += " AND version <= ?"
            params.append(to_version)
        return await self._run(self._select, sql + " ORDER BY version", params)

    async def _events_page(
        self, aggregate_id: str, from_version: int, limit: int
    ) -> list[DomainEvent]:
        sql = (
            f"SELECT {_COLUMNS} FROM event_log WHERE aggregate_id = ? AND version > ?"
            " ORDER BY version LIMIT ?"
        )
        return await self._run(self._select, sql, (aggregate_id, from_version, limit))

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[DomainEvent]:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        where, params = filter_sql(
            filter, from_position, placeholder="?", time=to_micros, uuid=lambda u: u.bytes
        )
        sql = f"SELECT {_COLUMNS} FROM event_log{where} ORDER BY position LIMIT ?"
        return await self._run(self._select, sql, [*params, limit])

    def _scalar(self, sql: str, params: Sequence[Any]) -> int:
        row = self._db.execute(sql, params).fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    async def get_version(self, aggregate_id: str) -> int:
        return await self._run(
            self._scalar,
            "SELECT version FROM event_streams WHERE aggregate_id = ?",
            (aggregate_id,),
        )

    async def last_position(self) -> int:
        return await self._run(self._scalar, "SELECT MAX(position) FROM event_log", ())

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
        try:
            await self._run(self._close_conn)
        finally:
            self._executor.shutdown(wait=True)
            self._executor = None

    def _close_conn(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
