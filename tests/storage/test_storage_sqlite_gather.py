"""Many tasks at once on the SQLite store (100 rooms): a filtered search whose label set is not
kept yet is answered on the loop's thread when the set is small, and while the worker thread is
busy, write groups and searches wait for it (other tasks running meanwhile) and are then
answered on the loop's thread, instead of queueing behind it: one call sent to the worker used
to send the calls after it there too (builtin_plugins/sqlite/gather.py)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from builtin_plugins.sqlite import SqliteAdapter, gather, search
from contracts.memory import MemoryQuery
from contracts.storage import SearchParams

from .storage_helpers import ROOM, T0, make_memory


def _count_worker_calls(db: SqliteAdapter) -> list[str]:
    """The names of the calls `db` sends to its worker thread from now on."""
    sent: list[str] = []
    run = db._run

    async def counted(fn: Any, *args: Any) -> Any:
        sent.append(getattr(fn, "__name__", repr(fn)))
        return await run(fn, *args)

    db._run = counted  # type: ignore[method-assign]
    return sent


async def test_a_new_speakers_filtered_search_is_answered_on_the_loops_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first search of a filter (a new room or speaker) reads its rows on the loop's thread
    and keeps them, when there are at most `LOOP_ROWS`; more go to the worker, unkept."""
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    speaker, crowd = uuid4(), uuid4()
    await db.create_memories_batch(
        [make_memory(i, embedding=[1.0, float(i)], entity_id=speaker) for i in range(5)]
        + [make_memory(i, embedding=[1.0, -float(i)], entity_id=crowd) for i in range(5, 25)]
    )
    await db.search_memories([1.0, 0.0])  # the flat index is built
    sent = _count_worker_calls(db)
    monkeypatch.setattr(search, "LOOP_ROWS", 10)
    hits = await db.search_memories([0.0, 1.0], MemoryQuery(entity_id=speaker), SearchParams(k=2))
    assert [m.content.text for m, _ in hits] == ["m4", "m3"]
    assert sent == []
    assert (
        db._labels.get(
            "messages", db._indexes.latest("messages", "flat").version, (None, speaker.bytes, None)
        )
        is not None
    )  # type: ignore[union-attr]
    hits = await db.search_memories([0.0, -1.0], MemoryQuery(entity_id=crowd), SearchParams(k=2))
    assert [m.content.text for m, _ in hits] == ["m24", "m23"]
    assert sent == ["_search"]  # 20 rows: scored by the worker
    # a filter that cannot be kept (a time range) would be read at every search: the worker
    since = MemoryQuery(entity_id=speaker, start=T0)
    hits = await db.search_memories([0.0, 1.0], since, SearchParams(k=1))
    assert [m.content.text for m, _ in hits] == ["m4"]
    assert sent == ["_search", "_search"]
    await db.close()


async def test_calls_made_while_the_worker_is_busy_wait_for_it_then_run_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the worker busy (holding the index lock) and other tasks ready, a write group
    keeps gathering and a search waits; once the worker is free the group commits in one
    transaction on the loop's thread and the search is answered there: nothing of theirs goes
    to the worker. With nothing else ready, they do not wait (a wait would spin the loop)."""
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    assert db._conn is not None and db._executor is not None
    await db.create_memories_batch([make_memory(i, embedding=[1.0, float(i)]) for i in range(5)])
    room = MemoryQuery(room_id=ROOM)
    await db.search_memories([1.0, 0.0], room)  # the index and the room's set are kept
    monkeypatch.setattr(gather, "GATHER_FOR", 30.0)
    commits: list[str] = []
    db._conn.set_trace_callback(
        lambda sql: commits.append(threading.current_thread().name) if sql == "COMMIT" else None
    )
    sent = _count_worker_calls(db)
    held, taken = threading.Event(), threading.Event()

    def busy() -> None:
        with db._index_lock:
            taken.set()
            held.wait(10)

    blocker = db._executor.submit(db._locked, busy)
    await asyncio.to_thread(taken.wait, 10)
    turns = 0

    async def others() -> None:  # other tasks at work: the loop has callbacks ready
        nonlocal turns
        while turns < 200:
            turns += 1
            if turns == 50:
                held.set()  # the worker is done meanwhile
            await asyncio.sleep(0)

    running = asyncio.ensure_future(others())
    writes = [asyncio.ensure_future(db.create_memory(make_memory(i))) for i in range(10, 20)]
    found = asyncio.ensure_future(db.search_memories([0.0, 1.0], room, SearchParams(k=1)))
    await asyncio.gather(*writes, running)
    hits = await found
    blocker.result()
    assert [m.content.text for m, _ in hits] == ["m4"]
    assert sent == []
    assert commits == [threading.current_thread().name]  # the 10 writes, one commit, here
    assert await db.count_memories() == 15

    # nothing else ready: the write is queued for the busy worker at once
    held.clear()
    taken.clear()
    blocker = db._executor.submit(db._locked, busy)
    await asyncio.to_thread(taken.wait, 10)
    write = asyncio.ensure_future(db.create_memory(make_memory(30)))
    await asyncio.sleep(0.05)
    assert db._queue or db._draining  # queued behind the worker, not spinning the loop
    held.set()
    await write
    blocker.result()
    await db.close()
