"""The DatabaseAdapter contract, run identically against every backend (see conftest.py)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any
from uuid import uuid4

import numpy as np
import pytest
from pydantic import ValidationError

from contracts.memory import Content, Cursor, Memory, MemoryQuery, MemoryUpdate
from contracts.storage import (
    BatchError,
    DatabaseAdapter,
    DimensionMismatchError,
    DuplicateMemoryError,
    InvalidQueryError,
    MemoryText,
    RoomSummary,
    SearchParams,
    StorageError,
    get_texts,
    search_any,
    search_each,
)
from contracts.vector import Vector
from host.forwarding import ForwardingAdapter
from host.memory import MemoryManager

from .storage_helpers import (
    AGENT,
    OTHER_AGENT,
    OTHER_ROOM,
    ROOM,
    T0,
    cosine,
    f32,
    make_memory,
    stored,
)


async def test_is_a_database_adapter(memory_store: DatabaseAdapter) -> None:
    assert isinstance(memory_store, DatabaseAdapter)
    assert memory_store.backend in {"inmemory", "sqlite", "postgres"}


async def test_create_get_roundtrip_keeps_every_field(memory_store: DatabaseAdapter) -> None:
    memory = make_memory(1, embedding=[0.1, 0.2, 0.3], source="discord", actions=["REPLY"])
    memory = memory.model_copy(update={"unique": True, "metadata": {"k": [1, {"x": None}]}})
    assert await memory_store.create_memory(memory) == memory.id
    got = await memory_store.get_memory(memory.id)
    assert got == stored(memory)
    assert got is not None
    assert got.content.model_extra == {"source": "discord", "actions": ["REPLY"]}
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset() == timedelta(0)
    assert await memory_store.get_memory(uuid4()) is None


async def test_created_at_keeps_microseconds(memory_store: DatabaseAdapter) -> None:
    memory = make_memory(created_at=T0 + timedelta(microseconds=123_457))
    await memory_store.create_memory(memory)
    got = await memory_store.get_memory(memory.id)
    assert got is not None and got.created_at == memory.created_at


async def test_table_name_argument_overrides(memory_store: DatabaseAdapter) -> None:
    memory = make_memory(table_name="messages")
    await memory_store.create_memory(memory, "facts")
    got = await memory_store.get_memory(memory.id)
    assert got is not None and got.table_name == "facts"
    assert await memory_store.count_memories(MemoryQuery(table_name="messages")) == 0
    ids = await memory_store.create_memories_batch([make_memory(2), make_memory(3)], "docs")
    assert [m.id for m in await memory_store.get_memories(MemoryQuery(table_name="docs"))] == (
        ids[::-1]
    )


async def test_duplicate_id_is_refused(memory_store: DatabaseAdapter) -> None:
    memory = make_memory()
    await memory_store.create_memory(memory)
    with pytest.raises(DuplicateMemoryError) as info:
        await memory_store.create_memory(make_memory(memory_id=memory.id), "other")
    assert info.value.memory_id == memory.id
    assert await memory_store.count_memories() == 1


async def test_update_applies_only_the_fields_set(memory_store: DatabaseAdapter) -> None:
    memory = make_memory(embedding=[1.0, 0.0])
    await memory_store.create_memory(memory)
    assert await memory_store.update_memory(MemoryUpdate(id=memory.id, content=Content(text="x")))
    got = await memory_store.get_memory(memory.id)
    assert got == stored(memory).model_copy(update={"content": Content(text="x")})
    assert await memory_store.update_memory(
        MemoryUpdate(id=memory.id, metadata={"m": 2}, unique=True, embedding=[0.0, 2.0])
    )
    got = await memory_store.get_memory(memory.id)
    assert got is not None
    assert (got.metadata, got.unique, got.embedding) == ({"m": 2}, True, [0.0, 2.0])
    assert got.created_at == memory.created_at and got.room_id == memory.room_id
    assert await memory_store.update_memory(MemoryUpdate(id=memory.id, embedding=None))
    got = await memory_store.get_memory(memory.id)
    assert got is not None and got.embedding is None
    assert not await memory_store.update_memory(MemoryUpdate(id=uuid4(), unique=True))


async def test_delete(memory_store: DatabaseAdapter) -> None:
    a, b = make_memory(1), make_memory(2)
    await memory_store.create_memories_batch([a, b])
    assert await memory_store.delete_memory(a.id)
    assert not await memory_store.delete_memory(a.id)
    assert await memory_store.get_memory(a.id) is None
    assert await memory_store.delete_memories_batch([b.id, b.id, uuid4()]) == 1
    assert await memory_store.count_memories() == 0


async def test_returned_memories_are_detached(memory_store: DatabaseAdapter) -> None:
    memory = make_memory(embedding=[1.0, 2.0])
    await memory_store.create_memory(memory)
    memory.metadata["i"] = "changed after create"
    got = await memory_store.get_memory(memory.id)
    assert got is not None and got.metadata["i"] == 0
    got.metadata["i"] = "changed after get"
    assert got.embedding is not None
    with pytest.raises(ValueError, match="read-only"):  # a Vector cannot be changed in place
        got.embedding.array[0] = 3.0
    with pytest.raises(ValueError, match="read-only"):
        np.asarray(got.embedding)[0] = 3.0
    again = await memory_store.get_memory(memory.id)
    assert again is not None and again.metadata["i"] == 0 and again.embedding == [1.0, 2.0]


async def test_metadata_and_content_come_back_as_json(memory_store: DatabaseAdapter) -> None:
    memory = make_memory(1, extra=("a", 1)).model_copy(
        update={"metadata": {"t": (1, 2), "n": {"deep": [None, True, 1.5]}, 3: "x"}}
    )
    await memory_store.create_memory(memory)
    got = await memory_store.get_memory(memory.id)
    assert got is not None
    assert got.metadata == {"t": [1, 2], "n": {"deep": [None, True, 1.5]}, "3": "x"}
    assert got.content.model_extra == {"extra": ["a", 1]}


async def test_non_json_metadata_fails_its_row(memory_store: DatabaseAdapter) -> None:
    batch = [make_memory(i) for i in range(4)]
    batch[2] = batch[2].model_copy(update={"metadata": {"when": object()}})
    with pytest.raises(BatchError) as info:
        await memory_store.create_memories_batch(batch)
    assert info.value.index == 2 and isinstance(info.value.cause, TypeError)
    assert await memory_store.count_memories() == 0
    await memory_store.create_memory(batch[0])
    with pytest.raises(BatchError) as info:
        await memory_store.update_memories_batch(
            [
                MemoryUpdate(id=batch[0].id, unique=True),
                MemoryUpdate(id=batch[0].id, metadata={"x": {1, 2}}),
            ]
        )
    assert info.value.index == 1
    got = await memory_store.get_memory(batch[0].id)
    assert got is not None and not got.unique


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
async def test_nan_and_infinity_in_metadata_fail_their_row(
    memory_store: DatabaseAdapter, value: float
) -> None:
    """JSON has no NaN or infinities (PostgreSQL's json type refuses them, SQLite stored a
    token no JSON reader takes): every store refuses them as the row's ValueError."""
    batch = [make_memory(i) for i in range(4)]
    batch[1] = batch[1].model_copy(update={"metadata": {"deep": [{"score": value}]}})
    with pytest.raises(BatchError) as info:
        await memory_store.create_memories_batch(batch)
    assert info.value.index == 1 and isinstance(info.value.cause, ValueError)
    assert await memory_store.count_memories() == 0
    await memory_store.create_memory(batch[0])
    with pytest.raises(ValueError):
        await memory_store.update_memory(MemoryUpdate(id=batch[0].id, metadata={"x": value}))
    got = await memory_store.get_memory(batch[0].id)
    assert got is not None and got.metadata == batch[0].metadata


# -- batches: all or nothing ---------------------------------------------------------------


async def test_create_batch_returns_ids_in_order(memory_store: DatabaseAdapter) -> None:
    batch = [make_memory(i, embedding=[float(i), 1.0]) for i in range(50)]
    assert await memory_store.create_memories_batch(batch) == [m.id for m in batch]
    assert await memory_store.create_memories_batch([]) == []
    got = await memory_store.get_memories(MemoryQuery(order="asc"))
    assert got == [stored(m) for m in batch]


async def test_create_batch_with_bad_dimension_in_the_middle_writes_nothing(
    memory_store: DatabaseAdapter,
) -> None:
    existing = make_memory(0, embedding=[1.0, 0.0, 0.0])
    await memory_store.create_memory(existing)
    before = await memory_store.get_memories(MemoryQuery())
    batch = [make_memory(i, embedding=[1.0, float(i), 0.0]) for i in range(1, 10)]
    batch[4] = make_memory(5, embedding=[1.0, 2.0])
    with pytest.raises(BatchError) as info:
        await memory_store.create_memories_batch(batch)
    assert info.value.index == 4
    assert isinstance(info.value.cause, DimensionMismatchError)
    assert (info.value.cause.table_name, info.value.cause.expected, info.value.cause.got) == (
        "messages",
        3,
        2,
    )
    assert "row 4" in str(info.value)
    assert await memory_store.get_memories(MemoryQuery()) == before
    assert await memory_store.count_memories() == 1


@pytest.mark.parametrize("size", [9, 130])  # 130: PostgreSQL sends it with COPY
async def test_a_value_overflowing_float32_fails_its_row_and_writes_nothing(
    memory_store: DatabaseAdapter, size: int
) -> None:
    # A Memory refuses it (its embedding is a float32 Vector) with the field named...
    with pytest.raises(ValidationError, match=r"embedding\n.*embedding\[1\] is 1e\+39.*float32"):
        make_memory(0, embedding=[1.0, 1e39])
    with pytest.raises(ValidationError, match="float32"):
        MemoryUpdate(id=uuid4(), embedding=[-1e39, 0.0])
    # ...and a store refuses one that skipped validation (model_copy validates nothing).
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(size)]
    batch[size // 2] = batch[size // 2].model_copy(update={"embedding": [1.0, 1e39]})
    with pytest.raises(BatchError) as info:
        await memory_store.create_memories_batch(batch)
    assert info.value.index == size // 2
    assert isinstance(info.value.cause, ValueError) and "float32" in str(info.value.cause)
    assert await memory_store.count_memories() == 0
    assert await memory_store.embedding_dimension("messages") is None
    await memory_store.create_memory(batch[0])
    with pytest.raises(ValueError, match="float32"):
        await memory_store.update_memory(
            MemoryUpdate.model_construct(id=batch[0].id, embedding=[-1e39, 0.0])
        )
    got = await memory_store.get_memory(batch[0].id)
    assert got is not None and got.embedding == [1.0, 0.0]


async def test_create_batch_with_duplicate_in_the_middle_writes_nothing(
    memory_store: DatabaseAdapter,
) -> None:
    existing = make_memory(0)
    await memory_store.create_memory(existing)
    batch = [make_memory(i) for i in range(1, 8)]
    batch[3] = make_memory(4, memory_id=existing.id)
    with pytest.raises(BatchError) as info:
        await memory_store.create_memories_batch(batch)
    assert info.value.index == 3
    assert isinstance(info.value.cause, DuplicateMemoryError)
    assert await memory_store.count_memories() == 1
    # A repeated id inside one batch is refused the same way, at its second occurrence.
    twin = make_memory(9)
    with pytest.raises(BatchError) as info:
        await memory_store.create_memories_batch([make_memory(8), twin, twin])
    assert info.value.index == 2
    assert await memory_store.count_memories() == 1


async def test_the_first_bad_row_is_reported(memory_store: DatabaseAdapter) -> None:
    existing = make_memory(0, embedding=[1.0, 0.0])
    await memory_store.create_memory(existing)
    batch = [make_memory(i, embedding=[1.0, 1.0]) for i in range(1, 6)]
    batch[1] = make_memory(2, memory_id=existing.id)  # duplicate at 1
    batch[3] = make_memory(4, embedding=[1.0])  # bad dimension at 3
    with pytest.raises(BatchError) as info:
        await memory_store.create_memories_batch(batch)
    assert info.value.index == 1 and isinstance(info.value.cause, DuplicateMemoryError)
    batch[1] = make_memory(2)
    with pytest.raises(BatchError) as info:
        await memory_store.create_memories_batch(batch)
    assert info.value.index == 3 and isinstance(info.value.cause, DimensionMismatchError)
    assert await memory_store.count_memories() == 1


async def test_first_batch_fixing_a_dimension_is_undone_too(memory_store: DatabaseAdapter) -> None:
    batch = [make_memory(1, embedding=[1.0, 0.0]), make_memory(2, embedding=[1.0])]
    with pytest.raises(BatchError):
        await memory_store.create_memories_batch(batch, "fresh")
    assert await memory_store.embedding_dimension("fresh") is None
    await memory_store.create_memory(make_memory(3, embedding=[1.0, 2.0, 3.0]), "fresh")
    assert await memory_store.embedding_dimension("fresh") == 3


async def test_update_batch_with_bad_row_in_the_middle_changes_nothing(
    memory_store: DatabaseAdapter,
) -> None:
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(6)]
    await memory_store.create_memories_batch(batch)
    before = await memory_store.get_memories(MemoryQuery(order="asc"))
    updates = [MemoryUpdate(id=m.id, content=Content(text="new"), unique=True) for m in batch]
    updates[3] = MemoryUpdate(id=batch[3].id, embedding=[1.0, 2.0, 3.0])
    with pytest.raises(BatchError) as info:
        await memory_store.update_memories_batch(updates)
    assert info.value.index == 3 and isinstance(info.value.cause, DimensionMismatchError)
    assert await memory_store.get_memories(MemoryQuery(order="asc")) == before


async def test_update_batch_reports_missing_ids(memory_store: DatabaseAdapter) -> None:
    a, b = make_memory(1), make_memory(2)
    await memory_store.create_memories_batch([a, b])
    result = await memory_store.update_memories_batch(
        [
            MemoryUpdate(id=a.id, unique=True),
            MemoryUpdate(id=uuid4(), unique=True),
            MemoryUpdate(id=b.id, metadata={"z": 1}),
        ]
    )
    assert result == [True, False, True]
    assert await memory_store.update_memories_batch([]) == []
    got_a, got_b = await memory_store.get_memory(a.id), await memory_store.get_memory(b.id)
    assert got_a is not None and got_a.unique
    assert got_b is not None and got_b.metadata == {"z": 1}


async def test_single_ops_raise_the_row_error_not_batch_error(
    memory_store: DatabaseAdapter,
) -> None:
    first = make_memory(1, embedding=[1.0, 0.0])
    await memory_store.create_memory(first)
    with pytest.raises(DimensionMismatchError):
        await memory_store.create_memory(make_memory(2, embedding=[1.0]))
    with pytest.raises(DimensionMismatchError):
        await memory_store.update_memory(MemoryUpdate(id=first.id, embedding=[1.0, 2.0, 3.0]))
    assert issubclass(DimensionMismatchError, StorageError)


async def test_dimension_is_per_table(memory_store: DatabaseAdapter) -> None:
    await memory_store.create_memory(make_memory(1, embedding=[1.0, 0.0]), "a")
    await memory_store.create_memory(make_memory(2, embedding=[1.0, 0.0, 0.0, 0.0]), "b")
    assert await memory_store.embedding_dimension("a") == 2
    assert await memory_store.embedding_dimension("b") == 4
    assert await memory_store.embedding_dimension("c") is None
    await memory_store.create_memory(make_memory(3), "c")  # no embedding: no dimension yet
    assert await memory_store.embedding_dimension("c") is None


# -- queries ---------------------------------------------------------------------------------


async def _populate(db: DatabaseAdapter) -> list[Memory]:
    memories = []
    for i in range(30):
        memories.append(
            make_memory(
                i,
                agent_id=AGENT if i % 2 else OTHER_AGENT,
                room_id=ROOM if i % 3 else OTHER_ROOM,
                table_name="messages" if i % 5 else "facts",
            ).model_copy(update={"unique": i % 4 == 0})
        )
    # Same timestamp for several rows: the id breaks the tie.
    for j in range(5):
        memories.append(make_memory(100 + j, created_at=T0 + timedelta(seconds=10)))
    await db.create_memories_batch(memories)
    return [stored(m) for m in memories]


@pytest.mark.parametrize(
    "query",
    [
        MemoryQuery(),
        MemoryQuery(order="asc"),
        MemoryQuery(agent_id=AGENT),
        MemoryQuery(room_id=OTHER_ROOM, order="asc"),
        MemoryQuery(table_name="facts"),
        MemoryQuery(agent_id=AGENT, room_id=ROOM, table_name="messages", order="asc"),
        MemoryQuery(start=T0 + timedelta(seconds=5), end=T0 + timedelta(seconds=12)),
        MemoryQuery(start=T0 + timedelta(seconds=10), end=T0 + timedelta(seconds=11), order="asc"),
        MemoryQuery(unique=True),
        MemoryQuery(unique=False, limit=7, order="asc"),
        MemoryQuery(limit=0),
        MemoryQuery(limit=3),
        MemoryQuery(entity_id=uuid4()),
    ],
    ids=repr,
)
async def test_get_memories_matches_the_reference(
    memory_store: DatabaseAdapter, query: MemoryQuery
) -> None:
    memories = await _populate(memory_store)
    expected = sorted(
        (m for m in memories if query.matches(m)),
        key=query.sort_key,
        reverse=query.order == "desc",
    )[: query.limit]
    assert await memory_store.get_memories(query) == expected
    assert await memory_store.count_memories(query.model_copy(update={"limit": None})) == len(
        [m for m in memories if query.matches(m)]
    )


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_keyset_cursor_resumes_exactly(memory_store: DatabaseAdapter, order: str) -> None:
    memories = await _populate(memory_store)
    seen: list[Memory] = []
    cursor: Cursor | None = None
    while True:
        query = MemoryQuery(order=order, limit=4, after=cursor)  # type: ignore[arg-type]
        page = await memory_store.get_memories(query)
        if not page:
            break
        seen.extend(page)
        # Round-trip through the opaque HTTP form.
        cursor = Cursor.decode(page[-1].cursor.encode())
    assert seen == sorted(memories, key=lambda m: (m.created_at, m.id), reverse=order == "desc")


# -- vector search ---------------------------------------------------------------------------


async def test_search_empty_and_unknown_tables(memory_store: DatabaseAdapter) -> None:
    assert await memory_store.search_memories([1.0, 0.0]) == []
    await memory_store.create_memory(make_memory(1))  # no embedding
    assert await memory_store.search_memories([1.0, 0.0], MemoryQuery(table_name="none")) == []


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
async def test_search_finds_nearest_by_cosine(
    memory_store: DatabaseAdapter, index_type: str
) -> None:
    vectors = [[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 1.0, 0.0], [-0.1, 0.0, 1.0], [-1.0, 0, 0]]
    batch = [make_memory(i, embedding=v) for i, v in enumerate(vectors)]
    batch.append(make_memory(99))  # no embedding: never a result
    await memory_store.create_memories_batch(batch)
    await memory_store.build_index(index_type)  # type: ignore[arg-type]
    results = await memory_store.search_memories(
        [2.0, 0.0, 0.0], params=SearchParams(k=3, index_type=index_type)
    )
    assert [m.content.text for m, _ in results] == ["m0", "m1", "m2"]
    for (memory, score), vector in zip(results, [vectors[0], vectors[1], vectors[2]], strict=True):
        assert score == pytest.approx(cosine([1.0, 0.0, 0.0], vector), abs=1e-5)
        assert memory == stored(batch[vectors.index(vector)])
    everything = await memory_store.search_memories(
        [1.0, 0.0, 0.0], params=SearchParams(k=100, index_type=index_type)
    )
    assert len(everything) == 5
    assert [s for _, s in everything] == sorted((s for _, s in everything), reverse=True)


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
async def test_search_without_embeddings(memory_store: DatabaseAdapter, index_type: str) -> None:
    batch = [make_memory(i, embedding=[1.0, float(i)], source="s") for i in range(5)]
    await memory_store.create_memories_batch(batch)
    kind: Any = index_type
    await memory_store.build_index(kind)
    full = await memory_store.search_memories([1.0, 0.0], params=SearchParams(k=3, index_type=kind))
    bare = await memory_store.search_memories(
        [1.0, 0.0], params=SearchParams(k=3, index_type=kind, with_embeddings=False)
    )
    assert [(m.id, s) for m, s in bare] == [(m.id, s) for m, s in full]
    for (memory, _), (with_vector, _) in zip(bare, full, strict=True):
        assert memory.embedding is None and with_vector.embedding is not None
        assert memory == with_vector.model_copy(update={"embedding": None})
    again = await memory_store.get_memory(bare[0][0].id)  # the store keeps the vector
    assert again is not None and again.embedding == stored(batch[0]).embedding


async def test_reads_without_embeddings(memory_store: DatabaseAdapter) -> None:
    """``MemoryQuery(with_embeddings=False)``: the same rows in the same order, their vectors
    left unread; pages of a stream keep it; the store keeps the vectors."""
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(6)]
    await memory_store.create_memories_batch(batch)
    for order in ("asc", "desc"):
        query = MemoryQuery(order=order, limit=4)  # type: ignore[arg-type]
        full = await memory_store.get_memories(query)
        bare = await memory_store.get_memories(query.model_copy(update={"with_embeddings": False}))
        assert [m.id for m in bare] == [m.id for m in full] and len(bare) == 4
        for memory, with_vector in zip(bare, full, strict=True):
            assert memory.embedding is None and isinstance(with_vector.embedding, Vector)
            assert memory == with_vector.model_copy(update={"embedding": None})
    pages = MemoryManager(memory_store, page_size=4).get_memories_batch(
        MemoryQuery(order="asc", with_embeddings=False)
    )
    streamed = [m async for page in pages for m in page]
    assert [m.id for m in streamed] == [m.id for m in batch]
    assert all(m.embedding is None for m in streamed)
    again = await memory_store.get_memory(batch[2].id)
    assert again is not None and again.embedding == [1.0, 2.0]


async def test_vectors_come_back_as_read_only_float32_arrays(
    memory_store: DatabaseAdapter,
) -> None:
    """Every read (one, a page, a stream, a search) gives the embedding as a `Vector` over a
    float32 array, equal to what was written; a numpy array or a Vector is written as is."""
    written = [
        make_memory(0).model_copy(update={"embedding": Vector(np.array([3.0, 4.0]))}),
        make_memory(1, embedding=[0.25, -0.5]),
    ]
    await memory_store.create_memories_batch(written)
    one = await memory_store.get_memory(written[0].id)
    page = await memory_store.get_memories(MemoryQuery(order="asc"))
    streamed = [m async for m in MemoryManager(memory_store).get_memories_stream(MemoryQuery())]
    found = [
        m
        for m, _ in await memory_store.search_memories(Vector([1.0, 0.0]), params=SearchParams(k=2))
    ]
    for memory in [one, *page, *streamed, *found]:
        assert memory is not None and isinstance(memory.embedding, Vector)
        assert memory.embedding.array.dtype == np.float32
        assert not memory.embedding.array.flags.writeable
    assert [m.embedding for m in page] == [Vector([3.0, 4.0]), Vector([0.25, -0.5])]
    assert np.asarray(page[1].embedding).tolist() == [0.25, -0.5]
    assert page[0].model_dump_json().count("[3.0,4.0]") == 1  # a JSON list on the wire


async def test_search_threshold_and_filters(memory_store: DatabaseAdapter) -> None:
    batch = [
        make_memory(0, embedding=[1.0, 0.0], room_id=ROOM),
        make_memory(1, embedding=[0.8, 0.6], room_id=OTHER_ROOM),
        make_memory(2, embedding=[0.6, 0.8], room_id=ROOM, agent_id=OTHER_AGENT),
        make_memory(3, embedding=[0.0, 1.0], room_id=ROOM),
        make_memory(4, embedding=[1.0, 0.0], table_name="facts"),
    ]
    await memory_store.create_memories_batch(batch)
    results = await memory_store.search_memories(
        [1.0, 0.0], params=SearchParams(k=10, threshold=0.7)
    )
    assert [m.content.text for m, _ in results] == ["m0", "m1"]
    for index_type in ("flat", "ivf", "hnsw"):
        await memory_store.build_index(index_type)  # type: ignore[arg-type]
        in_room = await memory_store.search_memories(
            [1.0, 0.0],
            MemoryQuery(room_id=ROOM, agent_id=AGENT),
            SearchParams(k=10, index_type=index_type),
        )
        assert [m.content.text for m, _ in in_room] == ["m0", "m3"]
    facts = await memory_store.search_memories(
        [0.0, 1.0], MemoryQuery(table_name="facts"), SearchParams(k=5)
    )
    assert [(m.content.text, round(s, 5)) for m, s in facts] == [("m4", 0.0)]
    after = await memory_store.search_memories(
        [1.0, 0.0], MemoryQuery(start=T0 + timedelta(seconds=2)), SearchParams(k=10)
    )
    assert [m.content.text for m, _ in after] == ["m2", "m3"]


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
async def test_search_leaves_out_the_excluded_ids(
    memory_store: DatabaseAdapter, index_type: str
) -> None:
    """``SearchParams(exclude=...)``: the k best of the other rows, filtered or not (the
    recall provider leaves out what the recent conversation shows)."""
    batch = [make_memory(i, embedding=[1.0, i / 10], room_id=ROOM) for i in range(8)]
    batch.append(make_memory(8, embedding=[1.0, 0.0], room_id=OTHER_ROOM))
    await memory_store.create_memories_batch(batch)
    kind: Any = index_type
    await memory_store.build_index(kind)
    left_out = frozenset({batch[0].id, batch[2].id, batch[8].id})
    for query in (None, MemoryQuery(room_id=ROOM)):
        found = await memory_store.search_memories(
            [1.0, 0.0], query, SearchParams(k=3, index_type=kind, exclude=left_out)
        )
        assert [m.content.text for m, _ in found] == ["m1", "m3", "m4"]
    everything = await memory_store.search_memories(
        [1.0, 0.0], params=SearchParams(k=20, index_type=kind, exclude=left_out)
    )
    assert {m.id for m, _ in everything} == {m.id for m in batch} - left_out


TEXTS = (
    "hello",
    'say "hi"\n\\',
    "h\u00e9llo \u2603 \U0001f600",
    "",
    "\u0000 and \t",
    '{"text": 1}',
)


async def test_get_texts_reads_what_get_memories_reads(memory_store: DatabaseAdapter) -> None:
    """`get_texts` (the store's `get_memory_texts` where it has one, as the SQLite store and
    the host's wrappers do): each memory's id, speaker and ``content.text``, in the order and
    under the filters `get_memories` reads them: a history (a room's latest, a few rows) and a
    listing of more rows than a small read; texts with escapes, other scripts, extra fields."""
    speaker = uuid4()
    batch = []
    for i in range(80):
        memory = make_memory(
            i, room_id=ROOM if i % 4 else OTHER_ROOM, entity_id=speaker if i % 2 else uuid4()
        )
        extra = {"actions": ["REPLY"], "in_reply_to": str(uuid4())} if i % 3 == 0 else {}
        content = Content(text=TEXTS[i % len(TEXTS)] + str(i), **extra)
        batch.append(memory.model_copy(update={"content": content}))
    await memory_store.create_memories_batch(batch)
    queries = [
        MemoryQuery(agent_id=AGENT, room_id=ROOM, table_name="messages", limit=11),
        MemoryQuery(room_id=ROOM, order="asc", with_embeddings=False),
        MemoryQuery(entity_id=speaker, limit=5, order="asc"),
        MemoryQuery(room_id=uuid4()),
    ]
    for query in queries:
        memories = await memory_store.get_memories(query)
        texts = await get_texts(memory_store, query)
        assert texts == [MemoryText(m.id, m.entity_id, m.content.text) for m in memories]
        assert all(type(t) is MemoryText for t in texts)
    # a wrapper changing reads is read through (its `get_memories`), not around
    hidden = ForwardingAdapter(memory_store)
    assert await get_texts(hidden, queries[0]) == await get_texts(memory_store, queries[0])

    class _Odd(ForwardingAdapter):
        async def get_memories(self, query: MemoryQuery) -> list[Memory]:
            return [m for m in await super().get_memories(query) if m.entity_id != speaker]

    odd = await get_texts(_Odd(memory_store), queries[1])
    assert odd and [t.entity_id for t in odd if t.entity_id == speaker] == []


async def test_search_any_answers_the_best_of_each_query_merged(
    memory_store: DatabaseAdapter,
) -> None:
    """`search_any` (the store's `search_memories_any` where it has one, as the SQLite store
    and the host's wrappers do): the k best memories matching any of its queries, each once,
    best first; exactly what searching each query and merging gives (`search_each`), with the
    threshold and the excluded ids, over filters that overlap, of one table or of several."""
    rng = np.random.default_rng(11)
    speaker = uuid4()
    batch = []
    for i in range(60):
        room = (ROOM, OTHER_ROOM, uuid4())[i % 3]
        entity = speaker if i % 4 == 0 else uuid4()
        table = "facts" if i % 10 == 9 else "messages"
        batch.append(
            make_memory(
                i,
                embedding=rng.standard_normal(6).tolist(),
                room_id=room,
                entity_id=entity,
                table_name=table,
                agent_id=AGENT if i % 7 else OTHER_AGENT,
            )
        )
    batch.append(make_memory(99, room_id=ROOM, entity_id=speaker))  # no vector: never found
    await memory_store.create_memories_batch(batch)
    scopes = [
        MemoryQuery(agent_id=AGENT, room_id=ROOM),
        MemoryQuery(agent_id=AGENT, entity_id=speaker),
    ]
    other_table = [*scopes, MemoryQuery(table_name="facts", room_id=ROOM)]
    left_out = frozenset(m.id for m in batch[:12:3])
    for _ in range(6):
        vector = rng.standard_normal(6).tolist()
        for queries, params in (
            (scopes, SearchParams(k=5)),
            (scopes, SearchParams(k=7, threshold=0.1, with_embeddings=False, exclude=left_out)),
            (scopes[:1], SearchParams(k=4)),
            ([*scopes, MemoryQuery(agent_id=AGENT)], SearchParams(k=6)),
            (other_table, SearchParams(k=9)),
            ([], SearchParams(k=3)),
        ):
            found = await search_any(memory_store, vector, queries, params)
            expected = await search_each(memory_store, vector, queries, params)
            assert [m.id for m, _ in found] == [m.id for m, _ in expected]
            assert [s for _, s in found] == pytest.approx([s for _, s in expected], abs=1e-5)
            assert len({m.id for m, _ in found}) == len(found)
            assert all(any(q.matches(m) for q in queries) for m, _ in found)
            assert not {m.id for m, _ in found} & params.exclude
            if not params.with_embeddings:
                assert all(m.embedding is None for m, _ in found)
        # `leave_out`: what a query reads (a room's latest rows: the recent conversation) is
        # left out as if its ids were excluded
        for shown in (
            MemoryQuery(agent_id=AGENT, room_id=ROOM, limit=4),
            MemoryQuery(agent_id=AGENT, room_id=ROOM, limit=30, with_embeddings=False),
            MemoryQuery(entity_id=speaker, order="asc", limit=2),
            MemoryQuery(agent_id=AGENT, room_id=OTHER_ROOM),  # no limit: all its rows
        ):
            ids = frozenset(m.id for m in await memory_store.get_memories(shown))
            for queries in (scopes, scopes[:1], [*scopes, MemoryQuery(agent_id=AGENT)]):
                params = SearchParams(k=6, exclude=left_out)
                found = await search_any(memory_store, vector, queries, params, leave_out=shown)
                expected = await search_each(
                    memory_store, vector, queries, SearchParams(k=6, exclude=left_out | ids)
                )
                assert [m.id for m, _ in found] == [m.id for m, _ in expected]
                assert not {m.id for m, _ in found} & (ids | left_out)
    one_table = await search_any(memory_store, [1.0] * 6, scopes, SearchParams(k=50))
    expected_ids = {
        m.id
        for m in batch
        if m.embedding is not None
        and m.table_name == "messages"
        and any(q.matches(m) for q in scopes)
    }
    assert {m.id for m, _ in one_table} == expected_ids


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
async def test_a_selective_filter_finds_every_matching_row(
    memory_store: DatabaseAdapter, index_type: str
) -> None:
    """k rows match the filter: an approximate index returns all k, in exact order (a filtered
    ANN scan of a big table sees only its neighbourhood of the query, not the room's rows)."""
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((3000, 8))
    in_room = set(rng.choice(len(vectors), 12, replace=False).tolist())
    batch = [
        make_memory(i, embedding=v.tolist(), room_id=ROOM if i in in_room else OTHER_ROOM)
        for i, v in enumerate(vectors)
    ]
    await memory_store.create_memories_batch(batch)
    await memory_store.build_index(index_type)  # type: ignore[arg-type]
    query = rng.standard_normal(8).tolist()
    results = await memory_store.search_memories(
        query, MemoryQuery(room_id=ROOM), SearchParams(k=10, index_type=index_type)
    )
    scores = {i: cosine(query, vectors[i].tolist()) for i in in_room}
    best = sorted(in_room, key=lambda i: -scores[i])[:10]
    assert [m.id for m, _ in results] == [batch[i].id for i in best]
    assert [s for _, s in results] == pytest.approx([scores[i] for i in best], abs=1e-5)
    everything = await memory_store.search_memories(
        query, MemoryQuery(room_id=ROOM), SearchParams(k=50, index_type=index_type)
    )
    assert {m.id for m, _ in everything} == {batch[i].id for i in in_room}


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
async def test_search_follows_writes(memory_store: DatabaseAdapter, index_type: str) -> None:
    """Indexes, once built, stay in step with later creates, updates, deletes."""
    kind = index_type
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(20)]
    await memory_store.create_memories_batch(batch)
    await memory_store.build_index(kind)  # type: ignore[arg-type]
    first = await memory_store.search_memories(
        [1.0, 0.0], params=SearchParams(k=1, index_type=kind)
    )
    assert first[0][0].id == batch[0].id
    await memory_store.delete_memory(batch[0].id)
    newcomer = make_memory(50, embedding=[0.0, -1.0])
    await memory_store.create_memory(newcomer)
    await memory_store.update_memory(MemoryUpdate(id=batch[5].id, embedding=[1.0, 0.001]))
    results = await memory_store.search_memories(
        [1.0, 0.0], params=SearchParams(k=2, index_type=kind)
    )
    assert [m.id for m, _ in results] == [batch[5].id, batch[1].id]
    results = await memory_store.search_memories(
        [0.0, -1.0], params=SearchParams(k=1, index_type=kind)
    )
    assert results[0][0].id == newcomer.id
    await memory_store.update_memory(MemoryUpdate(id=newcomer.id, embedding=None))
    results = await memory_store.search_memories(
        [0.0, -1.0], params=SearchParams(k=30, index_type=kind)
    )
    assert newcomer.id not in {m.id for m, _ in results}
    assert len(results) == 19


@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
async def test_search_follows_a_batch_updating_one_row_twice(
    memory_store: DatabaseAdapter, index_type: str
) -> None:
    """The last update of a row in a batch is the one an index holds: no stale vector of an
    earlier update stays behind, as a second hit or as the vector of a cleared embedding."""
    kind: Any = index_type
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(6)]
    await memory_store.create_memories_batch(batch)
    await memory_store.build_index(kind)
    moved, cleared = batch[4], batch[3]
    await memory_store.update_memories_batch(
        [
            MemoryUpdate(id=moved.id, embedding=[0.0, 1.0]),
            MemoryUpdate(id=cleared.id, embedding=[-1.0, 0.0]),
            MemoryUpdate(id=moved.id, embedding=[-1.0, -1.0]),
            MemoryUpdate(id=cleared.id, embedding=None),
        ]
    )
    for query in ([0.0, 1.0], [-1.0, 0.0], [-1.0, -1.0]):
        results = await memory_store.search_memories(
            query, params=SearchParams(k=10, index_type=kind)
        )
        ids = [m.id for m, _ in results]
        assert len(ids) == len(set(ids)) == 5, query
        assert cleared.id not in ids
        got = {m.id: (m, s) for m, s in results}
        assert got[moved.id][0].embedding == [-1.0, -1.0]
        assert got[moved.id][1] == pytest.approx(cosine(query, [-1.0, -1.0]), abs=1e-5)


async def test_build_index_warms_every_index_type_up(memory_store: DatabaseAdapter) -> None:
    """`build_index` returns once the index serves; nothing to do for a table without
    embeddings or for flat; an unknown index type is refused like in a search."""
    await memory_store.build_index("hnsw")  # no table yet
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(30)]
    await memory_store.create_memories_batch(batch)
    await memory_store.create_memory(make_memory(99), "plain")  # no embedding
    await memory_store.build_index("hnsw", "plain")
    for kind in ("flat", "ivf", "hnsw"):
        await memory_store.build_index(kind)  # type: ignore[arg-type]
        await memory_store.build_index(kind)  # type: ignore[arg-type]  # built: at once
        found = await memory_store.search_memories(
            [1.0, 0.0], params=SearchParams(k=2, index_type=kind)
        )
        assert [m.id for m, _ in found] == [batch[0].id, batch[1].id]
    with pytest.raises(InvalidQueryError, match="index_type"):
        await memory_store.build_index("annoy")  # type: ignore[arg-type]


async def test_search_argument_errors(memory_store: DatabaseAdapter) -> None:
    await memory_store.create_memory(make_memory(1, embedding=[1.0, 0.0]))
    with pytest.raises(DimensionMismatchError) as info:
        await memory_store.search_memories([1.0, 0.0, 0.0])
    assert (info.value.expected, info.value.got) == (2, 3)
    with pytest.raises(InvalidQueryError):
        await memory_store.search_memories([1.0, 0.0], params=SearchParams(k=0))
    with pytest.raises(InvalidQueryError):
        await memory_store.search_memories([1.0, 0.0], params=SearchParams(index_type="annoy"))  # type: ignore[arg-type]
    with pytest.raises(InvalidQueryError):
        await memory_store.search_memories([0.0, 0.0])


async def test_concurrent_writers_and_readers(memory_store: DatabaseAdapter) -> None:
    async def writer(w: int) -> None:
        for j in range(5):
            batch = [
                make_memory(w * 100 + j * 10 + n, embedding=[1.0, float(n)]) for n in range(10)
            ]
            await memory_store.create_memories_batch(batch)

    async def reader() -> None:
        for _ in range(10):
            await memory_store.get_memories(MemoryQuery(limit=20))
            await memory_store.search_memories(
                [1.0, 0.0], params=SearchParams(k=3, index_type="hnsw")
            )

    await asyncio.gather(*(writer(w) for w in range(4)), reader(), reader())
    assert await memory_store.count_memories() == 200
    assert len(await memory_store.search_memories([1.0, 0.0], params=SearchParams(k=300))) == 200


async def test_embeddings_come_back_as_float32(memory_store: DatabaseAdapter) -> None:
    memory = make_memory(embedding=[0.1, 1 / 3, 1e-8])
    await memory_store.create_memory(memory)
    got = await memory_store.get_memory(memory.id)
    assert got is not None and got.embedding == f32([0.1, 1 / 3, 1e-8])


async def test_search_knobs_out_of_range(memory_store: DatabaseAdapter) -> None:
    """A negative ``ef_search`` (HNSW) or ``probes`` (IVF) is refused, whatever the table's
    size; 0 means the default, a knob of another index type is ignored, and values past an
    engine's own limit still search."""
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(5)]
    await memory_store.create_memories_batch(batch)
    with pytest.raises(InvalidQueryError, match="ef_search"):
        await memory_store.search_memories(
            [1.0, 0.0], params=SearchParams(index_type="hnsw", ef_search=-1)
        )
    with pytest.raises(InvalidQueryError, match="probes"):
        await memory_store.search_memories(
            [1.0, 0.0], params=SearchParams(index_type="ivf", probes=-1)
        )
    with pytest.raises(InvalidQueryError, match="ef_search"):
        await memory_store.search_memories(
            [1.0, 0.0], MemoryQuery(room_id=ROOM), SearchParams(index_type="hnsw", ef_search=-1)
        )
    nearest = [batch[0].id, batch[1].id]
    for kind, probes, ef_search in (
        ("flat", -1, -1),
        ("hnsw", -1, 0),
        ("ivf", 0, -1),
        ("hnsw", None, 5000),
        ("ivf", 40_000, None),
    ):
        found = await memory_store.search_memories(
            [1.0, 0.0],
            params=SearchParams(k=2, index_type=kind, probes=probes, ef_search=ef_search),
        )
        assert [m.id for m, _ in found] == nearest, (kind, probes, ef_search)


async def test_room_summaries_group_matching_memories_by_room(
    memory_store: DatabaseAdapter,
) -> None:
    """One grouped query: each room's count and newest time among the filtered memories, most
    recently active first, whatever the query's order, limit and cursor."""
    third = uuid4()
    await memory_store.create_memories_batch(
        [
            make_memory(0),
            make_memory(1, room_id=OTHER_ROOM),
            make_memory(2, table_name="facts"),
            make_memory(3, room_id=OTHER_ROOM),
            make_memory(4, agent_id=OTHER_AGENT, room_id=third),
            make_memory(5),
        ]
    )
    assert await memory_store.room_summaries(MemoryQuery(agent_id=OTHER_AGENT)) == [
        RoomSummary(third, 1, T0 + timedelta(seconds=4))
    ]
    expected = [
        RoomSummary(ROOM, 3, T0 + timedelta(seconds=5)),
        RoomSummary(OTHER_ROOM, 2, T0 + timedelta(seconds=3)),
    ]
    cursor = Cursor(T0, uuid4())
    for query in (
        MemoryQuery(agent_id=AGENT),
        MemoryQuery(agent_id=AGENT, order="asc", limit=1, after=cursor),
    ):
        assert await memory_store.room_summaries(query) == expected
    assert [r.room_id for r in await memory_store.room_summaries()] == [ROOM, third, OTHER_ROOM]
    facts = await memory_store.room_summaries(MemoryQuery(table_name="facts"))
    assert facts == [RoomSummary(ROOM, 1, T0 + timedelta(seconds=2))]
    window = MemoryQuery(
        agent_id=AGENT, start=T0 + timedelta(seconds=1), end=T0 + timedelta(seconds=4)
    )
    assert await memory_store.room_summaries(window) == [
        RoomSummary(OTHER_ROOM, 2, T0 + timedelta(seconds=3)),
        RoomSummary(ROOM, 1, T0 + timedelta(seconds=2)),
    ]
    assert await memory_store.room_summaries(MemoryQuery(agent_id=uuid4())) == []
