"""`PostgresEventStore`: the event log in PostgreSQL, on the storage adapter's pool or its own.

An append is one transaction that first takes ``LOCK TABLE event_log IN EXCLUSIVE MODE``: readers
go on, but appenders (from any process) queue. That is what keeps positions commit-ordered, so a
follower reading ``position > n`` never skips an event whose identity value was drawn earlier but
committed later (the approach of the eventsourcing library's PostgreSQL recorder). Versions come
from ``event_streams`` read under the same lock; ``UNIQUE (aggregate_id, version)`` backs it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from datetime import UTC
from typing import Any
from uuid import UUID

import psycopg
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

from contracts.eventstore import (
    DomainEvent,
    EncodedEvent,
    EventStoreError,
    EventStoreUnavailableError,
)
from host.pgpool import describe_url, pooled, safe_text

from .common import (
    SCHEMA_INDEXES,
    Notifier,
    SqlEventStore,
    check_encoded,
    encode,
    first_bad_json,
    new_ids,
    versions_before,
)

__all__ = ["SCHEMA", "PostgresEventStore"]

SCHEMA = (
    """
CREATE TABLE IF NOT EXISTS event_log (
    position BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id UUID NOT NULL UNIQUE,
    aggregate_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    schema_version INTEGER NOT NULL,
    timestamp TIMESTAMPTZ NOT NULL,
    data JSONB NOT NULL,
    causation_id UUID,
    correlation_id UUID,
    metadata JSONB NOT NULL,
    UNIQUE (aggregate_id, version)
);
"""
    + SCHEMA_INDEXES
)

_INSERT = (
    "INSERT INTO event_log (id, aggregate_id, version, event_type, schema_version, timestamp,"
    " data, causation_id, correlation_id, metadata)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s::jsonb)"
)
# Serialises schema creation between processes starting at once (CREATE IF NOT EXISTS races).
_SCHEMA_LOCK = 0x6167_6576  # "agev"


def _row_to_event(row: tuple[Any, ...]) -> DomainEvent:
    return DomainEvent.model_construct(
        position=row[0],
        id=row[1],
        aggregate_id=row[2],
        version=row[3],
        event_type=row[4],
        schema_version=row[5],
        timestamp=row[6].astimezone(UTC),
        data=row[7],
        causation_id=row[8],
        correlation_id=row[9],
        metadata=row[10],
    )


def _rows(events: list[EncodedEvent], versions: dict[str, int]) -> list[tuple[Any, ...]]:
    """INSERT parameters of `events`, numbering each aggregate's on from `versions` (which is
    left holding each aggregate's last version)."""
    rows = []
    fresh = iter(new_ids(sum(1 for event in events if event.id is None)))
    for event in events:
        version = versions[event.aggregate_id] = versions[event.aggregate_id] + 1
        rows.append(
            (
                UUID(bytes=next(fresh)) if event.id is None else event.id,
                event.aggregate_id,
                version,
                event.event_type,
                event.schema_version,
                event.timestamp,
                event.data,
                event.causation_id,
                event.correlation_id,
                event.metadata,
            )
        )
    return rows


async def _insert(
    cur: psycopg.AsyncCursor[Any], rows: list[tuple[Any, ...]], returning: bool
) -> list[int]:
    """Insert `rows`; their positions when `returning` (else none)."""
    if not returning:
        await cur.executemany(_INSERT, rows)
        return []
    positions: list[int] = []
    await cur.executemany(_INSERT + " RETURNING position", rows, returning=True)
    while True:
        got = await cur.fetchone()
        if got is not None:
            positions.append(int(got[0]))
        if not cur.nextset():
            break
    return positions


class PostgresEventStore(SqlEventStore):
    """An `EventStore` in PostgreSQL. ``await PostgresEventStore.open(pool)`` shares a pool
    (the storage adapter's); ``await PostgresEventStore.connect(url)`` opens and owns one."""

    backend = "postgres"
    _placeholder = "%s"

    def __init__(self, pool: AsyncConnectionPool[Any], *, owns_pool: bool = False) -> None:
        self.pool = pool
        self._owns_pool = owns_pool
        self._closed = False
        self._notifier = Notifier()

    @classmethod
    async def open(cls, pool: AsyncConnectionPool[Any]) -> PostgresEventStore:
        """An event store on `pool` (not closed with the store); creates its tables if needed."""
        store = cls(pool)
        await store._migrate()
        return store

    @classmethod
    async def connect(
        cls, conninfo: str, *, min_size: int = 1, max_size: int = 10, open_timeout: float = 30.0
    ) -> PostgresEventStore:
        """An event store with its own pool to `conninfo`, closed with the store (fails after
        `open_timeout` seconds without a connection)."""
        pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            conninfo, min_size=min_size, max_size=max_size, open=False
        )
        try:
            await pool.open(wait=True, timeout=open_timeout)
        except Exception as exc:
            await pool.close()
            raise EventStoreUnavailableError(
                f"cannot connect the event store to PostgreSQL at {describe_url(conninfo)}:"
                f" {safe_text(exc, conninfo)}"
            ) from exc
        store = cls(pool, owns_pool=True)
        try:
            await store._migrate()
        except BaseException:
            await pool.close()
            raise
        return store

    def _connection(self) -> contextlib.AbstractAsyncContextManager[AsyncConnection[Any]]:
        """A pooled connection; the server lost or every connection in use is an
        `EventStoreUnavailableError` naming the server (a transient failure to retry)."""
        return pooled(
            self.pool, unavailable=EventStoreUnavailableError, exhausted=EventStoreUnavailableError
        )

    def _check_open(self) -> None:
        if self._closed:
            raise EventStoreError("PostgreSQL event store is closed")

    async def _migrate(self) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            await conn.execute(SCHEMA)

    # -- writes -------------------------------------------------------------------------------

    async def _append_batch(
        self, aggregate_id: str, batch: list[DomainEvent], expected_version: int | None
    ) -> list[DomainEvent]:
        before, positions = await self._write(
            [encode(event) for event in batch], (aggregate_id, expected_version)
        )
        current = before[aggregate_id]
        return [
            event.model_copy(update={"version": current + offset, "position": position})
            for offset, (event, position) in enumerate(zip(batch, positions, strict=True), 1)
        ]

    async def append_encoded(self, events: Sequence[EncodedEvent]) -> int:
        batch = check_encoded(events)
        self._check_open()
        if batch:
            await self._write(batch, None)
        return len(batch)

    async def _write(
        self, events: list[EncodedEvent], check: tuple[str, int | None] | None
    ) -> tuple[dict[str, int], list[int]]:
        """Insert `events` in one transaction, checking `check` (aggregate, expected version)
        first; each aggregate's version before, and the positions (when `check` is given)."""
        aggregates = list(dict.fromkeys(event.aggregate_id for event in events))
        async with self._connection() as conn:
            try:
                async with conn.transaction(), conn.cursor() as cur:
                    await cur.execute("LOCK TABLE event_log IN EXCLUSIVE MODE")
                    await cur.execute(
                        "SELECT aggregate_id, version FROM event_streams"
                        " WHERE aggregate_id = ANY(%s)",
                        (aggregates,),
                    )
                    before = versions_before(aggregates, await cur.fetchall(), check)
                    versions = dict(before)
                    positions = await _insert(cur, _rows(events, versions), check is not None)
                    await cur.executemany(
                        "INSERT INTO event_streams (aggregate_id, version) VALUES (%s, %s)"
                        " ON CONFLICT (aggregate_id) DO UPDATE SET version = excluded.version",
                        [(a, versions[a]) for a in aggregates],
                    )
            except psycopg.errors.IntegrityError as exc:
                raise EventStoreError(
                    f"events cannot be appended to {', '.join(map(repr, aggregates))}: {exc};"
                    " nothing was appended"
                ) from exc
            # Text that is not JSON, a NUL character, a value too big (for its column, or, an
            # over-long id or type, for an index: ProgramLimitExceeded).
            except (psycopg.errors.DataError, psycopg.errors.ProgramLimitExceeded) as exc:
                what = first_bad_json(events) or (
                    f"events cannot be appended to {', '.join(map(repr, aggregates))}"
                )
                raise EventStoreError(f"{what}: {exc}; nothing was appended") from exc
        self._notifier.notify()
        return before, positions

    # -- reads --------------------------------------------------------------------------------

    async def _events(self, sql: str, params: Sequence[Any]) -> list[DomainEvent]:
        self._check_open()
        async with self._connection() as conn, conn.cursor() as cur:
            await cur.execute(sql, params)
            return [_row_to_event(row) for row in await cur.fetchall()]

    async def _scalar(self, sql: str, params: Sequence[Any]) -> int:
        self._check_open()
        async with self._connection() as conn, conn.cursor() as cur:
            await cur.execute(sql, params)
            row = await cur.fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    async def aggregates(self) -> list[tuple[str, int]]:
        self._check_open()
        async with self._connection() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT aggregate_id, version FROM event_streams ORDER BY aggregate_id"
            )
            return [(str(r[0]), int(r[1])) for r in await cur.fetchall()]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_pool:
            await self.pool.close()
