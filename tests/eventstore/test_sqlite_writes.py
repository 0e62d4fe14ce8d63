"""SQLite appends on the event loop's thread: never waiting there for another writer, and the
WAL still checkpointed (by the worker thread)."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts.eventstore import DomainEvent, EncodedEvent, EventStoreError
from host.eventstore import SqliteEventStore
from host.eventstore import sqlite as engine


def enc(n: int, size: int = 10) -> EncodedEvent:
    data = json.dumps({"n": n, "pad": "x" * size})
    return EncodedEvent("agg", "t", data, 1, datetime.now(UTC))


async def test_a_held_write_lock_sends_the_append_to_the_worker(tmp_path: Path) -> None:
    path = tmp_path / "events.sqlite3"
    store = await SqliteEventStore.open(path)
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")  # another process's writer, mid-transaction
    release = threading.Event()
    holder = threading.Thread(target=lambda: (release.wait(), other.execute("COMMIT")))
    holder.start()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    ticker = asyncio.get_running_loop().create_task(tick())
    try:
        append = asyncio.get_running_loop().create_task(store.append_encoded([enc(1)]))
        await asyncio.sleep(0.05)
        assert not append.done()  # waiting for the lock, on the worker thread
        seen = ticks
        await asyncio.sleep(0.05)
        assert ticks > seen  # ... while the loop keeps running
        release.set()
        assert await append == 1
        stored = await store.append_events(
            "agg", [DomainEvent(aggregate_id="agg", event_type="t")], expected_version=1
        )
        assert [e.version for e in stored] == [2]
    finally:
        release.set()
        ticker.cancel()
        holder.join()
        other.close()
        await store.close()


async def test_the_wal_is_checkpointed_without_auto_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "CHECKPOINT_PAGES", 50)
    path = tmp_path / "events.sqlite3"
    store = await SqliteEventStore.open(path)
    try:
        wal = path.with_name(path.name + "-wal")
        for batch in range(40):  # ~40 x 100 x 1 KB = 4 MB through the log
            await store.append_encoded([enc(batch * 100 + i, 1000) for i in range(100)])
            if store._checkpoint is not None:
                await store._checkpoint
        # Without checkpoints the WAL would hold all 4 MB; with one every ~50 pages it is
        # rewound and reused.
        assert wal.stat().st_size < 2_000_000
        assert len(await store.read_all(limit=5000)) == 4000
    finally:
        await store.close()


async def test_a_blocking_append_checks_the_json_unless_told_it_is_checked(
    tmp_path: Path,
) -> None:
    """`append_encoded_blocking` parses every text like `append_encoded`; with
    ``json_checked`` (the audit trail's own pydantic-core output) it stores them as given."""
    store = await SqliteEventStore.open(tmp_path / "events.sqlite3", inline_appends=False)
    try:
        bad = EncodedEvent("agg", "t", '{"n": 1,', 1, datetime.now(UTC))
        run = asyncio.get_running_loop().run_in_executor
        with pytest.raises(EventStoreError, match=r"event 1 \(t\) data is not JSON"):
            await run(None, store.append_encoded_blocking, [enc(0), bad])
        assert await store.last_position() == 0
        checked = functools.partial(store.append_encoded_blocking, json_checked=True)
        assert await run(None, checked, [enc(1), enc(2)]) == 2
        assert [e.data["n"] for e in await store.read_all()] == [1, 2]
    finally:
        await store.close()


async def test_a_store_written_from_its_callers_thread_checkpoints_less_often(
    tmp_path: Path,
) -> None:
    """The audit trail's store (every append on its writer thread) lets SQLite checkpoint
    every `WRITER_CHECKPOINT_PAGES`; the others keep theirs (inline: the worker's own)."""
    path = tmp_path / "events.sqlite3"
    store = await SqliteEventStore.open(path, inline_appends=False)
    inline = await SqliteEventStore.open(tmp_path / "inline.sqlite3")
    try:
        pages = store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        assert pages == engine.WRITER_CHECKPOINT_PAGES > 1000
        assert inline._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        run = asyncio.get_running_loop().run_in_executor
        for batch in range(10):  # still checkpointed: the WAL does not hold all it was given
            events = [enc(batch * 1000 + i, 20_000) for i in range(100)]
            await run(None, functools.partial(store.append_encoded_blocking, events))
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size < 10 * 100 * 20_000
        assert len(await store.read_all(limit=2000)) == 1000
    finally:
        await store.close()
        await inline.close()
