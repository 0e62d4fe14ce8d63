"""Misusing the event store contract is a type error."""

from __future__ import annotations

from contracts.eventstore import EVENT_STORE, DomainEvent, EventStore
from contracts.storage import DatabaseAdapter
from contracts.tokens import Token


async def misuse(store: EventStore, event: DomainEvent) -> None:
    await store.append_events("a", event)  # E: Argument 2 to "append_events" of "EventStore" has incompatible type "DomainEvent"
    await store.append_events("a", [event], expected_version="3")  # E: Argument "expected_version" to "append_events" of "EventStore" has incompatible type "str"
    events: DomainEvent = await store.get_events("a")  # E: Incompatible types in assignment
    await store.get_events(42)  # E: Argument 1 to "get_events" of "EventStore" has incompatible type "int"; expected "str"
    for item in store.subscribe():  # E: "AsyncIterator[DomainEvent]" has no attribute "__iter__"
        del item
    del events


wrong: Token[DatabaseAdapter] = EVENT_STORE  # E: Incompatible types in assignment
