"""pytest fixtures for plugin authors, registered through the ``pytest11`` entry point.

- ``agent_builder``: an `AgentTestBuilder`, torn down after the test;
- ``agent_runtime``: a `TestRuntime` built with the defaults (in-memory store, ELIZA);
- ``event_capture``: an `EventRecorder` on ``agent_runtime``;
- ``offline_host``: starts whole hosts offline (SQLite store, ELIZA, a temporary data dir:
  `host.testing.offline_config`), ``await offline_host("my-plugin", serve=True)``, stopped after
  the test;
- ``memory_store``: a fresh, empty store of each installed backend (`store_backends`), for tests
  that must hold everywhere; ``memory_store_factory`` opens such stores (``async with
  memory_store_factory() as db``), for tests that need several, e.g. one per hypothesis example.
  agenthost's own storage conformance suite runs on these fixtures;
- ``pg_server_uri``: a PostgreSQL with pgvector for the session: ``AGENTHOST_TEST_POSTGRES_URL``
  when set, else one started by pgserver (``pip install 'agenthost[pgserver]'``); tests that
  need it are skipped, saying why, when neither is available. Each postgres store gets its own
  schema, so stores are isolated and cheap.

``AGENTHOST_TEST_BACKENDS=inmemory,sqlite`` restricts the backends. The fixtures are
``pytest_asyncio`` fixtures, so they work in asyncio ``auto`` and ``strict`` modes alike.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import pytest_asyncio

from contracts.plugin import ENTRY_POINT_GROUP
from contracts.storage import DatabaseAdapter
from host.assembly import open_store
from host.config import BACKENDS_ENV, POSTGRES_URL, test_variables
from host.testing import AgentTestBuilder, EventRecorder, OfflineHosts, TestRuntime

__all__ = [
    "BACKENDS_ENV",
    "POSTGRES_URL",
    "StoreFactory",
    "backend_factory",
    "fresh_schema",
    "schema_uri",
    "store_backends",
]

STORE_PLUGINS = ("inmemory", "sqlite", "postgres")
"""The store backends agenthost ships, by plugin name."""

StoreFactory = Callable[[], contextlib.AbstractAsyncContextManager[DatabaseAdapter]]
"""Opens a fresh, empty store: ``async with factory() as db: ...``."""

_schemas = itertools.count()


def store_backends() -> list[str]:
    """The backends ``memory_store`` runs over: each store plugin whose entry point is
    installed (``AGENTHOST_TEST_BACKENDS`` narrows them)."""
    installed = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    found = [name for name in STORE_PLUGINS if name in installed]
    wanted = test_variables().backends
    if wanted:
        names = [n.strip() for n in wanted.split(",") if n.strip()]
        unknown = sorted(set(names) - set(found))
        if unknown:
            raise pytest.UsageError(
                f"{BACKENDS_ENV} names {', '.join(unknown)}; installed backends: {', '.join(found)}"
            )
        found = [name for name in found if name in names]
    return found


def schema_uri(base: str, schema: str) -> str:
    """`base` with the search path set to `schema` (then public, where pgvector lives)."""
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options={quote(f'-c search_path={schema},public')}"


@pytest.fixture(scope="session")
def pg_server_uri() -> Iterator[str]:
    """The URI of a session-wide PostgreSQL with the vector extension installed."""
    url = test_variables().postgres_url
    if url:
        yield url
        return
    try:
        import pgserver
    except ImportError as exc:  # the optional extra: wheels for CPython 3.11-3.12 only
        pytest.skip(
            f"no PostgreSQL: set {POSTGRES_URL} or pip install 'agenthost[pgserver]' ({exc})"
        )
    # Not under pytest's basetemp: pgserver run as root opens the directory's parents to its
    # own system user, and every pytest session starting meanwhile closes
    # /tmp/pytest-of-<user> again (mode 0700), which broke initdb now and then.
    directory = Path(tempfile.mkdtemp(prefix="agenthost-pg-"))
    try:
        server: Any = pgserver.get_server(  # type: ignore[attr-defined]
            directory, cleanup_mode="stop"
        )
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
    except Exception as exc:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.skip(f"cannot start PostgreSQL with pgserver: {exc}")
    watch_server(os.getpid(), server.get_pid(), directory)
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(directory, ignore_errors=True)


_WATCHDOG = """
import os, shutil, signal, sys, time
parent, postmaster, directory = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True
while os.path.isdir(directory):
    if not alive(parent):
        try:
            with open(f"/proc/{postmaster}/cmdline", "rb") as cmdline:
                ours = b"postgres" in cmdline.read()
        except OSError:
            ours = alive(postmaster)
        if ours:
            try:
                os.kill(postmaster, signal.SIGQUIT)
            except ProcessLookupError:
                pass
            for _ in range(50):
                if not alive(postmaster):
                    break
                time.sleep(0.1)
        shutil.rmtree(directory, ignore_errors=True)
        break
    time.sleep(0.5)
"""


def watch_server(parent: int, postmaster: int, directory: Path) -> None:
    """Stop the postmaster and remove `directory` should process `parent` die without cleaning
    up (a test run killed, or stopped at a debugger): a detached watchdog polls it. Without it
    every killed run left a PostgreSQL running. A clean exit removes `directory` first, which
    ends the watchdog without touching anything."""
    import subprocess
    import sys

    subprocess.Popen(
        [sys.executable, "-c", _WATCHDOG, str(parent), str(postmaster), str(directory)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # outlives a Ctrl-C or a kill of the test run's process group
    )


@contextlib.asynccontextmanager
async def fresh_schema(server_uri: str, prefix: str = "store") -> AsyncIterator[str]:
    """A new, empty schema on the server at `server_uri`, dropped with its contents on exit;
    yields its name. One per store keeps tests apart on a shared server (a leftover of a
    crashed run under the same name is dropped first)."""
    import psycopg

    schema = f"{prefix}_{os.getpid()}_{next(_schemas)}"
    async with await psycopg.AsyncConnection.connect(server_uri, autocommit=True) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield schema
    finally:
        async with await psycopg.AsyncConnection.connect(server_uri, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(scope="session")
def pg_store_factory(pg_server_uri: str) -> StoreFactory:
    """Opens fresh, empty PostgreSQL stores, each in its own schema (dropped on close)."""

    @contextlib.asynccontextmanager
    async def open_pg() -> AsyncIterator[DatabaseAdapter]:
        async with fresh_schema(pg_server_uri) as schema:
            url = schema_uri(pg_server_uri, schema)
            async with open_store("postgres", {**PG_SETTINGS, "url": url}) as db:
                yield db

    return open_pg


PG_SETTINGS: dict[str, Any] = {"pool_max": 4, "hnsw_m": 32, "hnsw_ef_construction": 80}
"""The postgres plugin's settings of the stores here: a small pool, the index parameters the
other stores default to."""


def backend_factory(backend: str, request: pytest.FixtureRequest) -> StoreFactory:
    """A `StoreFactory` of `backend` (one of `STORE_PLUGINS`), opened by its plugin (found
    through its entry point); postgres skips without a server."""
    if backend == "inmemory":
        return lambda: open_store("inmemory")
    if backend == "sqlite":
        directory = request.getfixturevalue("tmp_path_factory").mktemp("sqlite")
        counter = itertools.count()
        return lambda: open_store("sqlite", {"path": directory / f"store-{next(counter)}.sqlite3"})
    if backend == "postgres":
        factory: StoreFactory = request.getfixturevalue("pg_store_factory")
        return factory
    raise ValueError(f"unknown store backend {backend!r} (known: {', '.join(STORE_PLUGINS)})")


@pytest.fixture(params=store_backends())
def memory_store_factory(request: pytest.FixtureRequest) -> StoreFactory:
    """Opens fresh, empty stores of each installed backend (the test runs once per backend)."""
    return backend_factory(str(request.param), request)


@pytest_asyncio.fixture
async def memory_store(memory_store_factory: StoreFactory) -> AsyncIterator[DatabaseAdapter]:
    """A fresh, empty store of each installed backend."""
    async with memory_store_factory() as db:
        yield db


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


@pytest_asyncio.fixture
async def offline_host(tmp_path: Path) -> AsyncIterator[OfflineHosts]:
    """Starts offline hosts (`host.testing.OfflineHosts`); stops them after the test."""
    hosts = OfflineHosts(tmp_path / "hosts")
    try:
        yield hosts
    finally:
        await hosts.aclose()
