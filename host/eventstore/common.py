"""What every event store engine shares: batch checks, the streaming reads and `subscribe`.

An engine implements the storage primitives (`_append`, `get_events`, `read_all`, ...) and
inherits the streaming methods from `StreamingReads`; they page with keyset queries (``version
> n`` / ``position > n``), so a stream of millions of events holds one page in memory.
"""

from __future__ import annotations

import asyncio
import json
import os
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from uuid import UUID

from pydantic_core import to_json

from contracts.eventstore import (
    ConcurrencyError,
    DomainEvent,
    EncodedEvent,
    EventFilter,
    EventStoreError,
)
from host.secrets import SECRETS, scrub_json

__all__ = [
    "EVENT_COLUMNS",
    "SCHEMA_INDEXES",
    "Notifier",
    "SqlEventStore",
    "StreamingReads",
    "check_batch",
    "check_encoded",
    "encode",
    "filter_sql",
    "first_bad_json",
    "from_micros",
    "new_ids",
    "to_micros",
    "versions_before",
]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact, no float rounding)."""
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(micros: int) -> datetime:
    """The aware UTC datetime `micros` microseconds after the epoch."""
    return _EPOCH + timedelta(microseconds=micros)


def check_batch(
    aggregate_id: str, events: Sequence[DomainEvent], expected_version: int | None
) -> list[DomainEvent]:
    """Validate an append's arguments before any I/O; the batch as a list."""
    if not isinstance(aggregate_id, str) or not aggregate_id:
        raise ValueError(f"aggregate_id must be a non-empty string, got {aggregate_id!r}")
    if expected_version is not None and expected_version < 0:
        raise ValueError(f"expected_version must be >= 0 or None, got {expected_version}")
    batch = list(events)
    seen: set[UUID] = set()
    for index, event in enumerate(batch):
        if not isinstance(event, DomainEvent):
            raise TypeError(f"event {index} is a {type(event).__name__}, not a DomainEvent")
        if event.aggregate_id != aggregate_id:
            raise ValueError(
                f"event {index} ({event.event_type}) belongs to aggregate {event.aggregate_id!r},"
                f" not {aggregate_id!r}; nothing was appended"
            )
        if event.id in seen:
            raise EventStoreError(f"event {index} repeats event id {event.id} within the batch")
        seen.add(event.id)
    return batch


def versions_before(
    aggregates: Sequence[str],
    stored: Iterable[tuple[Any, Any]],
    check: tuple[str, int | None] | None,
) -> dict[str, int]:
    """Each of a batch's `aggregates`' version before it (0 if new), from the stored
    (aggregate, version) rows; `ConcurrencyError` unless `check` (aggregate, expected version;
    None: any) holds. Run inside the append's transaction, after taking the write lock."""
    before = dict.fromkeys(aggregates, 0) | {str(a): int(v) for a, v in stored}
    if check is not None and check[1] is not None and check[1] != before[check[0]]:
        raise ConcurrencyError(check[0], check[1], before[check[0]])
    return before


def encode(event: DomainEvent) -> EncodedEvent:
    """`event` as the engines write it: data and metadata as JSON text (pydantic-core), the
    registered secrets masked (`host.secrets`)."""
    return EncodedEvent(
        event.aggregate_id,
        event.event_type,
        scrub_json(to_json(event.data).decode()),
        event.schema_version,
        event.timestamp,
        event.id,
        event.causation_id,
        event.correlation_id,
        scrub_json(to_json(event.metadata).decode()),
    )


def new_ids(count: int) -> list[bytes]:
    """`count` fresh event ids (UUID version 7, RFC 9562, as bytes) for events appended
    without one: the current Unix time in milliseconds, then a counter within the batch, then
    random bits, from one read of the OS's random source. Time-ordered ids go in at the end of
    the ``id`` index instead of at random places in it (about 3 us a row less on SQLite at 20k
    rows, and more as the log grows). Built a batch at a time (the heads packed in one call,
    the variant bits set with one ``translate``, one slice an id): a third of the per-id
    arithmetic's cost at the audit trail's batch sizes (issue 20)."""
    if count <= 0:
        return []
    millis = time.time_ns() // 1_000_000
    if count <= 4096:  # the counter never carries into the milliseconds
        base = millis << 16 | 0x7000
        heads = struct.pack(f">{count}Q", *range(base, base + count))
    else:
        heads = struct.pack(
            f">{count}Q",
            *[(millis + (i >> 12)) << 16 | 0x7000 | (i & 0xFFF) for i in range(count)],
        )
    ids = bytearray(os.urandom(16 * count))
    ids[8::16] = ids[8::16].translate(_VARIANT)  # 0b10xxxxxx: RFC 9562's variant
    memoryview(ids).cast("Q")[0::2] = memoryview(heads).cast("Q")  # bytes copied as they are
    data = bytes(ids)
    return [data[i : i + 16] for i in range(0, 16 * count, 16)]


_VARIANT = bytes(b & 0x3F | 0x80 for b in range(256))
"""Each byte with its top two bits set to RFC 9562's variant (``10``)."""


def check_encoded(events: Sequence[EncodedEvent]) -> list[EncodedEvent]:
    """Validate an `append_encoded` batch before any I/O (cheap checks; the database parses
    the JSON); the batch as a list, the registered secrets masked in its texts (nothing the
    store keeps for good may hold one: a model server echoing the API key in its error is
    recorded in ``model:used``)."""
    batch = list(events)
    for index, event in enumerate(batch):
        if not isinstance(event, EncodedEvent):
            raise _bad_encoded(index, event)
        # unpacked: a NamedTuple's field access is a descriptor call (the audit trail checks
        # every event it writes)
        aggregate, kind, data, _, timestamp, _, _, _, metadata = event
        if not (
            isinstance(aggregate, str)
            and aggregate
            and isinstance(kind, str)
            and kind
            and isinstance(data, str)
            and data[:1] == "{"
            and isinstance(metadata, str)
            and metadata[:1] == "{"
            and isinstance(timestamp, datetime)
            and timestamp.tzinfo is not None
        ):
            raise _bad_encoded(index, event)
    if SECRETS:
        batch = [_scrubbed(event) for event in batch]
    return batch


def _scrubbed(event: EncodedEvent) -> EncodedEvent:
    data, metadata = scrub_json(event.data), scrub_json(event.metadata)
    if data is event.data and metadata is event.metadata:
        return event
    return event._replace(data=data, metadata=metadata)


def _text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def _object_text(value: object) -> bool:
    return isinstance(value, str) and value[:1] == "{"


def _bad_encoded(index: int, event: object) -> Exception:
    """The error naming what is wrong with event `index` of an `append_encoded` batch."""
    if not isinstance(event, EncodedEvent):
        return TypeError(f"event {index} is a {type(event).__name__}, not an EncodedEvent")
    if not _text(event.aggregate_id):
        return EventStoreError(
            f"event {index} ({event.event_type}) has no aggregate id (non-empty text), got"
            f" {event.aggregate_id!r}"
        )
    if not _text(event.event_type):
        return EventStoreError(
            f"event {index} of {event.aggregate_id!r} has no event type (non-empty text), got"
            f" {event.event_type!r}"
        )
    if not isinstance(event.timestamp, datetime) or event.timestamp.tzinfo is None:
        return EventStoreError(
            f"event {index} ({event.event_type}): timestamp must be a timezone-aware datetime,"
            f" got {event.timestamp!r}"
        )
    bad_data = not _object_text(event.data)
    name, text = ("data", event.data) if bad_data else ("metadata", event.metadata)
    return EventStoreError(
        f"event {index} ({event.event_type}): {name} must be JSON object text, got"
        f" {text!r:.60}; nothing was appended"
    )


def first_bad_json(events: Sequence[EncodedEvent]) -> str | None:
    """Which event of a batch holds text that is not JSON, as text for the error (None if
    Python parses them all: the database refused something else)."""
    for index, event in enumerate(events):
        for name in ("data", "metadata"):
            try:
                json.loads(getattr(event, name), parse_constant=_not_json)
            except ValueError as exc:
                return f"event {index} ({event.event_type}) {name} is not JSON: {exc}"
    return None


def _not_json(constant: str) -> Any:
    """Python's parser takes ``NaN`` and ``Infinity``; JSON (and both databases) do not."""
    raise ValueError(f"{constant} is not a JSON value")


def filter_sql(
    flt: EventFilter | None,
    from_position: int,
    *,
    placeholder: str,
    time: Callable[[datetime], Any],
    uuid: Callable[[UUID], Any],
) -> tuple[str, list[Any]]:
    """``WHERE`` text and parameters for a global read; engines pass their own placeholder
    (``?`` or ``%s``) and column encodings for times and UUIDs."""
    parts = [f"position > {placeholder}"]
    params: list[Any] = [from_position]
    if flt is not None:
        if flt.aggregate_id is not None:
            parts.append(f"aggregate_id = {placeholder}")
            params.append(flt.aggregate_id)
        if flt.event_types is not None:
            if not flt.event_types:
                parts.append("1 = 0")
            else:
                parts.append(f"event_type IN ({', '.join([placeholder] * len(flt.event_types))})")
                params.extend(flt.event_types)
        if flt.since is not None:
            parts.append(f"timestamp >= {placeholder}")
            params.append(time(flt.since))
        if flt.until is not None:
            parts.append(f"timestamp < {placeholder}")
            params.append(time(flt.until))
        if flt.correlation_id is not None:
            parts.append(f"correlation_id = {placeholder}")
            params.append(uuid(flt.correlation_id))
    return " WHERE " + " AND ".join(parts), params


class Notifier:
    """Wakes this process's subscribers when its store appends (others are found by polling).

    Appends are counted, so that one committed while a subscriber was still reading (not yet
    waiting: nobody to wake) ends its next wait at once instead of after its poll interval."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()
        self.appends = 0
        """Appends so far (`wait`'s ``since``)."""

    @property
    def waiting(self) -> bool:
        """Whether anyone waits (a writer thread asks before waking the loop)."""
        return bool(self._waiters)

    def notify(self) -> None:
        """An append committed (on the loop): count it and wake the waiters."""
        self.appends += 1
        self.wake()

    def noted(self) -> None:
        """An append committed on another thread: count it (then `wake` on the loop, if
        `waiting`; counted first, a wait that begins after the check returns at once)."""
        self.appends += 1

    def wake(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    async def wait(self, seconds: float, since: int | None = None) -> None:
        """Return after the next `notify` or after `seconds`, whichever comes first; at once
        if an append was counted after `since` (an `appends` read before reading)."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)  # first: an append counted after the check below wakes it
        if since is not None and self.appends != since:
            self._waiters.discard(waiter)
            return
        try:
            async with asyncio.timeout(seconds):
                await waiter.wait()
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)


async def _pages(
    fetch: Callable[[int], Awaitable[list[DomainEvent]]],
    start: int,
    batch_size: int,
    after: Callable[[DomainEvent, int], int],
) -> AsyncIterator[list[DomainEvent]]:
    """Keyset paging: the pages `fetch` returns from `start` on, each next one from `after`
    (the page's last event, the cursor) until a page comes back short of `batch_size`."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    cursor = start
    while True:
        page = await fetch(cursor)
        yield page
        if len(page) < batch_size:
            return
        cursor = after(page[-1], cursor)


class StreamingReads(ABC):
    """Streaming reads and `subscribe`, built on an engine's paged reads."""

    poll_interval: float = 0.25
    """Seconds between polls for events appended by other processes while following."""

    _notifier: Notifier

    @abstractmethod
    async def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[DomainEvent]:
        """One page of the global log (see `EventStore.read_all`)."""

    @abstractmethod
    async def _events_page(
        self, aggregate_id: str, from_version: int, limit: int
    ) -> list[DomainEvent]:
        """At most `limit` events of the aggregate after `from_version`, in version order."""

    async def iter_events(
        self, aggregate_id: str, from_version: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[DomainEvent]:
        pages = _pages(
            lambda version: self._events_page(aggregate_id, version, batch_size),
            from_version,
            batch_size,
            lambda last, _: last.version,
        )
        async for page in pages:
            for event in page:
                yield event

    async def get_events_by_type(
        self, event_type: str, from_position: int = 0, limit: int | None = None
    ) -> list[DomainEvent]:
        flt = EventFilter(event_types=(event_type,))
        if limit is not None:
            return await self.read_all(from_position, limit, flt)
        return [event async for event in self.iter_all(from_position, flt)]

    async def iter_all(
        self, from_position: int = 0, filter: EventFilter | None = None, batch_size: int = 1000
    ) -> AsyncIterator[DomainEvent]:
        pages = _pages(
            lambda position: self.read_all(position, batch_size, filter),
            from_position,
            batch_size,
            lambda last, position: last.position or position,
        )
        async for page in pages:
            for event in page:
                yield event

    async def subscribe(
        self, from_position: int = 0, filter: EventFilter | None = None
    ) -> AsyncIterator[DomainEvent]:
        position = from_position
        notifier = self._notifier
        while True:
            seen = notifier.appends  # before reading: what is appended meanwhile wakes the wait
            page = await self.read_all(position, 500, filter)
            for event in page:
                if event.position is not None:
                    position = event.position
                yield event
            if len(page) < 500:
                await notifier.wait(self.poll_interval, seen)


SCHEMA_INDEXES = """
CREATE INDEX IF NOT EXISTS event_log_type ON event_log (event_type, position);
CREATE INDEX IF NOT EXISTS event_log_time ON event_log (timestamp, position);
CREATE INDEX IF NOT EXISTS event_log_correlation ON event_log (correlation_id, position);
CREATE TABLE IF NOT EXISTS event_streams (
    aggregate_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL
);
"""
"""The DDL after each engine's ``event_log`` table: its indexes and ``event_streams`` (each
aggregate's current version)."""

EVENT_COLUMNS = (
    "position, id, aggregate_id, version, event_type, schema_version, timestamp, data,"
    " causation_id, correlation_id, metadata"
)
"""The ``event_log`` columns every engine selects, in the order its row decoder reads them."""


class SqlEventStore(StreamingReads):
    """What the SQL engines share: the statements of their reads (which differ only in the
    placeholder and in how times and UUIDs are stored) and the checks of an append. An engine
    runs the statements (`_events`, `_scalar`) and writes a checked batch (`_append_batch`)."""

    _placeholder: ClassVar[str]
    """The DB-API parameter placeholder: ``?`` or ``%s``."""

    @abstractmethod
    async def _events(self, sql: str, params: Sequence[Any]) -> list[DomainEvent]:
        """The events a ``SELECT {EVENT_COLUMNS}`` statement returns."""

    @abstractmethod
    async def _scalar(self, sql: str, params: Sequence[Any]) -> int:
        """The integer a one-value statement returns (0 for no row or NULL)."""

    @staticmethod
    def _time(value: datetime) -> Any:
        """A time as its column stores it."""
        return value

    @staticmethod
    def _uuid(value: UUID) -> Any:
        """A UUID as its column stores it."""
        return value

    def _check_open(self) -> None:
        """Raise `EventStoreError` if the store is closed (engines that know it early)."""

    @abstractmethod
    async def _append_batch(
        self, aggregate_id: str, batch: list[DomainEvent], expected_version: int | None
    ) -> list[DomainEvent]:
        """Append the checked, non-empty `batch` (see `append_events`)."""

    async def append_events(
        self,
        aggregate_id: str,
        events: Sequence[DomainEvent],
        expected_version: int | None = None,
    ) -> list[DomainEvent]:
        batch = check_batch(aggregate_id, events, expected_version)
        self._check_open()
        if not batch:  # nothing to append; the expected version is checked all the same
            if expected_version is not None:
                actual = await self.get_version(aggregate_id)
                if actual != expected_version:
                    raise ConcurrencyError(aggregate_id, expected_version, actual)
            return []
        return await self._append_batch(aggregate_id, batch, expected_version)

    async def append_event(self, event: DomainEvent) -> DomainEvent:
        expected = event.version - 1 if event.version else None
        return (await self.append_events(event.aggregate_id, [event], expected))[0]

    async def get_events(
        self, aggregate_id: str, from_version: int = 0, to_version: int | None = None
    ) -> list[DomainEvent]:
        p = self._placeholder
        sql = f"SELECT {EVENT_COLUMNS} FROM event_log WHERE aggregate_id = {p} AND version > {p}"
        params: list[Any] = [aggregate_id, from_version]
        if to_version is not None:
            sql += f" AND version <= {p}"
            params.append(to_version)
        return await self._events(sql + " ORDER BY version", params)

    async def _events_page(
        self, aggregate_id: str, from_version: int, limit: int
    ) -> list[DomainEvent]:
        p = self._placeholder
        return await self._events(
            f"SELECT {EVENT_COLUMNS} FROM event_log WHERE aggregate_id = {p} AND version > {p}"
            f" ORDER BY version LIMIT {p}",
            (aggregate_id, from_version, limit),
        )

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[DomainEvent]:
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        p = self._placeholder
        where, params = filter_sql(
            filter, from_position, placeholder=p, time=self._time, uuid=self._uuid
        )
        return await self._events(
            f"SELECT {EVENT_COLUMNS} FROM event_log{where} ORDER BY position LIMIT {p}",
            [*params, limit],
        )

    async def get_version(self, aggregate_id: str) -> int:
        return await self._scalar(
            f"SELECT version FROM event_streams WHERE aggregate_id = {self._placeholder}",
            (aggregate_id,),
        )

    async def last_position(self) -> int:
        return await self._scalar("SELECT MAX(position) FROM event_log", ())
