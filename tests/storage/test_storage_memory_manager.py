"""The streaming memory manager over every backend: keyset pages, stability, backpressure."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from contracts.memory import Memory, MemoryQuery
from contracts.storage import DatabaseAdapter, InvalidQueryError
from host.memory import MemoryManager

from .storage_helpers import AGENT, OTHER_AGENT, T0, make_memory, stored


class CountingStore:
    """Forwards to a store, recording each get_memories query."""

    def __init__(self, db: DatabaseAdapter) -> None:
        self.db = db
        self.queries: list[MemoryQuery] = []

    async def get_memories(self, query: MemoryQuery) -> list[Memory]:
        self.queries.append(query)
        return await self.db.get_memories(query)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.db, name)


async def _fill(db: DatabaseAdapter, n: int, *, seed: int = 0) -> list[Memory]:
    rng = random.Random(seed)
    # Few distinct timestamps: many ties broken by id.
    batch = [
        make_memory(i, created_at=T0 + timedelta(seconds=rng.randrange(n // 4 + 1)))
        for i in range(n)
    ]
    await db.create_memories_batch(batch)
    return [stored(m) for m in batch]


@pytest.mark.parametrize("order", ["asc", "desc"])
async def test_stream_is_stable_under_concurrent_inserts_and_deletes(
    memory_store: DatabaseAdapter, order: str
) -> None:
    original = await _fill(memory_store, 120)
    rng = random.Random(1)
    manager = MemoryManager(memory_store, page_size=7)
    seen: list[Memory] = []
    deleted: set[UUID] = set()
    query = MemoryQuery(order=order)  # type: ignore[arg-type]
    async for page in manager.get_memories_batch(query):
        seen.extend(page)
        # Between pages: insert rows before, at and after the cursor, delete a not-yet-seen row.
        cursor = page[-1].created_at
        fresh = [
            make_memory(1000 + len(seen) + j, created_at=cursor + timedelta(seconds=delta))
            for j, delta in enumerate((-3, 0, 0, 2))
        ]
        await memory_store.create_memories_batch(fresh)
        unseen = [m for m in original if m.id not in {s.id for s in seen} and m.id not in deleted]
        if unseen and rng.random() < 0.3:
            victim = rng.choice(unseen)
            await memory_store.delete_memory(victim.id)
            deleted.add(victim.id)
    seen_ids = [m.id for m in seen]
    assert len(seen_ids) == len(set(seen_ids)), "a row was repeated"
    expected = [m.id for m in original if m.id not in deleted]
    got_original = [i for i in seen_ids if i in {m.id for m in original}]
    reverse = order == "desc"
    assert got_original == [
        m.id
        for m in sorted(original, key=lambda m: (m.created_at, m.id), reverse=reverse)
        if m.id in set(expected)
    ], "a row that existed when the stream began was skipped or misordered"
    keys = [(m.created_at, m.id) for m in seen]
    assert keys == sorted(keys, reverse=reverse)


async def test_backpressure_fetches_a_page_only_when_asked(memory_store: DatabaseAdapter) -> None:
    await _fill(memory_store, 25)
    counting = CountingStore(memory_store)
    manager = MemoryManager(counting, page_size=10)  # type: ignore[arg-type]
    stream = manager.get_memories_stream(MemoryQuery(order="asc"))
    assert counting.queries == []  # nothing before the first item is asked for
    await anext(stream)
    assert len(counting.queries) == 1
    for _ in range(9):
        await anext(stream)
    assert len(counting.queries) == 1  # the page is consumed, but the next one not requested
    await anext(stream)
    assert len(counting.queries) == 2
    rest = [m async for m in stream]
    assert len(rest) == 14
    # Every request is bounded by the page size and resumes from a cursor, never an offset.
    assert all(q.limit == 10 for q in counting.queries)
    assert [q.after is None for q in counting.queries] == [True, False, False]


async def test_limit_after_and_agent_binding(memory_store: DatabaseAdapter) -> None:
    batch = [make_memory(i, agent_id=AGENT if i % 2 else OTHER_AGENT) for i in range(30)]
    await memory_store.create_memories_batch(batch)
    manager = MemoryManager(memory_store, page_size=4)
    limited = [m async for m in manager.get_memories_stream(MemoryQuery(order="asc", limit=9))]
    assert [m.id for m in limited] == [m.id for m in batch[:9]]
    resumed = [
        m
        async for m in manager.get_memories_stream(
            MemoryQuery(order="asc", after=limited[-1].cursor, limit=3)
        )
    ]
    assert [m.id for m in resumed] == [m.id for m in batch[9:12]]
    mine = [m async for m in manager.for_agent(AGENT).get_memories_stream(MemoryQuery())]
    assert [m.id for m in mine] == [m.id for m in batch if m.agent_id == AGENT][::-1]
    pages = [p async for p in manager.get_memories_batch(MemoryQuery(), batch_size=8)]
    assert [len(p) for p in pages] == [8, 8, 8, 6]
    assert [p async for p in manager.get_memories_batch(MemoryQuery(limit=0))] == []


async def test_empty_store_and_bad_page_size(memory_store: DatabaseAdapter) -> None:
    manager = MemoryManager(memory_store)
    assert [m async for m in manager.get_memories_stream(MemoryQuery())] == []
    with pytest.raises(InvalidQueryError):
        MemoryManager(memory_store, page_size=0)
    with pytest.raises(InvalidQueryError):
        [p async for p in manager.get_memories_batch(MemoryQuery(), batch_size=-1)]
