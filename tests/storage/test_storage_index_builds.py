"""Approximate indexes are built off the store's own thread: meanwhile searches are exact, the
store keeps serving, and writes made during a build are in the index it installs.

A build is held at a gate (`host.vectors.builds._built` wrapped to wait on an event), so "during the
build" is a state the test controls, not a race against the clock.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import host.vectors.builds
from builtin_plugins.inmemory import InMemoryAdapter
from builtin_plugins.sqlite import SqliteAdapter
from contracts.memory import MemoryUpdate
from contracts.storage import DatabaseAdapter, SearchParams
from host.vectors import IndexParams, IndexSet, VectorIndex

from .storage_helpers import make_memory


class Gate:
    """Holds every approximate index build until `open()`; counts the builds that started."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.started = 0
        self.fail: Exception | None = None

    def open(self) -> None:
        self.event.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate()
    real: Callable[..., VectorIndex] = host.vectors.builds._built

    def built(*args: Any) -> VectorIndex:
        if args[0] == "flat":  # built at once, on the store's thread: never held
            return real(*args)
        held.started += 1
        assert held.event.wait(30), "the test never opened the gate"
        if held.fail is not None:
            raise held.fail
        return real(*args)

    monkeypatch.setattr(host.vectors.builds, "_built", built)
    yield held
    held.open()  # never leave a build thread waiting


def unit(rows: list[list[float]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.float32)


def test_an_index_set_builds_in_the_background_and_replays_writes(gate: Gate) -> None:
    indexes = IndexSet(IndexParams())
    labels = np.arange(1, 7, dtype=np.int64)
    vectors = unit([[1.0, float(i)] for i in range(6)])
    assert indexes.get("t", "hnsw", 2, 1, lambda: (labels, vectors.copy())) is None
    build = indexes.pending("t", "hnsw")
    assert build is not None and not build.done() and indexes.has("t")
    # writes while it builds: label 1 removed, 9 added, then 2 replaced by a new vector
    indexes.apply("t", 1, 2, removed=[1], added=([9], unit([[0.0, -1.0]])))
    indexes.apply("t", 2, 3, removed=[2], added=([2], unit([[-1.0, 0.0]])))
    assert indexes.get("t", "hnsw", 2, 3, lambda: pytest.fail("no second build")) is None
    gate.open()
    build.result(timeout=30)
    index = indexes.get("t", "hnsw", 2, 3, lambda: pytest.fail("installed, not rebuilt"))
    assert index is not None and index.version == 3 and indexes.pending("t", "hnsw") is None
    assert index.search(unit([[0.0, -1.0]]), 1)[0] == [9]
    assert index.search(unit([[-1.0, 0.0]]), 1)[0] == [2]
    assert 1 not in index.search(unit([[1.0, 0.0]]), 10)[0]
    assert gate.started == 1
    indexes.close()


def test_a_build_that_missed_a_write_is_discarded(gate: Gate) -> None:
    indexes = IndexSet(IndexParams())
    labels = np.arange(1, 4, dtype=np.int64)

    def load() -> tuple[Any, Any]:
        return labels, unit([[1.0, float(i)] for i in range(3)])

    assert indexes.get("t", "ivf", 2, 1, load) is None
    first = indexes.pending("t", "ivf")
    indexes.apply("t", 5, 6, removed=[1])  # a version it never saw: another writer's
    assert indexes.pending("t", "ivf") is None and first is not None
    assert indexes.get("t", "ivf", 2, 6, load) is None  # a new build from a fresh snapshot
    second = indexes.pending("t", "ivf")
    assert second is not None and second is not first
    gate.open()
    second.result(timeout=30)
    index = indexes.get("t", "ivf", 2, 6, load)
    assert index is not None and index.version == 6
    indexes.close()


def test_a_failed_build_is_raised_to_the_next_search(gate: Gate) -> None:
    indexes = IndexSet(IndexParams())
    load = lambda: (np.arange(2, dtype=np.int64), unit([[1.0, 0.0], [0.0, 1.0]]))  # noqa: E731
    gate.fail = MemoryError("no room for the graph")
    assert indexes.get("t", "hnsw", 2, 1, load) is None
    build = indexes.pending("t", "hnsw")
    assert build is not None
    gate.open()
    with pytest.raises(MemoryError):
        build.result(timeout=30)
    with pytest.raises(MemoryError, match="no room"):
        indexes.get("t", "hnsw", 2, 1, load)
    gate.fail = None
    assert indexes.get("t", "hnsw", 2, 1, load) is None  # the next search starts over
    indexes.close()


def test_an_index_due_for_a_rebuild_serves_until_its_successor_is_ready(gate: Gate) -> None:
    indexes = IndexSet(IndexParams())
    gate.open()
    n = 400
    labels = np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((n, 4)).astype(np.float32)
    assert indexes.get("t", "hnsw", 4, 1, lambda: (labels, vectors.copy())) is None
    pending = indexes.pending("t", "hnsw")
    assert pending is not None
    pending.result(timeout=30)
    old = indexes.get("t", "hnsw", 4, 1, lambda: (labels, vectors.copy()))
    assert old is not None
    indexes.apply("t", 1, 2, removed=range(0, 150))  # over a quarter tombstoned
    assert old.needs_rebuild
    gate.event.clear()
    served = indexes.get("t", "hnsw", 4, 2, lambda: (labels[150:], vectors[150:].copy()))
    assert served is old  # still answering, tombstones masked
    successor = indexes.pending("t", "hnsw")
    assert successor is not None and not successor.done()
    gate.open()
    successor.result(timeout=30)
    fresh = indexes.get("t", "hnsw", 4, 2, lambda: pytest.fail("installed, not rebuilt"))
    assert fresh is not None and fresh is not old and not fresh.needs_rebuild
    assert len(fresh) == n - 150
    indexes.close()


@pytest.fixture(params=["inmemory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[DatabaseAdapter]:
    db: DatabaseAdapter
    if request.param == "inmemory":
        db = InMemoryAdapter()
    else:
        db = await SqliteAdapter.open(tmp_path / "builds.sqlite3")
    yield db
    await db.close()


async def test_the_store_serves_while_an_index_builds(store: DatabaseAdapter, gate: Gate) -> None:
    """Held at the gate, the HNSW build blocks neither the event loop (in memory) nor the
    SQLite worker: searches are answered exactly, reads and writes go on, and the index that
    `build_index` waits for holds the writes made meanwhile."""
    batch = [make_memory(i, embedding=[1.0, float(i)]) for i in range(50)]
    await store.create_memories_batch(batch)
    first = await store.search_memories([1.0, 0.0], params=SearchParams(k=3, index_type="hnsw"))
    assert [m.id for m, _ in first] == [batch[0].id, batch[1].id, batch[2].id]  # exact
    assert gate.started == 1
    waiting = asyncio.create_task(store.build_index("hnsw"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    newcomer = make_memory(99, embedding=[0.0, -1.0])
    await store.create_memory(newcomer)
    await store.update_memory(MemoryUpdate(id=batch[1].id, embedding=[-1.0, 0.0]))
    await store.delete_memory(batch[2].id)
    assert await store.get_memory(newcomer.id) is not None
    meanwhile = await store.search_memories(
        [0.0, -1.0], params=SearchParams(k=1, index_type="hnsw")
    )
    assert meanwhile[0][0].id == newcomer.id
    assert not waiting.done() and gate.started == 1  # one build, still held
    gate.open()
    await asyncio.wait_for(waiting, 30)
    after = await store.search_memories([1.0, 0.0], params=SearchParams(k=3, index_type="hnsw"))
    assert [m.id for m, _ in after] == [batch[0].id, batch[3].id, batch[4].id]
    moved = await store.search_memories([-1.0, 0.0], params=SearchParams(k=1, index_type="hnsw"))
    assert moved[0][0].id == batch[1].id
    assert (await store.search_memories([0.0, -1.0], params=SearchParams(k=1, index_type="hnsw")))[
        0
    ][0].id == (newcomer.id)
    assert gate.started == 1  # the writes were replayed onto the build, not rebuilt
    await store.build_index("hnsw")  # already there: returns at once
    await store.build_index("flat")
    await store.build_index("hnsw", "no-such-table")
