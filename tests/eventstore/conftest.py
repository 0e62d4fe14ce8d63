"""Fixtures of the event store tests: every contract test runs against every engine.

``store_factory`` returns an async context manager over a fresh, empty `EventStore`;
``store`` is one such store per test. Engines: ``sqlite`` (a real file), ``sqlite-memory``
(``:memory:``) and ``postgres`` (the test kit's ``pg_server_uri``: ``AGENTHOST_TEST_POSTGRES_URL``,
else a session-scoped pgserver; skipped saying why when neither is available). Each PostgreSQL
store gets its own schema (`host.pytest_plugin.fresh_schema`), so tests never see each other's
events.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from contracts.eventstore import EventStore
from host.eventstore import PostgresEventStore, SqliteEventStore
from host.pytest_plugin import fresh_schema

StoreFactory = Callable[[], contextlib.AbstractAsyncContextManager[EventStore]]

ENGINES = ["sqlite", "sqlite-memory", pytest.param("postgres", marks=pytest.mark.postgres)]


def _sqlite_factory(directory: Path, memory: bool) -> StoreFactory:
    counter = itertools.count()

    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[EventStore]:
        path = ":memory:" if memory else directory / f"events-{next(counter)}.sqlite3"
        store = await SqliteEventStore.open(path)
        store.poll_interval = 0.02
        try:
            yield store
        finally:
            await store.close()

    return open_store


def postgres_conninfo(url: str, schema: str) -> str:
    """`url` with the search path set to `schema` (the event store needs no pgvector)."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(url, options=f"-c search_path={schema}")


def _postgres_factory(url: str) -> StoreFactory:
    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[EventStore]:
        async with fresh_schema(url, "ev") as schema:
            store = await PostgresEventStore.connect(postgres_conninfo(url, schema), max_size=8)
            store.poll_interval = 0.02
            try:
                yield store
            finally:
                await store.close()

    return open_store


@pytest.fixture(params=ENGINES)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    engine: str = request.param
    if engine == "postgres":
        return _postgres_factory(str(request.getfixturevalue("pg_server_uri")))
    return _sqlite_factory(tmp_path, memory=engine == "sqlite-memory")


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[EventStore]:
    async with store_factory() as opened:
        yield opened
