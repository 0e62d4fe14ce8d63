"""The `EventStore` contract, run against every engine (see conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest
from pydantic import ValidationError

from contracts.eventstore import (
    ConcurrencyError,
    DomainEvent,
    EventFilter,
    EventStore,
    EventStoreError,
)

from .conftest import StoreFactory

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def ev(aggregate: str, kind: str = "thing:happened", **data: object) -> DomainEvent:
    return DomainEvent(aggregate_id=aggregate, event_type=kind, data=dict(data))  # type: ignore[arg-type]


async def test_append_assigns_versions_and_positions(store: EventStore) -> None:
    first = await store.append_event(ev("a", n=1))
    assert (first.version, first.position) == (1, 1)
    batch = await store.append_events("a", [ev("a", n=2), ev("a", n=3)], expected_version=1)
    assert [(e.version, e.position) for e in batch] == [(2, 2), (3, 3)]
    other = await store.append_event(ev("b"))
    assert (other.version, other.position) == (1, 4)
    assert await store.get_version("a") == 3
    assert await store.get_version("missing") == 0
    assert await store.last_position() == 4
    assert await store.aggregates() == [("a", 3), ("b", 1)]


async def test_round_trip_keeps_every_field(store: EventStore) -> None:
    cause, corr = uuid4(), uuid4()
    original = DomainEvent(
        aggregate_id="agent-1",
        event_type="model:used",
        data={"params": {"prompt": "hi", "temperature": 0.5}, "output": "hello", "n": [1, None]},
        schema_version=3,
        timestamp=T0 + timedelta(microseconds=123457),
        causation_id=cause,
        correlation_id=corr,
        metadata={"room": "r1", "agent": "Eliza"},
    )
    stored = await store.append_event(original)
    [read] = await store.get_events("agent-1")
    assert read == stored
    assert read.model_dump(exclude={"version", "position"}) == original.model_dump(
        exclude={"version", "position"}
    )
    assert read.timestamp.tzinfo is not None and read.timestamp == original.timestamp


async def test_stale_expected_version_raises_and_writes_nothing(store: EventStore) -> None:
    await store.append_events("a", [ev("a"), ev("a")], expected_version=0)
    with pytest.raises(ConcurrencyError) as info:
        await store.append_events("a", [ev("a"), ev("a"), ev("a")], expected_version=1)
    assert (info.value.aggregate_id, info.value.expected, info.value.actual) == ("a", 1, 2)
    assert "expected version 1" in str(info.value) and "'a'" in str(info.value)
    assert await store.get_version("a") == 2
    assert await store.last_position() == 2
    with pytest.raises(ConcurrencyError):
        await store.append_events("new", [ev("new")], expected_version=3)
    with pytest.raises(ConcurrencyError):
        await store.append_events("a", [], expected_version=0)
    assert await store.append_events("a", [], expected_version=2) == []


async def test_event_version_is_an_expectation(store: EventStore) -> None:
    await store.append_event(ev("a"))
    stored = await store.append_event(ev("a").model_copy(update={"version": 2}))
    assert stored.version == 2
    with pytest.raises(ConcurrencyError):
        await store.append_event(ev("a").model_copy(update={"version": 2}))


async def test_failed_batch_writes_nothing(store: EventStore) -> None:
    existing = await store.append_event(ev("a"))
    dup = ev("a").model_copy(update={"id": existing.id})
    with pytest.raises(EventStoreError, match="nothing was appended"):
        await store.append_events("a", [ev("a"), ev("a"), dup])
    assert await store.get_version("a") == 1
    assert len(await store.read_all()) == 1
    again = await store.append_events("a", [ev("a")])
    assert again[0].version == 2


async def test_bad_batches_are_refused_before_io(store: EventStore) -> None:
    with pytest.raises(ValueError, match="belongs to aggregate 'b'"):
        await store.append_events("a", [ev("a"), ev("b")])
    one = ev("a")
    with pytest.raises(EventStoreError, match="repeats event id"):
        await store.append_events("a", [one, one])
    with pytest.raises(ValueError, match="expected_version"):
        await store.append_events("a", [ev("a")], expected_version=-1)
    assert await store.last_position() == 0


def test_domain_event_validation() -> None:
    with pytest.raises(ValidationError, match="timezone-aware"):
        DomainEvent(aggregate_id="a", event_type="t", timestamp=datetime(2026, 1, 1))
    with pytest.raises(ValidationError):
        DomainEvent(aggregate_id="", event_type="t")
    with pytest.raises(ValidationError):
        DomainEvent(aggregate_id="a", event_type="t", data={"x": object()})  # type: ignore[dict-item]


async def test_reads_by_version_type_time_aggregate_correlation(store: EventStore) -> None:
    corr = uuid4()
    for i in range(6):
        agg = "a" if i % 2 == 0 else "b"
        kind = "message:received" if i < 3 else "message:sent"
        await store.append_event(
            DomainEvent(
                aggregate_id=agg,
                event_type=kind,
                data={"i": i},
                timestamp=T0 + timedelta(minutes=i),
                correlation_id=corr if i in (1, 4) else None,
            )
        )
    assert [e.data["i"] for e in await store.get_events("a")] == [0, 2, 4]
    assert [e.data["i"] for e in await store.get_events("a", from_version=1)] == [2, 4]
    assert [e.data["i"] for e in await store.get_events("a", 1, to_version=2)] == [2]
    sent = await store.get_events_by_type("message:sent")
    assert [e.data["i"] for e in sent] == [3, 4, 5]
    assert [e.data["i"] for e in await store.get_events_by_type("message:sent", 4, 1)] == [4]
    window = EventFilter(since=T0 + timedelta(minutes=2), until=T0 + timedelta(minutes=4))
    assert [e.data["i"] for e in await store.read_all(filter=window)] == [2, 3]
    both = EventFilter(aggregate_id="b", event_types=("message:sent", "other"))
    assert [e.data["i"] for e in await store.read_all(filter=both)] == [3, 5]
    assert [e.data["i"] for e in await store.read_all(filter=EventFilter(correlation_id=corr))] == [
        1,
        4,
    ]
    assert await store.read_all(filter=EventFilter(event_types=())) == []
    page1 = await store.read_all(0, 4)
    page2 = await store.read_all(page1[-1].position or 0, 4)
    assert [e.position for e in page1 + page2] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(ValueError):
        await store.read_all(0, 0)


async def test_streaming_reads_page_through_everything(store: EventStore) -> None:
    await store.append_events("a", [ev("a", i=i) for i in range(25)])
    await store.append_events("b", [ev("b", i=i) for i in range(5)])
    versions = [e.version async for e in store.iter_events("a", batch_size=7)]
    assert versions == list(range(1, 26))
    assert [e.version async for e in store.iter_events("a", from_version=20, batch_size=5)] == [
        21,
        22,
        23,
        24,
        25,
    ]
    positions = [e.position async for e in store.iter_all(batch_size=4)]
    assert positions == list(range(1, 31))
    only_b = [e.data["i"] async for e in store.iter_all(filter=EventFilter(aggregate_id="b"))]
    assert only_b == [0, 1, 2, 3, 4]


async def test_subscribe_catches_up_then_follows(store: EventStore) -> None:
    await store.append_events("a", [ev("a", i=i) for i in range(3)])
    received: list[int] = []
    done = asyncio.Event()

    async def follow() -> None:
        async for event in store.subscribe(1, EventFilter(event_types=("keep",))):
            received.append(int(event.data["i"]))  # type: ignore[arg-type]
            if len(received) == 3:
                done.set()
                return

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    await store.append_event(ev("a", "keep", i=10))
    await store.append_event(ev("b", "skip", i=11))
    await store.append_events("c", [ev("c", "keep", i=12), ev("c", "keep", i=13)])
    await asyncio.wait_for(done.wait(), 5)
    await task
    assert received == [10, 12, 13]


async def test_an_append_made_while_a_subscriber_reads_reaches_it_at_once(
    store: EventStore,
) -> None:
    """Appended while the subscriber is between its read and its wait (nobody waiting to be
    woken): its next wait ends at once, not after the poll interval (an hour here)."""
    store.poll_interval = 3600.0  # type: ignore[attr-defined]
    await store.append_event(ev("a", i=0))
    agen = store.subscribe()
    first = await agen.__anext__()  # suspended in its page, not yet waiting
    await store.append_event(ev("a", i=1))
    second = await asyncio.wait_for(agen.__anext__(), 5)
    assert (first.data, second.data) == ({"i": 0}, {"i": 1})
    await agen.aclose()


async def test_an_append_from_a_writer_thread_while_a_subscriber_reads_reaches_it_at_once(
    tmp_path: Path,
) -> None:
    """The same on the SQLite store's writer-thread path (`append_encoded_blocking`, the
    audit trail's writer): counted on its thread, the append ends the subscriber's next wait."""
    from host.eventstore import SqliteEventStore
    from host.eventstore.common import encode

    store = await SqliteEventStore.open(tmp_path / "events.sqlite3")
    store.poll_interval = 3600.0
    try:
        await store.append_event(ev("a", i=0))
        agen = store.subscribe()
        first = await agen.__anext__()  # suspended in its page, not yet waiting
        await asyncio.to_thread(
            store.append_encoded_blocking, [encode(ev("a", i=1))], json_checked=True
        )
        second = await asyncio.wait_for(agen.__anext__(), 5)
        assert (first.data, second.data) == ({"i": 0}, {"i": 1})
        await agen.aclose()
    finally:
        await store.close()


async def test_subscribe_sees_events_of_another_writer(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        if store.backend == "sqlite" and str(getattr(store, "path", "")) == ":memory:":
            pytest.skip("a private in-memory database has no other writer")
        other = await _second_handle(store)
        try:
            agen = store.subscribe()
            first = asyncio.ensure_future(agen.__anext__())
            await asyncio.sleep(0.05)
            assert not first.done()
            await other.append_event(ev("x", i=1))
            got = await asyncio.wait_for(first, 5)
            assert got.data == {"i": 1} and got.position == 1
            await agen.aclose()
        finally:
            await other.close()


async def _second_handle(store: EventStore) -> EventStore:
    """Another store object on the same database (as a second process would have)."""
    from host.eventstore import PostgresEventStore, SqliteEventStore

    if isinstance(store, SqliteEventStore):
        return await SqliteEventStore.open(store.path)
    assert isinstance(store, PostgresEventStore)
    return await PostgresEventStore.open(store.pool)


async def test_concurrent_appenders_keep_versions_gapless(store: EventStore) -> None:
    """Many tasks appending to one aggregate with optimistic retries: no gap, no loss."""
    writers, per_writer = 8, 10

    async def writer(w: int) -> int:
        conflicts = 0
        for i in range(per_writer):
            while True:
                version = await store.get_version("hot")
                await asyncio.sleep(0)  # let others move the aggregate on
                try:
                    await store.append_events("hot", [ev("hot", w=w, i=i)], version)
                    break
                except ConcurrencyError:
                    conflicts += 1
        return conflicts

    conflicts = await asyncio.gather(*(writer(w) for w in range(writers)))
    events = await store.get_events("hot")
    assert [e.version for e in events] == list(range(1, writers * per_writer + 1))
    assert sorted((e.data["w"], e.data["i"]) for e in events) == sorted(  # type: ignore[type-var]
        (w, i) for w in range(writers) for i in range(per_writer)
    )
    assert sum(conflicts) > 0, "the test must actually race"
    positions = [e.position for e in await store.read_all(limit=1000)]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)


async def test_unchecked_concurrent_appends_never_collide(store: EventStore) -> None:
    results = await asyncio.gather(
        *(store.append_events("a", [ev("a"), ev("a")]) for _ in range(10))
    )
    versions = sorted(e.version for batch in results for e in batch)
    assert versions == list(range(1, 21))
    for batch in results:  # a batch stays contiguous
        assert batch[1].version == batch[0].version + 1


async def test_closed_store_raises(store_factory: StoreFactory) -> None:
    async with store_factory() as store:
        pass
    with pytest.raises(EventStoreError, match="closed"):
        await store.append_event(ev("a"))
    with pytest.raises(EventStoreError, match="closed"):
        await store.read_all()
    await store.close()  # idempotent
