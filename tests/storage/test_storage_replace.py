"""`replace_memories`: delete some memories and store others in one transaction, on every backend
(a knowledge document's chunks replaced by its new version: never both versions, never neither)."""

from __future__ import annotations

import asyncio

import pytest

from contracts.memory import Memory, MemoryQuery
from contracts.storage import BatchError, DatabaseAdapter, DimensionMismatchError, SearchParams

from .storage_helpers import make_memory


def _version(v: int, n: int, *, bad_row: int | None = None) -> list[Memory]:
    return [
        make_memory(i, embedding=[1.0, float(v), float(i)] if i != bad_row else [1.0], v=v)
        for i in range(n)
    ]


async def test_replace_deletes_and_writes_in_one_call(memory_store: DatabaseAdapter) -> None:
    old = _version(1, 4)
    record = make_memory(99, table_name="docs", v=1)
    await memory_store.create_memories_batch([*old, record])
    await memory_store.build_index("hnsw")
    new = _version(2, 3)
    again = make_memory(99, table_name="docs", v=2, memory_id=record.id)  # reuses a deleted id
    ids = await memory_store.replace_memories([m.id for m in old] + [record.id], [*new, again])
    assert ids == [m.id for m in [*new, again]]
    rows = await memory_store.get_memories(MemoryQuery(table_name="messages"))
    assert sorted(m.id for m in rows) == sorted(m.id for m in new)
    got = await memory_store.get_memory(record.id)
    assert got is not None and (got.content.model_extra or {})["v"] == 2
    for kind in ("flat", "hnsw"):
        hits = await memory_store.search_memories(
            [1.0, 2.0, 0.0], params=SearchParams(k=10, index_type=kind)
        )
        assert {m.id for m, _ in hits} == {m.id for m in new}, kind
    assert await memory_store.replace_memories([], []) == []


async def test_a_bad_row_deletes_nothing_and_writes_nothing(memory_store: DatabaseAdapter) -> None:
    old = _version(1, 4)
    await memory_store.create_memories_batch(old)
    with pytest.raises(BatchError) as info:
        await memory_store.replace_memories([m.id for m in old], _version(2, 4, bad_row=2))
    assert info.value.index == 2 and isinstance(info.value.cause, DimensionMismatchError)
    rows = await memory_store.get_memories(MemoryQuery(order="asc"))
    assert [m.id for m in rows] == [m.id for m in old]


async def test_a_concurrent_reader_sees_one_whole_version(memory_store: DatabaseAdapter) -> None:
    versions = {1: _version(1, 6), 2: _version(2, 6)}
    await memory_store.create_memories_batch(versions[1])
    seen: list[tuple[int, ...]] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            rows = await memory_store.get_memories(MemoryQuery(room_id=versions[1][0].room_id))
            seen.append(tuple(sorted(int((m.content.model_extra or {})["v"]) for m in rows)))
            await asyncio.sleep(0)

    async def writer() -> None:
        current = 1
        for _ in range(30):
            following = 3 - current
            versions[following] = _version(following, 6)
            await memory_store.replace_memories(
                [m.id for m in versions[current]], versions[following]
            )
            current = following
            await asyncio.sleep(0)
        done.set()

    await asyncio.gather(reader(), reader(), writer())
    assert seen and set(seen) <= {(1,) * 6, (2,) * 6}, set(seen) - {(1,) * 6, (2,) * 6}
