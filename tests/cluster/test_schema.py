"""The cluster's migrations on a real PostgreSQL while workers run: migration 4 takes its
locks in the workers' order (no deadlock), each migration commits on its own, and the purge's
index is built concurrently (an INVALID leftover is rebuilt)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import uuid4

import psycopg
import pytest

from host.cluster.schema import MIGRATIONS, migrate
from host.pytest_plugin import fresh_schema, schema_uri

pytestmark = pytest.mark.postgres

LAST = MIGRATIONS[-1].version


@pytest.fixture
async def uri(pg_server_uri: str) -> AsyncIterator[str]:
    async with fresh_schema(pg_server_uri, "schema") as schema:
        yield schema_uri(pg_server_uri, schema)


async def _connect(uri: str) -> psycopg.AsyncConnection[object]:
    return await psycopg.AsyncConnection.connect(uri, autocommit=True)


async def _version(conn: psycopg.AsyncConnection[object]) -> list[int]:
    cursor = await conn.execute("SELECT version FROM cluster_schema ORDER BY version")
    return [int(r[0]) for r in await cursor.fetchall()]


async def _waiting_for_a_lock(conn: psycopg.AsyncConnection[object], pid: int) -> None:
    for _ in range(200):
        cursor = await conn.execute(
            "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)
        )
        row = await cursor.fetchone()
        if row is not None and row[0] == "Lock":
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the migration never waited for the worker's lock")


async def test_migration_4_runs_beside_a_worker_holding_a_room_then_writing_its_messages(
    uri: str,
) -> None:
    """A worker's transaction locks its room's row, then writes cluster_messages; migration 4
    runs meanwhile from another connection: both finish (it locked cluster_messages first, then
    waited for cluster_rooms: a deadlock, one of the two killed)."""
    async with await _connect(uri) as setup, await _connect(uri) as worker:
        await migrate(setup, upto=3)
        assert await _version(setup) == [1, 2, 3]
        agent, room = uuid4(), uuid4()
        await setup.execute(
            "INSERT INTO cluster_rooms (agent_id, room_id, pending) VALUES (%s, %s, 1)",
            (agent, room),
        )
        await setup.execute(
            "INSERT INTO cluster_messages (id, agent_id, room_id, room_seq, message)"
            " VALUES (%s, %s, %s, 1, '{}')",
            (uuid4(), agent, room),
        )
        cursor = await worker.execute("SELECT pg_backend_pid()")
        row = await cursor.fetchone()
        assert row is not None
        async with await _connect(uri) as migrating:
            cursor = await migrating.execute("SELECT pg_backend_pid()")
            pid = await cursor.fetchone()
            assert pid is not None
            async with worker.transaction():
                await worker.execute(
                    "SELECT 1 FROM cluster_rooms WHERE agent_id = %s AND room_id = %s FOR UPDATE",
                    (agent, room),
                )
                running = asyncio.create_task(migrate(migrating))
                await _waiting_for_a_lock(setup, int(pid[0]))
                await worker.execute(
                    "UPDATE cluster_messages SET tries = tries + 1 WHERE agent_id = %s", (agent,)
                )
            await asyncio.wait_for(running, 30)
        assert await _version(setup) == list(range(1, LAST + 1))
        cursor = await setup.execute("SELECT tries, committed_by FROM cluster_messages")
        assert await cursor.fetchall() == [(1, None)]  # the worker's write committed


async def test_each_migration_commits_on_its_own_and_an_invalid_index_is_built_again(
    uri: str,
) -> None:
    """Migration 5's index is built concurrently, after 4 committed: a build that died
    half-way (its index INVALID) is dropped and built again."""
    async with await _connect(uri) as conn:
        await migrate(conn, upto=4)
        assert await _version(conn) == [1, 2, 3, 4]
        # what a CREATE INDEX CONCURRENTLY that died half-way leaves: an INVALID index
        await conn.execute(
            "CREATE INDEX cluster_messages_done ON cluster_messages (done_at) WHERE status = 'done'"
        )
        await conn.execute(
            "UPDATE pg_index SET indisvalid = false WHERE indexrelid ="
            " 'cluster_messages_done'::regclass"
        )
        await migrate(conn)
        assert await _version(conn) == list(range(1, LAST + 1))
        cursor = await conn.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'cluster_messages_done'::regclass"
        )
        assert await cursor.fetchone() == (True,)
        await migrate(conn)  # nothing left to do
        assert await _version(conn) == list(range(1, LAST + 1))
