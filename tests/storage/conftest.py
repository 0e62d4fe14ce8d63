"""Fixtures of the storage conformance suite: the same tests run against every backend.

The suite runs on the test kit's own fixtures (`host.pytest_plugin`, the ``pytest11`` plugin
plugin authors use): ``memory_store`` is a fresh, empty `DatabaseAdapter` per test and
``memory_store_factory`` (``store_factory`` here) a callable returning an async context manager
over a fresh, empty store (hypothesis tests open one per example). They are parametrized over
every installed backend (``inmemory``, ``sqlite``, ``postgres``: a real PostgreSQL from
pgserver or ``AGENTHOST_TEST_POSTGRES_URL``, skipped saying why when neither is available);
this suite adds ``sqlite+metrics`` and ``sqlite+replay``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from contracts.storage import DatabaseAdapter
from host.eventstore.replay_store import ReplayStore
from host.metrics import InMemoryMetrics
from host.metrics.storage import InstrumentedAdapter
from host.pytest_plugin import StoreFactory, backend_factory, store_backends

BACKENDS = [*store_backends(), "sqlite+metrics", "sqlite+replay"]
"""``sqlite+metrics`` is SQLite behind the host's `InstrumentedAdapter`: the wrapper the host puts
around every store must keep every semantic of the store it wraps. ``sqlite+replay`` is the
`ReplayStore` a replay runs on, over a SQLite scratch store (an empty configured store beside it):
its routing (writes, conversation reads, scoped searches, texts) must keep them too."""


def _instrumented(inner: StoreFactory) -> StoreFactory:
    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[DatabaseAdapter]:
        async with inner() as db:
            yield InstrumentedAdapter(db, InMemoryMetrics())

    return open_store


def _replaying(inner: StoreFactory, request: pytest.FixtureRequest) -> StoreFactory:
    @contextlib.asynccontextmanager
    async def open_store() -> AsyncIterator[DatabaseAdapter]:
        async with inner() as scratch, backend_factory("inmemory", request)() as live:
            yield ReplayStore(scratch, live, ())

    return open_store


@pytest.fixture(params=BACKENDS)
def memory_store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    """The kit's fixture of the same name, plus the instrumented SQLite backend."""
    backend = str(request.param)
    if backend == "sqlite+replay":
        return _replaying(backend_factory("sqlite", request), request)
    if backend == "sqlite+metrics":
        return _instrumented(backend_factory("sqlite", request))
    return backend_factory(backend, request)


@pytest.fixture
def store_factory(memory_store_factory: StoreFactory) -> StoreFactory:
    """Opens fresh, empty stores of the parametrized backend."""
    return memory_store_factory
