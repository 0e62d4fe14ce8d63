"""A write whose vector index update fails after its commit (faiss out of memory: simulated,
the one fake here) stands and is answered as committed: on the lone path, in a group committed
on the caller's thread and in one the worker commits. The indexes and label sets are caches of
the file: they are dropped, logged under the plugin, and rebuilt at the next search, which
finds every row. It used to raise out of the commit: a lone write's caller was told it failed
(stored all the same), and a group's other callers were never answered (they hung)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from builtin_plugins.sqlite import SqliteAdapter
from contracts.memory import MemoryQuery
from contracts.storage import SearchParams

from .storage_helpers import ROOM, make_memory


async def test_writes_stand_and_are_answered_when_their_index_update_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    room = MemoryQuery(room_id=ROOM, table_name="messages")
    await db.create_memory(make_memory(0, embedding=[1.0, 0.0, 0.0]))
    await db.build_index("hnsw")
    await db.search_memories([1.0, 0.0, 0.0], room)  # its room's label set kept
    assert db._indexes.has("messages") and db._labels.has("messages")

    def out_of_memory(*args: Any, **kwargs: Any) -> None:
        raise MemoryError("faiss could not grow the index")

    lines: list[Any] = []
    sink = logger.add(lambda m: lines.append(m.record), level="ERROR")
    try:
        with monkeypatch.context() as patched:
            patched.setattr(db._indexes, "apply", out_of_memory)
            lone = make_memory(1, embedding=[0.0, 1.0, 0.0])
            assert await asyncio.wait_for(db.create_memory(lone), 10) == lone.id
            assert not db._indexes.has("messages") and not db._labels.has("messages")
            await db.build_index("hnsw")
            await db.search_memories([1.0, 0.0, 0.0], room)
            group = [make_memory(i, embedding=[0.0, 0.0, 1.0]) for i in range(2, 6)]
            answered = asyncio.gather(*(db.create_memory(m) for m in group))
            assert await asyncio.wait_for(answered, 10) == [m.id for m in group]
            await db.build_index("hnsw")
            hold = threading.Event()
            busy = asyncio.ensure_future(db._run(hold.wait, 10))  # the worker commits these
            queued = [make_memory(i, embedding=[1.0, 1.0, 0.0]) for i in range(6, 9)]
            writes = asyncio.gather(*(db.create_memory(m) for m in queued))
            await asyncio.sleep(0.05)
            hold.set()
            assert await asyncio.wait_for(writes, 10) == [m.id for m in queued]
            await busy
    finally:
        logger.remove(sink)
    assert len(lines) == 3, [r["message"] for r in lines]
    assert all(r["extra"].get("plugin") == "sqlite" for r in lines)
    assert "vector indexes dropped" in lines[0]["message"]
    assert "MemoryError" in lines[0]["message"]
    assert await db.count_memories() == 9
    every = {f"m{i}" for i in range(9)}
    for query, params in (
        (room, SearchParams(k=20)),
        (MemoryQuery(), SearchParams(k=20)),
        (MemoryQuery(), SearchParams(k=20, index_type="hnsw")),
    ):
        found = await db.search_memories([1.0, 0.5, 0.5], query, params)
        assert {m.content.text for m, _ in found} == every
    await db.close()
