"""Fixtures of the cluster tests: real member processes (``agenthost run --role ...``) over the
session's pgserver PostgreSQL (one schema per test) and a nats-server from the wheel, on
loopback (`LocalCluster`, in harness.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from host.cluster.local import free_port, start_nats, stop_process
from host.pytest_plugin import fresh_schema, schema_uri

from .harness import AGENT, LocalCluster

__all__ = ["AGENT", "LocalCluster"]


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    port = free_port()
    process = start_nats(port)
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop_process(process)


@pytest.fixture
async def cluster(pg_server_uri: str, nats_url: str, tmp_path: Path) -> AsyncIterator[LocalCluster]:
    async with fresh_schema(pg_server_uri, "cluster") as schema:
        local = LocalCluster(schema_uri(pg_server_uri, schema), nats_url, tmp_path)
        try:
            yield local
        finally:
            await asyncio.to_thread(local.stop_all)
