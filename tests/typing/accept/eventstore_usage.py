"""Event store code written against the contract type-checks; both engines satisfy EventStore."""

from __future__ import annotations

from contracts.eventstore import EVENT_STORE, DomainEvent, EventFilter, EventStore
from contracts.tokens import Token
from host.eventstore import PostgresEventStore, SqliteEventStore

token: Token[EventStore] = EVENT_STORE


async def use(store: EventStore) -> int:
    stored: DomainEvent = await store.append_event(
        DomainEvent(aggregate_id="agent-1", event_type="message:received", data={"text": "hi"})
    )
    batch: list[DomainEvent] = await store.append_events(
        "agent-1", [DomainEvent(aggregate_id="agent-1", event_type="x")], expected_version=1
    )
    version: int = await store.get_version("agent-1")
    page = await store.read_all(0, 100, EventFilter(event_types=("message:sent",)))
    async for event in store.iter_events("agent-1", from_version=1):
        assert event.position is not None
    async for followed in store.subscribe(stored.position or 0):
        assert followed.version >= 1
        break
    return version + len(batch) + len(page)


async def engines(path: str, url: str) -> list[EventStore]:
    sqlite: EventStore = await SqliteEventStore.open(path)
    postgres: EventStore = await PostgresEventStore.connect(url)
    return [sqlite, postgres]
