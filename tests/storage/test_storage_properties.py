"""Hypothesis tests of every backend against a plain-Python model of the contract."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contracts.memory import Content, Memory, MemoryQuery, MemoryUpdate
from contracts.storage import BatchError, DatabaseAdapter, SearchParams
from host.memory import MemoryManager
from host.pytest_plugin import StoreFactory

from .storage_helpers import (
    AGENT,
    OTHER_AGENT,
    OTHER_ROOM,
    ROOM,
    T0,
    cosine,
    run,
    stored,
)

SETTINGS = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
DIM = 3

small_floats = st.integers(-4, 4).map(float)
embeddings = st.lists(small_floats, min_size=DIM, max_size=DIM)
timestamps = st.integers(0, 6).map(lambda s: T0 + timedelta(seconds=s))


@st.composite
def memories(draw: st.DrawFn) -> Memory:
    return Memory(
        agent_id=draw(st.sampled_from([AGENT, OTHER_AGENT])),
        entity_id=AGENT,
        room_id=draw(st.sampled_from([ROOM, OTHER_ROOM])),
        table_name=draw(st.sampled_from(["messages", "facts"])),
        content=Content(text=draw(st.text(max_size=5))),
        embedding=draw(st.none() | embeddings),
        metadata={"n": draw(st.integers(0, 3))},
        created_at=draw(timestamps),
        unique=draw(st.booleans()),
    )


@dataclass
class Create:
    batch: list[Memory]
    bad_at: int | None  # a row with the wrong dimension, or a duplicate id, is inserted here
    duplicate: bool


@dataclass
class Update:
    updates: list[tuple[int, dict[str, Any]]]  # (index into known ids, fields)
    bad_at: int | None


@dataclass
class Delete:
    picks: list[int]


update_fields = st.fixed_dictionaries(
    {},
    optional={
        "content": st.builds(Content, text=st.text(max_size=3)),
        "embedding": st.none() | embeddings,
        "metadata": st.dictionaries(st.sampled_from("xyz"), st.integers(0, 2), max_size=2),
        "unique": st.booleans(),
    },
)

operations = st.one_of(
    st.builds(
        Create,
        st.lists(memories(), min_size=1, max_size=6),
        st.none() | st.integers(0, 5),
        st.booleans(),
    ),
    st.builds(
        Update,
        st.lists(st.tuples(st.integers(0, 50), update_fields), min_size=1, max_size=5),
        st.none() | st.integers(0, 4),
    ),
    st.builds(Delete, st.lists(st.integers(0, 50), max_size=4)),
)


def _ordered(model: dict[UUID, Memory]) -> list[Memory]:
    return sorted(model.values(), key=lambda m: (m.created_at, m.id))


@dataclass
class Model:
    """The reference store: rows by id and each table's fixed dimension."""

    rows: dict[UUID, Memory]
    dims: dict[str, int]

    def check_embedding(self, dims: dict[str, int], table: str, embedding: Any) -> bool:
        if embedding is None:
            return True
        if table not in dims:
            dims[table] = len(embedding)
        return dims[table] == len(embedding)


async def _apply(db: DatabaseAdapter, model: Model, op: Any) -> None:
    known = [*model.rows, uuid4()]  # the last one never exists
    if isinstance(op, Create):
        batch = [m.model_copy(update={"id": uuid4()}) for m in op.batch]
        if op.bad_at is not None:
            if op.duplicate:
                bad = batch[0].model_copy(update={"id": known[0]})
            else:
                bad = batch[0].model_copy(update={"id": uuid4(), "embedding": [1.0] * (DIM + 1)})
            batch.insert(min(op.bad_at, len(batch)), bad)
        dims, seen, failing = dict(model.dims), set(model.rows), None
        for index, m in enumerate(batch):
            if m.id in seen or not model.check_embedding(dims, m.table_name, m.embedding):
                failing = index
                break
            seen.add(m.id)
        try:
            await db.create_memories_batch(batch)
        except BatchError as exc:
            assert exc.index == failing, exc
            return
        assert failing is None
        model.dims = dims
        for m in batch:
            model.rows[m.id] = stored(m)
    elif isinstance(op, Update):
        updates = [MemoryUpdate(id=known[i % len(known)], **fields) for i, fields in op.updates]
        if op.bad_at is not None:
            bad = MemoryUpdate(id=known[op.bad_at % len(known)], embedding=[1.0] * (DIM + 2))
            updates.insert(min(op.bad_at, len(updates)), bad)
        dims, staged, failing = dict(model.dims), dict(model.rows), None
        for index, update in enumerate(updates):
            current = staged.get(update.id)
            if current is None:
                continue
            if "embedding" in update.changes and not model.check_embedding(
                dims, current.table_name, update.embedding
            ):
                failing = index
                break
            staged[update.id] = stored(update.apply(current))
        try:
            found = await db.update_memories_batch(updates)
        except BatchError as exc:
            assert exc.index == failing, exc
            return
        assert failing is None
        assert found == [u.id in model.rows for u in updates]
        model.rows, model.dims = staged, dims
    else:
        ids = [known[i % len(known)] for i in op.picks]
        assert await db.delete_memories_batch(ids) == len({i for i in ids if i in model.rows})
        for i in ids:
            model.rows.pop(i, None)


@given(ops=st.lists(operations, min_size=1, max_size=8))
@SETTINGS
def test_random_batches_match_the_model(store_factory: StoreFactory, ops: list[Any]) -> None:
    async def scenario() -> None:
        async with store_factory() as db:
            model = Model({}, {})
            for op in ops:
                await _apply(db, model, op)
                assert await db.get_memories(MemoryQuery(order="asc")) == _ordered(model.rows)
            for memory_id, memory in model.rows.items():
                assert await db.get_memory(memory_id) == memory
            for table in ("messages", "facts"):
                assert await db.embedding_dimension(table) == model.dims.get(table)

    run(scenario())


queries = st.builds(
    MemoryQuery,
    agent_id=st.none() | st.sampled_from([AGENT, OTHER_AGENT]),
    room_id=st.none() | st.sampled_from([ROOM, OTHER_ROOM]),
    table_name=st.none() | st.sampled_from(["messages", "facts"]),
    start=st.none() | timestamps,
    end=st.none() | timestamps,
    unique=st.none() | st.booleans(),
    order=st.sampled_from(["asc", "desc"]),
    limit=st.none() | st.integers(0, 12),
)


@given(
    rows=st.lists(memories(), max_size=25),
    query=queries,
    batch_size=st.integers(1, 7),
)
@SETTINGS
def test_streams_return_exactly_the_query_rows_in_order(
    store_factory: StoreFactory, rows: list[Memory], query: MemoryQuery, batch_size: int
) -> None:
    async def scenario() -> None:
        async with store_factory() as db:
            await db.create_memories_batch(rows)
            expected = sorted(
                (stored(m) for m in rows if query.matches(m)),
                key=query.sort_key,
                reverse=query.order == "desc",
            )[: query.limit]
            manager = MemoryManager(db)
            streamed = [m async for m in manager.get_memories_stream(query, batch_size)]
            assert streamed == expected
            pages = [p async for p in manager.get_memories_batch(query, batch_size)]
            assert all(1 <= len(p) <= batch_size for p in pages)
            assert [m for p in pages for m in p] == expected

    run(scenario())


@given(
    vectors=st.lists(embeddings, min_size=1, max_size=30),
    query=embeddings.filter(any),
    k=st.integers(1, 12),
    room=st.none() | st.sampled_from([ROOM, OTHER_ROOM]),
)
# A zero vector scores 0 (pgvector's cosine distance to it is NaN, which sorted it last).
@example(vectors=[[0.0, 0.0, 0.0], [0.0, 1.0, 0.0]], query=[0.0, -1.0, 0.0], k=1, room=None)
@SETTINGS
def test_flat_search_equals_brute_force_top_k(
    store_factory: StoreFactory,
    vectors: list[list[float]],
    query: list[float],
    k: int,
    room: UUID | None,
) -> None:
    rows = [
        Memory(
            agent_id=AGENT,
            entity_id=AGENT,
            room_id=ROOM if i % 2 else OTHER_ROOM,
            embedding=v,
            created_at=T0,
        )
        for i, v in enumerate(vectors)
    ]

    async def scenario() -> None:
        async with store_factory() as db:
            await db.create_memories_batch(rows)
            got = await db.search_memories(query, MemoryQuery(room_id=room), SearchParams(k=k))
        candidates = [m for m in rows if room is None or m.room_id == room]
        exact = sorted(
            ((cosine(query, m.embedding or []), m.id) for m in candidates), reverse=True
        )[:k]
        assert len(got) == len(exact)
        eps = 1e-5
        for (memory, score), (want, _) in zip(got, exact, strict=True):
            assert abs(score - want) < eps  # same scores, rank by rank
            assert abs(cosine(query, memory.embedding or []) - score) < eps
        # Every row strictly better than the k-th score must be in the result (ties may vary).
        if exact:
            kth = exact[-1][0]
            must = {i for s, i in exact if s > kth + eps}
            assert must <= {m.id for m, _ in got}

    run(scenario())
