"""Fixtures of the storage conformance suite: the same tests run against every backend.

``memory_store`` is a fresh, empty `DatabaseAdapter` per test; ``store_factory`` is a callable
returning an async context manager over a fresh, empty store (hypothesis tests open one per
example). Both are parametrized over ``inmemory``, ``sqlite`` and ``postgres``.

PostgreSQL plugs in through tests/storage/pg_server.py, whose session fixture ``pg_store_factory``
(made available to every test directory by tests/conftest.py) is such a callable. It calls
``pytest.skip(reason)`` when no server can start (pgserver not installed, e.g. on Python 3.13).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from builtin_plugins.inmemory import InMemoryAdapter
from builtin_plugins.sqlite import SqliteAdapter
from contracts.storage import DatabaseAdapter
from host.metrics import InMemoryMetrics
from host.metrics.storage import InstrumentedAdapter

from .storage_helpers import StoreFactory

BACKENDS = ["inmemory", "sqlite", "postgres", "sqlite+metrics"]
"""``sqlite+metrics`` is SQLite behind the host's `InstrumentedAdapter`: the wrapper the host puts
around every store must keep every semantic of the store it wraps."""


def _inmemory_factory() -> StoreFactory:
    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[DatabaseAdapter]:
        db = InMemoryAdapter()
        try:
            yield db
        finally:
            await db.close()

    return open_store


def _sqlite_factory(directory: Path) -> StoreFactory:
    counter = itertools.count()

    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[DatabaseAdapter]:
        db = await SqliteAdapter.open(directory / f"store-{next(counter)}.sqlite3")
        try:
            yield db
        finally:
            await db.close()

    return open_store


def _postgres_factory(request: pytest.FixtureRequest) -> StoreFactory:
    try:
        factory: Any = request.getfixturevalue("pg_store_factory")
    except pytest.FixtureLookupError:
        pytest.skip("tests/storage/pg_server.py defines no pg_store_factory fixture")
    return factory  # type: ignore[no-any-return]


def _instrumented(inner: StoreFactory) -> StoreFactory:
    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[DatabaseAdapter]:
        async with inner() as db:
            yield InstrumentedAdapter(db, InMemoryMetrics())

    return open_store


@pytest.fixture(params=BACKENDS)
def store_factory(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> StoreFactory:
    """Opens fresh, empty stores of the parametrized backend."""
    backend = request.param
    if backend == "inmemory":
        return _inmemory_factory()
    if backend == "sqlite":
        return _sqlite_factory(tmp_path_factory.mktemp("sqlite"))
    if backend == "sqlite+metrics":
        return _instrumented(_sqlite_factory(tmp_path_factory.mktemp("sqlite")))
    return _postgres_factory(request)


@pytest.fixture
async def memory_store(store_factory: StoreFactory) -> AsyncIterator[DatabaseAdapter]:
    """A fresh, empty store of each backend."""
    async with store_factory() as db:
        yield db
