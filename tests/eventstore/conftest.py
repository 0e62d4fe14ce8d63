"""Fixtures of the event store tests: every contract test runs against every engine.

``store_factory`` returns an async context manager over a fresh, empty `EventStore`;
``store`` is one such store per test. Engines: ``sqlite`` (a real file), ``sqlite-memory``
(``:memory:``) and ``postgres`` (``AGENTHOST_TEST_POSTGRES_URL``, else the session-scoped
pgserver of tests/storage/pg_server.py; skipped saying why when neither is available). Each
PostgreSQL store gets its own schema, so tests never see each other's events.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from contracts.eventstore import EventStore
from host.eventstore import PostgresEventStore, SqliteEventStore

_PG_IMPORT_ERROR: str | None = None  # pg_server_uri comes from tests/conftest.py

StoreFactory = Callable[[], contextlib.AbstractAsyncContextManager[EventStore]]

ENGINES = ["sqlite", "sqlite-memory", pytest.param("postgres", marks=pytest.mark.postgres)]
_schemas = itertools.count()


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


def postgres_url(request: pytest.FixtureRequest) -> str:
    """A PostgreSQL conninfo for tests (skips the test when no server is available)."""
    url = os.environ.get("AGENTHOST_TEST_POSTGRES_URL")
    if url:
        return url
    if _PG_IMPORT_ERROR is not None:
        pytest.skip(_PG_IMPORT_ERROR)
    return str(request.getfixturevalue("pg_server_uri"))


def _postgres_factory(url: str) -> StoreFactory:
    import psycopg
    from psycopg.conninfo import make_conninfo

    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[EventStore]:
        schema = f"ev_{os.getpid()}_{next(_schemas)}"
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            await conn.execute(f"CREATE SCHEMA {schema}")
        conninfo = make_conninfo(url, options=f"-c search_path={schema}")
        store = await PostgresEventStore.connect(conninfo, max_size=8)
        store.poll_interval = 0.02
        try:
            yield store
        finally:
            await store.close()
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")

    return open_store


@pytest.fixture(params=ENGINES)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    engine: str = request.param
    if engine == "postgres":
        return _postgres_factory(postgres_url(request))
    return _sqlite_factory(tmp_path, memory=engine == "sqlite-memory")


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[EventStore]:
    async with store_factory() as opened:
        yield opened
