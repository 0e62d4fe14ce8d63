"""The event store contract: `DomainEvent` and the append-only, versioned `EventStore` protocol.

Every event belongs to an aggregate (for the audit trail: one agent) and carries that aggregate's
``version`` (1, 2, 3... gapless and unique per aggregate) and a global ``position`` (strictly
increasing across the store, in commit order). Both are assigned by the store on append. Appends
use optimistic concurrency: ``append_events(aggregate_id, events, expected_version)`` writes
nothing and raises `ConcurrencyError` if the aggregate moved on since `expected_version`.

Engines live in ``host.eventstore`` (SQLite, PostgreSQL); the ``audit`` plugin binds
`EVENT_STORE` and records the runtime's events into it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NamedTuple, Protocol, runtime_checkable
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, JsonValue, SecretStr, field_validator

from contracts.errors import AgentHostError
from contracts.tokens import Token

__all__ = [
    "EVENT_STORE",
    "ConcurrencyError",
    "DomainEvent",
    "EncodedEvent",
    "EventFilter",
    "EventStore",
    "EventStoreError",
    "EventStoreSettings",
    "EventStoreUnavailableError",
    "UnknownEventTypeError",
]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DomainEvent(BaseModel):
    """One recorded fact about an aggregate.

    Build one with ``aggregate_id``, ``event_type`` and ``data``; the store fills ``version``
    and ``position`` when it appends it (values given are used as expectations, see
    `EventStore.append_event`). ``data`` is JSON (a pydantic payload dumped with
    ``model_dump(mode="json")``); ``schema_version`` is the version of that payload's shape, so
    readers of old events can upgrade them.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID = Field(default_factory=uuid4)
    aggregate_id: str = Field(min_length=1, max_length=200)
    """The stream this event belongs to; the audit plugin uses the agent id."""
    event_type: str = Field(min_length=1, max_length=200)
    """What happened, e.g. ``message:received`` (the bus event name for recorded events)."""
    data: dict[str, JsonValue] = Field(default_factory=dict)
    schema_version: int = Field(default=1, ge=1)
    timestamp: datetime = Field(default_factory=_utc_now)
    version: int = Field(default=0, ge=0)
    """Position in its aggregate, from 1; 0 until stored."""
    position: int | None = Field(default=None, ge=1)
    """Global position in the store, from 1; None until stored."""
    causation_id: UUID | None = None
    """The event (or message) that caused this one."""
    correlation_id: UUID | None = None
    """Groups the events of one interaction (the audit plugin uses the incoming message id)."""
    metadata: dict[str, JsonValue] = Field(default_factory=dict)
    """Free-form context: agent name, room id, plugin, ..."""

    @field_validator("timestamp")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware (use datetime.now(UTC))")
        return value.astimezone(UTC)


class EncodedEvent(NamedTuple):
    """An event ready for the log, its data and metadata already JSON object text.

    What `EventStore.append_encoded` takes: a writer that serializes its payloads itself (the
    audit trail, once per event, in pydantic-core) hands the text over as is, with no
    `DomainEvent` built and no second encoding. Fields mean what `DomainEvent`'s do."""

    aggregate_id: str
    event_type: str
    data: str
    """A JSON object, as text."""
    schema_version: int
    timestamp: datetime
    """Timezone-aware."""
    id: UUID | None = None
    """None: the store gives the event a random (version 4) id."""
    causation_id: UUID | None = None
    correlation_id: UUID | None = None
    metadata: str = "{}"
    """A JSON object, as text."""


class EventFilter(BaseModel):
    """Which events a global read (`EventStore.read_all`, `EventStore.subscribe`) returns.

    Every given field narrows the result; ``since`` is inclusive, ``until`` exclusive.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    aggregate_id: str | None = None
    event_types: tuple[str, ...] | None = None
    since: datetime | None = None
    until: datetime | None = None
    correlation_id: UUID | None = None


class EventStoreError(AgentHostError):
    """Base of every error an event store raises on purpose."""


class EventStoreUnavailableError(EventStoreError, ConnectionError):
    """The store's server cannot be reached, or has no free connection now: transient, unlike
    its other errors (an append refused for what it holds); worth retrying later."""


class ConcurrencyError(EventStoreError):
    """An append whose expected version is stale; nothing of it was written."""

    def __init__(self, aggregate_id: str, expected: int, actual: int) -> None:
        super().__init__(
            f"concurrency conflict on aggregate {aggregate_id!r}: expected version {expected},"
            f" but it is at version {actual}; nothing was appended (re-read and retry)"
        )
        self.aggregate_id = aggregate_id
        self.expected = expected
        self.actual = actual


class UnknownEventTypeError(EventStoreError, LookupError):
    """A stored event whose type no registered event knows (replay cannot type its payload)."""

    def __init__(self, event_type: str, position: int | None = None) -> None:
        where = f" at position {position}" if position is not None else ""
        super().__init__(f"stored event{where} has unknown event type {event_type!r}")
        self.event_type = event_type
        self.position = position


@runtime_checkable
class EventStore(Protocol):
    """An append-only, versioned event log. Safe under concurrent appenders (tasks and
    processes sharing the database): versions stay gapless and unique, no event is lost, and
    positions only ever grow in commit order (a follower never skips an event)."""

    backend: str
    """Short engine name: ``sqlite`` or ``postgres``."""

    async def append_event(self, event: DomainEvent) -> DomainEvent:
        """Append one event; returns it with its version and position.

        ``event.version`` 0 appends at the end; a non-zero version must be the aggregate's next
        one, else `ConcurrencyError`."""
        ...

    async def append_events(
        self,
        aggregate_id: str,
        events: Sequence[DomainEvent],
        expected_version: int | None = None,
    ) -> list[DomainEvent]:
        """Append `events` to `aggregate_id` in one transaction, numbered from its version + 1.

        `expected_version` (0 for a new aggregate) must equal the aggregate's current version,
        else `ConcurrencyError` and nothing is written; None appends without the check. Every
        event's ``aggregate_id`` must be `aggregate_id` (ValueError otherwise)."""
        ...

    async def append_encoded(self, events: Sequence[EncodedEvent]) -> int:
        """Append already-encoded events, of any aggregates, in one transaction; how many.

        Each event goes to the end of its aggregate (no expected version: for writers that
        never conflict, like the audit trail), so versions stay gapless and positions follow
        the order of `events`. Text that is not a JSON object fails the whole batch
        (`EventStoreError`, nothing written), as does an aggregate id or event type that is empty
        or not text."""
        ...

    async def get_events(
        self, aggregate_id: str, from_version: int = 0, to_version: int | None = None
    ) -> list[DomainEvent]:
        """The aggregate's events with ``from_version < version <= to_version``, in order."""
        ...

    def iter_events(
        self, aggregate_id: str, from_version: int = 0, batch_size: int = 1000
    ) -> AsyncIterator[DomainEvent]:
        """Stream the aggregate's events after `from_version`, `batch_size` rows per query."""
        ...

    async def get_events_by_type(
        self, event_type: str, from_position: int = 0, limit: int | None = None
    ) -> list[DomainEvent]:
        """Events of `event_type` after global `from_position`, in global order."""
        ...

    async def read_all(
        self, from_position: int = 0, limit: int = 1000, filter: EventFilter | None = None
    ) -> list[DomainEvent]:
        """At most `limit` events with ``position > from_position`` matching `filter`, in
        global order. Pass the last position read to get the next page."""
        ...

    def iter_all(
        self, from_position: int = 0, filter: EventFilter | None = None, batch_size: int = 1000
    ) -> AsyncIterator[DomainEvent]:
        """Stream every matching event after `from_position` (to the end at call time)."""
        ...

    def subscribe(
        self, from_position: int = 0, filter: EventFilter | None = None
    ) -> AsyncIterator[DomainEvent]:
        """Catch up from `from_position`, then follow new events (from any writer) forever;
        close the iterator (``aclose``) or cancel its task to stop."""
        ...

    async def get_version(self, aggregate_id: str) -> int:
        """The aggregate's current version (0 if it has no events)."""
        ...

    async def last_position(self) -> int:
        """The highest global position (0 for an empty store)."""
        ...

    async def aggregates(self) -> list[tuple[str, int]]:
        """Every aggregate id with its current version, sorted by id."""
        ...

    async def close(self) -> None:
        """Release connections and threads; the store is unusable afterwards."""
        ...


EVENT_STORE: Token[EventStore] = Token("event_store", EventStore)
"""The event store service; bound by the ``audit`` plugin."""


@runtime_checkable
class EventStoreSettings(Protocol):
    """Where an event-store plugin's settings put its store (the ``audit`` plugin's section):
    ``agenthost events`` and ``agenthost db migrate`` open it from them without a host."""

    backend: Literal["auto", "sqlite", "postgres"]
    """``auto``: PostgreSQL when the memory store is PostgreSQL (or `postgres_url` is set)."""
    postgres_url: SecretStr | None
    """A pool of its own on this server (None: share the memory store's)."""
    share_memory_database: bool
    """SQLite: in the memory store's own file."""

    def resolve_path(self, data_dir: str | Path | None = None) -> Path:
        """Its own SQLite file for `data_dir`."""
        ...
