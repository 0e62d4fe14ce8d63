"""PostgreSQL going away under a running host: the memory store and the event store raise their
own unavailable errors (`StorageUnavailableError`, `EventStoreUnavailableError`) saying the
server at host:port cannot be reached and why, from the first failed call on: never a raw
psycopg exception, never advice to raise ``pool_max`` when no connection was in use, never the
password. The outage is real: the real server behind a TCP proxy that is stopped (connections
cut, new ones refused), then started again on the same port."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from builtin_plugins.audit.recorder import AuditRecorder
from builtin_plugins.audit.settings import AuditSettings
from builtin_plugins.postgres import PostgresAdapter
from contracts.config import AgentsSettings, HostConfig, HttpSettings, PluginsSettings
from contracts.eventstore import EventStoreUnavailableError
from contracts.storage import PoolExhaustedError, StorageUnavailableError
from host.app import Host
from host.config import LoadedConfig
from host.eventstore import PostgresEventStore
from host.pytest_plugin import fresh_schema, schema_uri

from .proxy import Proxy

PASSWORD = "pw-never-shown-1234"


@pytest.fixture
async def proxy(pg_server_uri: str) -> AsyncIterator[Proxy]:
    proxy = Proxy(pg_server_uri)
    await proxy.start()
    try:
        yield proxy
    finally:
        if proxy._server is not None and proxy._server.is_serving():
            await proxy.stop()


@pytest.fixture
async def db(pg_server_uri: str, proxy: Proxy) -> AsyncIterator[PostgresAdapter]:
    async with fresh_schema(pg_server_uri, "outage") as schema:
        base = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{proxy.port}/postgres"
        adapter = await PostgresAdapter.open(
            schema_uri(base, schema),
            min_size=2,
            max_size=8,
            acquire_timeout=1,
            connect_timeout=1,
            reconnect_timeout=60,
        )
        try:
            yield adapter
        finally:
            await adapter.close()


def unreachable_text(error: BaseException, port: int) -> str:
    text = str(error)
    assert f"PostgreSQL at postgresql://postgres@127.0.0.1:{port}/postgres cannot be reached" in (
        text
    )
    assert PASSWORD not in text and "pool_max" not in text and "stayed in use" not in text
    return text


async def test_the_first_errors_of_an_outage_say_the_server_cannot_be_reached(
    db: PostgresAdapter, proxy: Proxy
) -> None:
    events = await PostgresEventStore.open(db.pool)
    assert await db.count_memories() == 0
    await proxy.stop()
    for _ in range(2):
        with pytest.raises(StorageUnavailableError) as memory_error:
            await db.count_memories()
        text = unreachable_text(memory_error.value, proxy.port)
        assert "no connection could be opened within 1 s (connection failed:" in text
        assert "Connection refused" in text
        with pytest.raises(EventStoreUnavailableError) as event_error:
            await events.last_position()
        unreachable_text(event_error.value, proxy.port)
    await proxy.start()  # the server is back: the pool reconnects
    for _ in range(50):
        try:
            assert await db.count_memories() == 0
            break
        except StorageUnavailableError:
            await asyncio.sleep(0.1)
    assert await events.last_position() == 0


async def test_a_connection_lost_under_a_statement_is_the_stores_error(
    db: PostgresAdapter, proxy: Proxy
) -> None:
    events = await PostgresEventStore.open(db.pool)

    async def sleep_in_sql() -> None:
        async with db.with_connection() as conn:
            await conn.execute("SELECT pg_sleep(5)")

    async def read_events() -> None:
        async with events._connection() as conn:
            await conn.execute("SELECT pg_sleep(5)")

    running = [asyncio.create_task(sleep_in_sql()), asyncio.create_task(read_events())]
    await asyncio.sleep(0.3)
    await proxy.stop()
    memory_error, event_error = await asyncio.gather(*running, return_exceptions=True)
    assert isinstance(memory_error, StorageUnavailableError), repr(memory_error)
    assert isinstance(event_error, EventStoreUnavailableError), repr(event_error)
    for error in (memory_error, event_error):
        assert "cannot be reached: the connection was lost" in unreachable_text(error, proxy.port)


async def test_an_exhausted_pool_still_says_so(db: PostgresAdapter) -> None:
    held = [db.with_connection() for _ in range(8)]
    for context in held:
        await context.__aenter__()
    try:
        with pytest.raises(PoolExhaustedError, match="all 8 pooled connections stayed in use"):
            await db.count_memories()
    finally:
        for context in held:
            await context.__aexit__(None, None, None)


async def test_a_closed_port_at_start_names_host_and_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the test connects
    url = f"postgresql://agent:{PASSWORD}@127.0.0.1:{port}/db"
    with pytest.raises(StorageUnavailableError) as info:
        await PostgresAdapter.open(url, connect_timeout=1)
    assert f"cannot open PostgreSQL at postgresql://agent@127.0.0.1:{port}/db" in str(info.value)
    assert "Connection refused" in str(info.value) and PASSWORD not in str(info.value)
    with pytest.raises(EventStoreUnavailableError) as store_info:
        await PostgresEventStore.connect(url, open_timeout=1)
    assert f"PostgreSQL at postgresql://agent@127.0.0.1:{port}/db" in str(store_info.value)
    assert PASSWORD not in str(store_info.value)


async def test_the_audit_recorder_retries_through_an_outage(
    db: PostgresAdapter, proxy: Proxy
) -> None:
    """An unavailable store is transient for the audit trail: the batch is retried, not split
    and dropped as if the store refused its events."""
    events = await PostgresEventStore.open(db.pool)
    recorder = AuditRecorder(
        events, AuditSettings(retries=6, retry_delay=0.2, flush_interval=0, events=("*",))
    )
    await proxy.stop()
    recorder.record("test:outage", {"agent_id": f"agent-{uuid4()}"})
    flushing = asyncio.create_task(recorder.flush())  # the writer thread retries meanwhile
    await asyncio.sleep(1.5)
    await proxy.start()
    await flushing
    await recorder.aclose()
    assert (recorder.recorded, recorder.dropped) == (1, 0)
    assert await events.last_position() >= 1


async def test_a_message_during_an_outage_is_a_503_naming_the_server(
    pg_server_uri: str, proxy: Proxy, tmp_path: Path
) -> None:
    async with fresh_schema(pg_server_uri, "outage") as schema:
        base = f"postgresql://postgres:{PASSWORD}@127.0.0.1:{proxy.port}/postgres"
        postgres = {"url": schema_uri(base, schema), "acquire_timeout": 1, "connect_timeout": 1}
        config = HostConfig(
            data_dir=tmp_path,
            services={"database": "postgres"},
            plugins=PluginsSettings.model_validate(
                {"enabled": ["postgres", "eliza"], "postgres": postgres}
            ),
            http=HttpSettings(port=0),
            agents=AgentsSettings(characters_dir=tmp_path / "none"),
        )
        host = Host(LoadedConfig(config, None))
        await host.start(http=True)
        try:
            assert host.http is not None
            async with httpx.AsyncClient(base_url=host.http.url, timeout=30) as client:
                body = {"text": "Men are all alike."}
                ok = await client.post("/agents/Eliza/messages", json=body)
                assert ok.status_code == 200, ok.text
                await proxy.stop()
                down = await client.post("/agents/Eliza/messages", json=body)
                assert down.status_code == 503, down.text
                unreachable_text(Exception(down.json()["detail"]), proxy.port)
                await proxy.start()
        finally:
            await host.stop()
