"""PostgreSQL specifics: ANN indexes on real data, migrations, pooled concurrency, secrets kept
out of errors, and the plugin chosen by a config pin in a running host."""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, timeout_from_conninfo
from pydantic import ValidationError

from builtin_plugins.postgres import PostgresAdapter
from builtin_plugins.postgres.adapter import COPY_FROM
from builtin_plugins.postgres.plugin import PostgresSettings
from builtin_plugins.postgres.schema import SCHEMA_VERSION
from contracts.config import AgentsSettings, HostConfig, PluginsSettings
from contracts.memory import Content, Memory, MemoryQuery, MemoryUpdate
from contracts.storage import DATABASE, BatchError, PoolExhaustedError, SearchParams, StorageError
from host.app import Host
from host.config import LoadedConfig
from host.pytest_plugin import fresh_schema, schema_uri

AGENT, ROOM = uuid4(), uuid4()


@pytest.fixture
async def url(pg_server_uri: str) -> AsyncIterator[str]:
    """A URL whose search path is a fresh schema (dropped after the test)."""
    async with fresh_schema(pg_server_uri, "pgtest") as schema:
        yield schema_uri(pg_server_uri, schema)


def memory(vector: list[float], **fields: Any) -> Memory:
    values: dict[str, Any] = {"agent_id": AGENT, "entity_id": AGENT, "room_id": ROOM}
    values["content"] = Content(text="x")
    values.update(fields)
    return Memory(embedding=vector, **values)


async def test_hnsw_and_ivf_indexes_answer_like_exact_search(url: str) -> None:
    db = await PostgresAdapter.open(url, exact_below=0)
    try:
        rng = random.Random(7)
        vectors = [[rng.gauss(0, 1) for _ in range(16)] for _ in range(600)]
        await db.create_memories_batch([memory(v) for v in vectors])
        recalls = {"hnsw": [], "ivf": []}  # type: dict[str, list[float]]
        for _ in range(10):
            q = [rng.gauss(0, 1) for _ in range(16)]
            exact = {m.id for m, _ in await db.search_memories(q, params=SearchParams(k=10))}
            for kind in recalls:
                found = await db.search_memories(
                    q, params=SearchParams(k=10, index_type=kind, probes=8, ef_search=80)
                )
                scores = [s for _, s in found]
                assert scores == sorted(scores, reverse=True)
                recalls[kind].append(len(exact & {m.id for m, _ in found}) / 10)
        assert sum(recalls["hnsw"]) / 10 >= 0.9
        assert sum(recalls["ivf"]) / 10 >= 0.8
        async with db.pool.connection() as conn:
            cursor = await conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname LIKE 'memories_hnsw_%%'"
                " OR indexname LIKE 'memories_ivf_%%'"
            )
            definitions = [row[0] for row in await cursor.fetchall()]
        assert any("USING hnsw" in d for d in definitions)
        assert any("USING ivfflat" in d for d in definitions)
        # a filtered search is exact even with an index: the room's rows, nothing missed
        other = uuid4()
        await db.create_memory(memory([1.0] * 16, room_id=other))
        hits = await db.search_memories(
            [1.0] * 16, MemoryQuery(room_id=other), SearchParams(index_type="hnsw")
        )
        assert len(hits) == 1 and math.isclose(hits[0][1], 1.0, abs_tol=1e-5)
    finally:
        await db.close()


async def test_migrations_are_idempotent_and_versioned(url: str) -> None:
    first, second = await asyncio.gather(PostgresAdapter.open(url), PostgresAdapter.open(url))
    try:
        async with first.pool.connection() as conn:
            cursor = await conn.execute("SELECT version FROM schema_migrations")
            versions = [row[0] for row in await cursor.fetchall()]
            assert versions == list(range(1, SCHEMA_VERSION + 1))
    finally:
        await first.close()
        await second.close()


async def test_pooled_concurrent_writers(url: str) -> None:
    db = await PostgresAdapter.open(url, max_size=4)
    try:

        async def writer(n: int) -> None:
            for _ in range(5):
                await db.create_memories_batch([memory([1.0, float(n)]) for _ in range(20)])

        await asyncio.gather(*(writer(n) for n in range(8)))
        assert await db.count_memories() == 800
        stats = db.pool.get_stats()
        assert stats["pool_max"] == 4 and stats["pool_size"] <= 4
    finally:
        await db.close()


async def test_first_writers_racing_fix_one_dimension_and_later_ones_share_the_table(
    url: str,
) -> None:
    """A table's first embedded writes lock its row for update (one dimension wins, the others
    fail naming it); once fixed, writers only share the row: one holding its transaction open
    does not hold up another (cluster workers commit at once)."""
    db = await PostgresAdapter.open(url, max_size=8)
    try:
        results = await asyncio.gather(
            *(db.create_memory(memory([1.0] * dim)) for dim in (2, 3, 2, 3, 4)),
            return_exceptions=True,
        )
        dims = {len(m.embedding or []) for m in await db.get_memories(MemoryQuery())}
        assert len(dims) == 1
        failed = [r for r in results if isinstance(r, BaseException)]
        assert failed and all("dimension" in str(r) for r in failed)
        [dim] = dims
        async with db.with_connection() as conn, conn.transaction():
            await db.create_missing_on(conn, [memory([1.0] * dim)])  # row held until commit
            await asyncio.wait_for(db.create_memory(memory([2.0] * dim)), 5)
            await asyncio.wait_for(db.create_memory(memory([3.0] * dim)), 5)
    finally:
        await db.close()


async def test_connection_errors_never_show_the_password() -> None:
    secret = "s3cr3t-passw0rd"
    url = f"postgresql://agent:{secret}@127.0.0.1:1/nowhere"
    with pytest.raises(StorageError) as info:
        await PostgresAdapter.open(url, connect_timeout=2)
    text = str(info.value)
    assert secret not in text and "postgresql://agent@127.0.0.1:1/nowhere" in text


async def test_the_plugin_serves_a_host_when_pinned(url: str, tmp_path: Path) -> None:
    config = HostConfig(
        data_dir=tmp_path,
        services={"database": "postgres"},
        plugins=PluginsSettings.model_validate(
            {"enabled": ["postgres", "sqlite", "eliza"], "postgres": {"url": url}}
        ),
        agents=AgentsSettings(characters_dir=tmp_path / "none"),
    )
    host = Host(LoadedConfig(config, None))
    await host.start()
    try:
        db = await host.container.aresolve(DATABASE)
        assert db.backend == "postgres"
        assert host.agents is not None
        runtime = host.agents.get("Eliza")
        reply = await runtime.process_message(
            runtime.new_message("Men are all alike.", room_id=ROOM, entity_id=uuid4())
        )
        assert reply.text == "In what way?"
        assert await db.count_memories(MemoryQuery(room_id=ROOM)) == 2
        assert not (tmp_path / "agenthost.sqlite3").exists()
        figures = {
            (s["name"], tuple(sorted(s["tags"].items()))): s for s in host.telemetry.snapshot()
        }
        pool = figures[("db.client.connection.count", ())]
        assert pool["value"] >= 1
        assert figures[("db.client.connection.max", ())]["value"] == 10
    finally:
        await host.stop()


def test_pool_settings_default_to_the_issue_values_and_are_checked() -> None:
    settings = PostgresSettings()
    assert (settings.pool_min, settings.pool_max) == (2, 10)
    assert (settings.acquire_timeout, settings.max_idle) == (30.0, 300.0)
    with pytest.raises(ValidationError, match="pool_min"):
        PostgresSettings(pool_min=5, pool_max=2)


async def test_pool_settings_reach_the_pool(url: str) -> None:
    db = await PostgresAdapter.open(
        url,
        min_size=1,
        max_size=3,
        acquire_timeout=5,
        max_idle=60,
        max_lifetime=120,
        reconnect_timeout=30,
    )
    try:
        pool = db.pool
        assert (pool.min_size, pool.max_size, pool.timeout) == (1, 3, 5)
        assert (pool.max_idle, pool.max_lifetime, pool.reconnect_timeout) == (60, 120, 30)
    finally:
        await db.close()


async def test_an_exhausted_pool_waits_then_raises_a_clear_error(url: str) -> None:
    db = await PostgresAdapter.open(url, min_size=1, max_size=1, acquire_timeout=0.3)
    try:
        async with db.with_connection():
            with pytest.raises(PoolExhaustedError) as info:
                await db.count_memories()
        text = str(info.value)
        assert "within 0.3 s" in text and "all 1 pooled connections" in text
        assert "pool_max" in text
        assert await db.count_memories() == 0  # the connection is free again
    finally:
        await db.close()


async def test_raw_connections_commit_on_success_and_roll_back_on_error(
    url: str,
) -> None:
    db = await PostgresAdapter.open(url, min_size=1, max_size=2)
    try:
        async with db.with_connection() as conn:
            await conn.execute("CREATE TABLE plugin_notes (note text)")
            await conn.execute("INSERT INTO plugin_notes VALUES ('kept')")
        with pytest.raises(RuntimeError):
            async with db.with_connection() as conn:
                await conn.execute("INSERT INTO plugin_notes VALUES ('rolled back')")
                raise RuntimeError("plugin failure")
        async with db.with_connection() as conn:
            cursor = await conn.execute("SELECT note FROM plugin_notes")
            assert [row[0] for row in await cursor.fetchall()] == ["kept"]
    finally:
        await db.close()


async def test_a_dropped_connection_is_replaced_and_committed_writes_survive(
    url: str,
    pg_server_uri: str,
) -> None:
    db = await PostgresAdapter.open(url, min_size=1, max_size=1)
    try:
        kept = memory([1.0, 0.0])
        await db.create_memory(kept)
        async with db.with_connection() as conn:
            cursor = await conn.execute("SELECT pg_backend_pid()")
            row = await cursor.fetchone()
        assert row is not None
        dropped = row[0]
        async with await psycopg.AsyncConnection.connect(pg_server_uri, autocommit=True) as admin:
            await admin.execute("SELECT pg_terminate_backend(%s)", (dropped,))
        got = await db.get_memory(kept.id)  # on a fresh connection, not an error
        assert got is not None and got.id == kept.id
        assert await db.count_memories() == 1
        async with db.with_connection() as conn:
            cursor = await conn.execute("SELECT pg_backend_pid()")
            row = await cursor.fetchone()
        assert row is not None and row[0] != dropped
    finally:
        await db.close()


async def test_large_batches_go_through_copy_and_keep_every_field(url: str) -> None:
    db = await PostgresAdapter.open(url, min_size=1, max_size=2)
    try:
        batch = [
            memory(
                [1.0, float(i)],
                content=Content(text=f'row {i} \x00 ünï "quoted"', source=["a", {"b": i}]),
                metadata={"i": i, "nested": {"x": None}},
                unique=i % 3 == 0,
            )
            for i in range(COPY_FROM * 2)
        ]
        batch[5] = batch[5].model_copy(update={"embedding": None})
        assert await db.create_memories_batch(batch) == [m.id for m in batch]
        got = {m.id: m for m in await db.get_memories(MemoryQuery())}
        assert [got[m.id] for m in batch] == batch
        # a duplicate of a stored id in the middle of a COPY-sized batch: nothing written
        again = [memory([1.0, 0.0]) for _ in range(COPY_FROM * 2)]
        again[COPY_FROM] = batch[0]
        with pytest.raises(BatchError) as info:
            await db.create_memories_batch(again)
        assert info.value.index == COPY_FROM
        assert await db.count_memories() == len(batch)
    finally:
        await db.close()


async def test_times_come_back_in_utc_whatever_the_session_time_zone(url: str) -> None:
    db = await PostgresAdapter.open(url, min_size=1, max_size=1)
    try:
        kept = memory([1.0, 0.0])
        await db.create_memory(kept)
        async with db.with_connection() as conn:  # the pool's only connection keeps the setting
            await conn.execute("SET TIME ZONE 'Asia/Tokyo'")
        got = await db.get_memory(kept.id)
        assert got is not None and got.created_at == kept.created_at
        assert got.created_at.utcoffset() == timedelta(0)
    finally:
        await db.close()


@pytest.mark.parametrize(("memory_for_build", "spills"), [("1MB", True), ("64MB", False)])
async def test_indexes_are_built_with_the_configured_memory(
    url: str, memory_for_build: str, spills: bool
) -> None:
    """pgvector says when an HNSW graph outgrows ``maintenance_work_mem`` during a build: with
    1MB for 2,000 x 128-d it does, with 64MB it does not, so the setting reaches the build."""
    db = await PostgresAdapter.open(
        url, min_size=1, max_size=1, exact_below=0, index_build_memory=memory_for_build
    )
    try:
        notices: list[str] = []
        async with db.with_connection() as conn:  # the pool's only connection: the build's too
            conn.add_notice_handler(lambda notice: notices.append(str(notice.message_primary)))
        rng = random.Random(3)
        vectors = [[rng.gauss(0, 1) for _ in range(128)] for _ in range(2000)]
        await db.create_memories_batch([memory(v) for v in vectors])
        assert await db.search_memories(vectors[0], params=SearchParams(k=3, index_type="hnsw"))
        outgrown = [n for n in notices if "no longer fits into maintenance_work_mem" in n]
        assert bool(outgrown) is spills, notices
    finally:
        await db.close()


def test_index_build_memory_takes_postgresql_units() -> None:
    assert PostgresSettings(index_build_memory="2GB").index_build_memory == "2GB"
    assert PostgresSettings(index_build_memory=None).index_build_memory is None
    with pytest.raises(ValidationError, match="index_build_memory"):
        PostgresSettings(index_build_memory="lots")


async def index_scans(url: str) -> dict[str, int]:
    """idx_scan of this schema's ANN indexes by kind, once the server has counted them."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        cursor = await conn.execute(
            "SELECT indexrelname, idx_scan FROM pg_stat_user_indexes"
            " WHERE schemaname = current_schema()"
            " AND (indexrelname LIKE 'memories_hnsw_%' OR indexrelname LIKE 'memories_ivf_%')"
        )
        return {name.split("_")[1]: int(scans) for name, scans in await cursor.fetchall()}


async def test_each_index_type_answers_with_its_own_index(url: str) -> None:
    """With both an HNSW and an IVF index on a table, a search asking for one is answered by
    that one (the planner, left to choose, took the IVF index for HNSW searches), and right
    after a bulk load (no statistics yet) by an index rather than a scan of every row."""
    db = await PostgresAdapter.open(url, min_size=1, max_size=1, exact_below=0)
    try:
        rng = random.Random(5)
        vectors = [[rng.gauss(0, 1) for _ in range(32)] for _ in range(3000)]
        await db.create_memories_batch([memory(v) for v in vectors])
        for kind in ("hnsw", "ivf"):  # builds both indexes
            await db.search_memories(vectors[0], params=SearchParams(k=5, index_type=kind))  # type: ignore[arg-type]
        async with db.with_connection() as conn:  # flush the pool connection's counters now
            await conn.execute("SELECT pg_stat_force_next_flush()")
        before = await index_scans(url)
        assert set(before) == {"hnsw", "ivf"}
        for kind, times in (("hnsw", 3), ("ivf", 2)):
            for v in vectors[1 : 1 + times]:
                found = await db.search_memories(v, params=SearchParams(k=5, index_type=kind))  # type: ignore[arg-type]
                assert found[0][0].embedding is not None
                assert math.isclose(found[0][1], 1.0, abs_tol=1e-4)  # itself, the nearest
        async with db.with_connection() as conn:
            await conn.execute("SELECT pg_stat_force_next_flush()")
        after = await index_scans(url)
        assert after["hnsw"] - before["hnsw"] == 3
        assert after["ivf"] - before["ivf"] == 2
    finally:
        await db.close()


async def test_migration_2_replaces_ivf_indexes_on_the_shared_expression(url: str) -> None:
    """A version-1 database's IVF index (on the expression HNSW uses too) is dropped by the
    upgrade, and the next IVF search builds one on the IVF expression."""
    db = await PostgresAdapter.open(url, exact_below=0)
    await db.create_memories_batch([memory([float(i % 7), 1.0, float(i % 3)]) for i in range(50)])
    async with db.with_connection() as conn:  # back to version 1, with its kind of IVF index
        await conn.execute("DELETE FROM schema_migrations WHERE version > 1")
        await conn.execute(
            "CREATE INDEX memories_ivf_0123456789ab ON memories USING ivfflat"
            " ((embedding::vector(3)) vector_cosine_ops) WITH (lists = 2)"
            " WHERE table_name = 'messages' AND embedding IS NOT NULL"
        )
        await conn.execute("UPDATE memory_tables SET ivf_lists = 2")
    await db.close()
    db = await PostgresAdapter.open(url, exact_below=0)
    try:
        async with db.with_connection() as conn:
            cursor = await conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname LIKE 'memories_ivf_%'"
            )
            assert await cursor.fetchall() == []
            cursor = await conn.execute("SELECT ivf_lists FROM memory_tables")
            assert await cursor.fetchall() == [(None,)]
        assert await db.search_memories([1.0, 1.0, 1.0], params=SearchParams(k=3, index_type="ivf"))
        async with db.with_connection() as conn:
            cursor = await conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname LIKE 'memories_ivf_%'"
            )
            (definition,) = [row[0] for row in await cursor.fetchall()]
        assert "(embedding)::real[]" in definition
    finally:
        await db.close()


async def test_concurrent_first_searches_share_the_index_builds(url: str) -> None:
    """Searches that each find their index missing: one builds at a time, the others are
    answered exactly meanwhile (right answers, no error), and later searches build the rest.
    Two concurrent ``CREATE INDEX IF NOT EXISTS`` of one index, or one build's ANALYZE and
    another build, deadlocked, and every search but one failed with DeadlockDetected."""
    first = await PostgresAdapter.open(url, exact_below=0)
    second = await PostgresAdapter.open(url, exact_below=0)
    try:
        rng = random.Random(11)
        for table in ("messages", "facts"):
            vectors = [[rng.gauss(0, 1) for _ in range(8)] for _ in range(400)]
            await first.create_memories_batch([memory(v) for v in vectors], table)
        q = [1.0] * 8
        expected = {
            table: (
                await first.search_memories(q, MemoryQuery(table_name=table), SearchParams(k=3))
            )[0][0].id
            for table in ("messages", "facts")
        }
        searches: list[tuple[PostgresAdapter, str, Any]] = [
            (db, table, kind)
            for db in (first, second)
            for table in ("messages", "facts")
            for kind in ("hnsw", "ivf", "hnsw")
        ]
        found = await asyncio.gather(
            *(
                db.search_memories(
                    q, MemoryQuery(table_name=table), SearchParams(k=3, index_type=kind, probes=64)
                )
                for db, table, kind in searches
            )
        )
        for (_, table, _), hits in zip(searches, found, strict=True):
            assert hits and hits[0][0].id == expected[table]
        for db, table, kind in searches:  # one at a time: each finds the lock free
            hits = await db.search_memories(
                q, MemoryQuery(table_name=table), SearchParams(k=3, index_type=kind, probes=64)
            )
            assert hits[0][0].id == expected[table]
        async with first.with_connection() as conn:
            cursor = await conn.execute(
                "SELECT count(*) FROM pg_indexes WHERE schemaname = current_schema()"
                " AND (indexname LIKE 'memories_hnsw_%' OR indexname LIKE 'memories_ivf_%')"
            )
            assert await cursor.fetchone() == (4,)
    finally:
        await first.close()
        await second.close()


async def test_hnsw_search_beyond_pgvectors_ef_search_range(url: str) -> None:
    """pgvector caps hnsw.ef_search at 1000 and an HNSW scan yields at most ef_search rows: a
    search for more (or with a larger ef_search) failed with the server's
    InvalidParameterValue; k > 1000 is answered exactly, a larger ef_search is capped, and so
    are IVF probes past pgvector's 32768."""
    db = await PostgresAdapter.open(url, exact_below=0, min_size=1, max_size=1)
    try:
        await db.create_memories_batch([memory([1.0, float(i)]) for i in range(1100)])
        exact = await db.search_memories([1.0, 0.0], params=SearchParams(k=1050))
        hits = await db.search_memories([1.0, 0.0], params=SearchParams(k=1050, index_type="hnsw"))
        assert [m.id for m, _ in hits] == [m.id for m, _ in exact]
        assert len(hits) == 1050
        capped = await db.search_memories(
            [1.0, 0.0], params=SearchParams(k=5, index_type="hnsw", ef_search=5000)
        )
        assert [m.id for m, _ in capped] == [m.id for m, _ in exact[:5]]
        probed = await db.search_memories(
            [1.0, 0.0], params=SearchParams(k=5, index_type="ivf", probes=40_000)
        )
        assert [m.id for m, _ in probed] == [m.id for m, _ in exact[:5]]  # every list scanned
    finally:
        await db.close()


@pytest.mark.parametrize("size", [3, COPY_FROM + 6])
async def test_metadata_with_nan_or_infinity_fails_its_row(url: str, size: int) -> None:
    """Python's json writes NaN and Infinity, PostgreSQL's json refuses them: the server's
    InvalidTextRepresentation came out of the batch (or COPY) unexplained; now the row fails
    with a ValueError like any other unserialisable value, and nothing is written."""
    db = await PostgresAdapter.open(url, min_size=1, max_size=1)
    try:
        batch = [memory([1.0, float(i)]) for i in range(size)]
        bad = size - 2
        batch[bad] = memory([1.0, 0.0], metadata={"score": float("nan")})
        with pytest.raises(BatchError) as info:
            await db.create_memories_batch(batch)
        assert info.value.index == bad and isinstance(info.value.cause, ValueError)
        assert await db.count_memories() == 0
        await db.create_memory(batch[0])
        with pytest.raises(ValueError, match="JSON"):
            await db.update_memory(MemoryUpdate(id=batch[0].id, metadata={"x": float("inf")}))
        got = await db.get_memory(batch[0].id)
        assert got is not None and got.metadata == {}
    finally:
        await db.close()


@pytest.mark.parametrize(("given", "waits"), [(0.5, 2), (2.5, 3), (10.0, 10)])
async def test_a_fractional_connect_timeout_is_not_psycopgs_default(
    monkeypatch: pytest.MonkeyPatch, given: float, waits: int
) -> None:
    """``connect_timeout: 0.5`` went to libpq as int(0.5) == 0, which psycopg reads as "no
    timeout" and replaces by its 130 s default; whole seconds are now rounded up."""
    seen: list[int] = []

    async def connect(url: str, **kwargs: Any) -> Any:
        seen.append(timeout_from_conninfo(conninfo_to_dict(url, **kwargs)))
        raise psycopg.OperationalError("not connecting in this test")

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", connect)
    with pytest.raises(StorageError, match="cannot open PostgreSQL"):
        await PostgresAdapter.open("postgresql://agent@127.0.0.1:1/db", connect_timeout=given)
    assert seen == [waits]


async def building(watcher: psycopg.AsyncConnection[Any]) -> str | None:
    """The command of the index build running on this schema's memories, if any."""
    cursor = await watcher.execute(
        "SELECT command FROM pg_stat_progress_create_index WHERE relid = 'memories'::regclass"
    )
    row = await cursor.fetchone()
    return None if row is None else str(row[0])


async def test_writes_and_searches_go_on_while_an_index_builds(url: str) -> None:
    """The first HNSW search builds the index concurrently: a write meanwhile gets its lock at
    once (a plain CREATE INDEX holds off every writer until the end of the build), and another
    search meanwhile is answered exactly without waiting for the build."""
    # 1MB of maintenance_work_mem makes pgvector build on disk: seconds for these rows
    db = await PostgresAdapter.open(url, exact_below=0, index_build_memory="1MB")
    try:
        rng = random.Random(13)
        vectors = [[rng.gauss(0, 1) for _ in range(32)] for _ in range(3000)]
        ids = await db.create_memories_batch([memory(v) for v in vectors])
        first = asyncio.create_task(
            db.search_memories(vectors[7], params=SearchParams(k=5, index_type="hnsw"))
        )
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watcher:
            for _ in range(600):
                command = await building(watcher)
                if command is not None or first.done():
                    break
                await asyncio.sleep(0.05)
            assert command == "CREATE INDEX CONCURRENTLY"
            await watcher.execute("SET lock_timeout = '500ms'")
            await watcher.execute(
                "UPDATE memories SET metadata = '{\"touched\": true}' WHERE id = %s", (ids[0],)
            )  # LockNotAvailable here if the build held writers off
            meanwhile = await db.search_memories(
                vectors[9], params=SearchParams(k=5, index_type="hnsw")
            )
            assert meanwhile[0][0].id == ids[9] and math.isclose(meanwhile[0][1], 1.0, abs_tol=1e-5)
            assert await building(watcher) is not None  # answered while the build still ran
        hits = await first
        assert hits[0][0].id == ids[7]
        assert (await db.get_memory(ids[0])).metadata == {"touched": True}  # type: ignore[union-attr]
        async with db.with_connection() as conn:
            cursor = await conn.execute(
                "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
                " WHERE c.relname LIKE 'memories_hnsw_%'"
                " AND c.relnamespace = current_schema()::regnamespace"
            )
            assert await cursor.fetchall() == [(True,)]
    finally:
        await db.close()


WATCHED = """
import os, sys, tempfile
from pathlib import Path
import pgserver
from host.pytest_plugin import watch_server
directory = Path(tempfile.mkdtemp(prefix="agenthost-pg-"))
server = pgserver.get_server(directory, cleanup_mode="stop")
watch_server(os.getpid(), server.get_pid(), directory)
print(server.get_pid(), directory, flush=True)
os._exit(0)  # as a killed test run: no atexit, no fixture teardown
"""


def test_a_test_run_dying_without_cleanup_takes_its_postgres_along() -> None:
    """The session's pgserver PostgreSQL is stopped and its directory removed by a watchdog
    when the test process dies without tearing down (killed runs left one running)."""
    pytest.importorskip("pgserver")
    import subprocess
    import sys
    import time

    import psutil

    done = subprocess.run(
        [sys.executable, "-c", WATCHED], capture_output=True, text=True, timeout=120, check=True
    )
    pid_text, directory = done.stdout.split()
    postmaster = int(pid_text)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        gone = not psutil.pid_exists(postmaster) or psutil.Process(postmaster).status() == "zombie"
        if gone and not Path(directory).exists():
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"postgres {postmaster} or {directory} still there after its parent died")
