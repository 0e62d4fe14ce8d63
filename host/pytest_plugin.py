"""pytest fixtures for plugin authors, registered through the ``pytest11`` entry point.

- ``agent_builder``: an `AgentTestBuilder`, torn down after the test;
- ``agent_runtime``: a `TestRuntime` built with the defaults (in-memory store, ELIZA);
- ``event_capture``: an `EventRecorder` on ``agent_runtime``;
- ``memory_store``: a fresh store of each installed backend (``inmemory``, ``sqlite``, and
  ``postgres`` when ``AGENTHOST_TEST_POSTGRES_URL`` is set), for tests that must hold everywhere.

The fixtures are ``pytest_asyncio`` fixtures, so they work in asyncio ``auto`` and ``strict``
modes alike.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

from builtin_plugins.inmemory import InMemoryAdapter
from builtin_plugins.sqlite import SqliteAdapter
from contracts.storage import DatabaseAdapter
from host.testing import AgentTestBuilder, EventRecorder, TestRuntime

POSTGRES_URL = "AGENTHOST_TEST_POSTGRES_URL"


def store_backends() -> list[str]:
    """Backends `memory_store` runs over in this environment."""
    return ["inmemory", "sqlite", *(["postgres"] if os.environ.get(POSTGRES_URL) else [])]


@pytest_asyncio.fixture
async def agent_builder() -> AsyncIterator[AgentTestBuilder]:
    builder = AgentTestBuilder()
    try:
        yield builder
    finally:
        await builder.aclose()


@pytest_asyncio.fixture
async def agent_runtime(agent_builder: AgentTestBuilder) -> TestRuntime:
    return await agent_builder.build()


@pytest.fixture
def event_capture(agent_runtime: TestRuntime) -> Iterator[EventRecorder]:
    with agent_runtime.capture_events() as recorder:
        yield recorder


@pytest_asyncio.fixture(params=store_backends())
async def memory_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[DatabaseAdapter]:
    backend = request.param
    store: DatabaseAdapter
    if backend == "inmemory":
        store = InMemoryAdapter()
    elif backend == "sqlite":
        store = await SqliteAdapter.open(tmp_path / "store.sqlite3")
    else:
        from builtin_plugins.postgres import PostgresAdapter

        store = await PostgresAdapter.open(os.environ[POSTGRES_URL])
    try:
        yield store
    finally:
        await store.close()
