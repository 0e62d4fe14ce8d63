"""The storage wrapper records one duration per call, tagged by operation, backend and outcome."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest

from builtin_plugins.sqlite import SqliteAdapter
from contracts.memory import Content, Memory, MemoryQuery
from contracts.storage import BatchError, DatabaseAdapter
from host.metrics import InMemoryMetrics
from host.metrics.storage import BATCH_SIZE, OPERATION_DURATION, InstrumentedAdapter


def _memory(text: str) -> Memory:
    return Memory(entity_id=uuid4(), agent_id=uuid4(), room_id=uuid4(), content=Content(text=text))


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[InstrumentedAdapter, InMemoryMetrics]]:
    metrics = InMemoryMetrics()
    inner = await SqliteAdapter.open(tmp_path / "m.sqlite3")
    db = InstrumentedAdapter(inner, metrics)
    yield db, metrics
    await db.close()


async def test_each_call_is_one_observation(
    store: tuple[InstrumentedAdapter, InMemoryMetrics],
) -> None:
    db, metrics = store
    assert isinstance(db, DatabaseAdapter)
    first = _memory("one")
    await db.create_memory(first)
    await db.create_memories_batch([_memory("two"), _memory("three")])
    assert await db.get_memory(first.id) is not None
    assert len(await db.get_memories(MemoryQuery(limit=10))) == 3

    ok = {"backend": "sqlite", "outcome": "ok"}
    assert metrics.total(OPERATION_DURATION, operation="create", **ok) == 1
    assert metrics.total(OPERATION_DURATION, operation="create_batch", **ok) == 1
    assert metrics.total(OPERATION_DURATION, operation="get", **ok) == 1
    assert metrics.total(OPERATION_DURATION, operation="query", **ok) == 1
    sizes = metrics.get(BATCH_SIZE, operation="create_batch", backend="sqlite")
    assert sizes is not None and sizes.count == 1 and sizes.value == 2


async def test_a_failed_call_is_tagged_with_its_error_and_still_raises(
    store: tuple[InstrumentedAdapter, InMemoryMetrics],
) -> None:
    db, metrics = store
    duplicate = _memory("again")
    with pytest.raises(BatchError):
        await db.create_memories_batch([duplicate, duplicate])
    assert metrics.total(OPERATION_DURATION, operation="create_batch", outcome="BatchError") == 1
    assert metrics.total(OPERATION_DURATION, outcome="ok") == 0
    assert await db.count_memories() == 0
