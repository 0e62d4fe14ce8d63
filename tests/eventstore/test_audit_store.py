"""Where the audit plugin keeps the log: its own SQLite file, the memory store's SQLite file, or
PostgreSQL on the storage adapter's own pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from builtin_plugins.audit import AuditSettings, open_event_store
from builtin_plugins.inmemory import InMemoryAdapter
from builtin_plugins.sqlite import SqliteAdapter
from contracts.eventstore import DomainEvent, EventStoreError
from host.eventstore import PostgresEventStore, SqliteEventStore


async def test_own_file_in_the_data_dir(tmp_path: Path) -> None:
    store = await open_event_store(AuditSettings(), InMemoryAdapter(), tmp_path)
    try:
        assert isinstance(store, SqliteEventStore)
        assert store.path == tmp_path / "events.sqlite3"
        await store.append_event(DomainEvent(aggregate_id="a", event_type="t"))
    finally:
        await store.close()
    assert (tmp_path / "events.sqlite3").exists()


async def test_shares_the_memory_database_file(tmp_path: Path) -> None:
    db = await SqliteAdapter.open(tmp_path / "memories.sqlite3")
    try:
        settings = AuditSettings(share_memory_database=True)
        store = await open_event_store(settings, db, tmp_path)
        try:
            assert isinstance(store, SqliteEventStore)
            assert store.path == tmp_path / "memories.sqlite3"
            await store.append_event(DomainEvent(aggregate_id="a", event_type="t"))
            assert await db.count_memories() == 0  # the memory tables are untouched
        finally:
            await store.close()
        with pytest.raises(EventStoreError, match="needs the sqlite memory store"):
            await open_event_store(settings, InMemoryAdapter(), tmp_path)
    finally:
        await db.close()


async def test_postgres_backend_needs_a_pool_or_url(tmp_path: Path) -> None:
    with pytest.raises(EventStoreError, match="postgres_url"):
        await open_event_store(AuditSettings(backend="postgres"), InMemoryAdapter(), tmp_path)
    with pytest.raises(EventStoreError, match="cannot connect"):
        await PostgresEventStore.connect("postgresql://nobody@127.0.0.1:1/none", open_timeout=0.5)


@pytest.mark.postgres
async def test_postgres_on_the_storage_adapters_pool(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    factory: Any = request.getfixturevalue("pg_store_factory")
    async with factory() as db:
        store = await open_event_store(AuditSettings(), db, tmp_path)  # auto -> postgres
        try:
            assert isinstance(store, PostgresEventStore)
            assert store.pool is db.pool
            stored = await store.append_event(DomainEvent(aggregate_id="a", event_type="t"))
            assert stored.position == 1
        finally:
            await store.close()
        assert not db.pool.closed  # the adapter's pool is not the store's to close
        assert not (tmp_path / "events.sqlite3").exists()
