"""`EventStore.append_encoded` (pre-serialized events of many aggregates in one transaction),
run against every engine (see conftest.py)."""

from __future__ import annotations

import asyncio
import json
import random
import string
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest

from contracts.eventstore import EncodedEvent, EventStore, EventStoreError

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def enc(aggregate: str, n: int, **fields: object) -> EncodedEvent:
    values: dict[str, object] = {
        "aggregate_id": aggregate,
        "event_type": "thing:happened",
        "data": json.dumps({"n": n, "text": 'é ✓ "quoted"'}),
        "schema_version": 2,
        "timestamp": T0,
    }
    return EncodedEvent(**(values | fields))  # type: ignore[arg-type]


async def test_many_aggregates_in_one_batch(store: EventStore) -> None:
    await store.append_events("a", [], expected_version=0)
    assert await store.append_encoded([enc("a", 1), enc("b", 2), enc("a", 3)]) == 3
    assert await store.append_encoded([enc("b", 4), enc("a", 5)]) == 2
    everything = await store.read_all()
    assert [(e.aggregate_id, e.version, e.position, e.data["n"]) for e in everything] == [
        ("a", 1, 1, 1),
        ("b", 1, 2, 2),
        ("a", 2, 3, 3),
        ("b", 2, 4, 4),
        ("a", 3, 5, 5),
    ]
    assert await store.aggregates() == [("a", 3), ("b", 2)]
    first = everything[0]
    assert first.data == {"n": 1, "text": 'é ✓ "quoted"'}
    assert (first.schema_version, first.timestamp, first.metadata) == (2, T0, {})


async def test_ids_given_are_kept_and_missing_ones_are_time_ordered(store: EventStore) -> None:
    given, correlation = uuid4(), uuid4()
    await store.append_encoded(
        [
            enc("a", 1, id=given, correlation_id=correlation, metadata='{"room_id":"r"}'),
            enc("a", 2),
            enc("a", 3),
        ]
    )
    kept, *fresh = await store.get_events("a")
    assert (kept.id, kept.correlation_id, kept.metadata) == (given, correlation, {"room_id": "r"})
    assert all(isinstance(e.id, UUID) and e.id.version == 7 for e in fresh)
    assert fresh[0].id < fresh[1].id  # time-ordered within the batch


async def test_bad_text_fails_the_whole_batch(store: EventStore) -> None:
    await store.append_encoded([enc("a", 1)])
    with pytest.raises(EventStoreError, match=r"event 1 \(thing:happened\) data is not JSON"):
        await store.append_encoded([enc("a", 2), enc("b", 3, data='{"n": 3,'), enc("a", 4)])
    with pytest.raises(EventStoreError, match=r"event 0 .* metadata must be JSON object text"):
        await store.append_encoded([enc("a", 2, metadata="[]")])
    with pytest.raises(EventStoreError, match="has no aggregate id"):
        await store.append_encoded([enc("", 2)])
    with pytest.raises(EventStoreError, match="timezone-aware"):
        await store.append_encoded([enc("a", 2, timestamp=datetime(2026, 1, 1))])
    with pytest.raises(TypeError, match="not an EncodedEvent"):
        await store.append_encoded([("a", "t", "{}")])  # type: ignore[list-item]
    assert [e.data["n"] for e in await store.read_all()] == [1]
    assert await store.aggregates() == [("a", 1)]


async def test_nan_and_infinity_are_named_as_not_json(store: EventStore) -> None:
    # Python's json module parses NaN; the error must still say which event holds it.
    for constant in ("NaN", "Infinity", "-Infinity"):
        with pytest.raises(EventStoreError, match=r"event 1 \(thing:happened\) data is not JSON"):
            await store.append_encoded([enc("a", 1), enc("a", 2, data=f'{{"x": {constant}}}')])
    assert await store.last_position() == 0


async def test_an_over_long_id_or_type_is_refused_as_a_store_error(store: EventStore) -> None:
    # SQLite stores any text; PostgreSQL's indexes refuse an entry over ~2.7 kB (an error
    # class of its own, not a DataError). Either way it is not a raw driver error.
    rng = random.Random(0)
    long = "".join(rng.choice(string.ascii_letters) for _ in range(9000))
    for event in (enc(long, 1), enc("a", 1, event_type=long)):
        try:
            await store.append_encoded([enc("b", 0), event])
        except EventStoreError as exc:
            assert "nothing was appended" in str(exc)
        else:
            assert (await store.read_all())[-1].data["n"] == 1
    assert await store.get_version("b") in (0, 2)


async def test_fields_of_the_wrong_type_fail_naming_the_field(store: EventStore) -> None:
    # A dict where JSON text belongs, or a UUID as aggregate id, is refused before any I/O
    # with an error naming the field (not a TypeError from inside the check).
    with pytest.raises(EventStoreError, match=r"event 1 \(thing:happened\): data must be JSON"):
        await store.append_encoded([enc("a", 1), enc("a", 2, data={"n": 2})])
    with pytest.raises(EventStoreError, match="metadata must be JSON object text, got None"):
        await store.append_encoded([enc("a", 1, metadata=None)])
    with pytest.raises(EventStoreError, match=r"event 0 .* has no aggregate id .* got UUID\("):
        await store.append_encoded([enc(uuid4(), 1)])  # type: ignore[arg-type]
    with pytest.raises(EventStoreError, match=r"event 0 of 'a' has no event type .* got 7"):
        await store.append_encoded([enc("a", 1, event_type=7)])
    assert await store.last_position() == 0


async def test_a_value_the_database_refuses_is_not_reported_as_bad_json(
    store: EventStore,
) -> None:
    # SQLite stores any 64-bit integer; PostgreSQL's INTEGER column refuses 2**40. Its error
    # must name the aggregate and the database's reason, not blame valid JSON.
    try:
        await store.append_encoded([enc("a", 1, schema_version=2**40)])
    except EventStoreError as exc:
        assert "not JSON" not in str(exc)
        assert "cannot be appended to 'a'" in str(exc) and "out of range" in str(exc)
        assert await store.last_position() == 0
    else:
        assert (await store.get_events("a"))[0].schema_version == 2**40


async def test_a_repeated_id_fails_the_whole_batch(store: EventStore) -> None:
    same = uuid4()
    await store.append_encoded([enc("a", 1, id=same)])
    with pytest.raises(EventStoreError, match="nothing was appended"):
        await store.append_encoded([enc("b", 2), enc("a", 3, id=same)])
    assert await store.last_position() == 1
    assert await store.append_encoded([]) == 0


async def test_concurrent_encoded_batches_keep_versions_gapless(store: EventStore) -> None:
    async def writer(w: int) -> None:
        for b in range(5):
            await store.append_encoded([enc(f"agg{(w + i) % 3}", w * 100 + b) for i in range(4)])

    await asyncio.gather(*(writer(w) for w in range(12)))
    everything = await store.read_all(limit=1000)
    assert [e.position for e in everything] == list(range(1, 12 * 5 * 4 + 1))
    for agg in ("agg0", "agg1", "agg2"):
        versions = [e.version for e in await store.get_events(agg)]
        assert versions == list(range(1, len(versions) + 1)) and len(versions) == 80
