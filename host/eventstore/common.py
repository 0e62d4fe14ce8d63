"""What every event store engine shares: batch checks, the streaming reads and `subscribe`.

An engine implements the storage primitives (`_append`, `get_events`, `read_all`, ...) and
inherits the streaming methods from `StreamingReads`; they page with keyset queries (``version
> n`` / ``position > n``), so a stream of millions of events holds one page in memory.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from contracts.eventstore import DomainEvent, EventFilter, EventStoreError

__all__ = [
    "Notifier",
    "StreamingReads",
    "check_batch",
    "filter_sql",
    "from_micros",
    "to_micros",
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
    """Wakes this process's subscribers when its store appends (others are found by polling)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Event] = set()

    def notify(self) -> None:
        for waiter in self._waiters:
            waiter.set()

    async def wait(self, seconds: float) -> None:
        """Return after the next `notify` or after `seconds`, whichever comes first."""
        waiter = asyncio.Event()
        self._waiters.add(waiter)
        try:
            async with asyncio.timeout(seconds):
                await waiter.wait()
        except TimeoutError:
            pass
        finally:
            self._waiters.discard(waiter)


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
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        version = from_version
        while True:
            page = await self._events_page(aggregate_id, version, batch_size)
            for event in page:
                yield event
            if len(page) < batch_size:
                return
            version = page[-1].version

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
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        position = from_position
        while True:
            page = await self.read_all(position, batch_size, filter)
            for event in page:
                yield event
            if len(page) < batch_size:
                return
            position = page[-1].position or position

    async def subscribe(
        self, from_position: int = 0, filter: EventFilter | None = None
    ) -> AsyncIterator[DomainEvent]:
        position = from_position
        while True:
            page = await self.read_all(position, 500, filter)
            for event in page:
                if event.position is not None:
                    position = event.position
                yield event
            if len(page) < 500:
                await self._notifier.wait(self.poll_interval)
