"""PostgreSQL storage benchmark: the adapter against raw psycopg on the same server, same run.

A PostgreSQL 16 + pgvector started by pgserver in a temp dir. Rows are the same memories as
bench/storage.py (clustered 384-d embeddings). Baselines are raw psycopg doing the same work:
a binary ``COPY`` of pre-encoded rows in one transaction (``executemany`` shown as a reference),
a keyset page query, and the same HNSW index query; the adapter adds validation, encoding,
dimension bookkeeping and ``Memory`` objects.

    .venv/bin/python bench/storage_pg.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
from pgvector.psycopg import register_vector_async
from rich.console import Console
from rich.table import Table
from storage import embeddings, make_memories  # type: ignore[import-not-found]

from builtin_plugins.postgres import PostgresAdapter
from builtin_plugins.postgres.search import ANN_ONLY
from contracts.memory import MemoryQuery
from contracts.storage import SearchParams
from host.memory import MemoryManager

console = Console(width=150)


async def main_async(n: int, queries: int) -> None:
    import pgserver  # the pgserver extra

    with tempfile.TemporaryDirectory() as tmp:
        server: Any = pgserver.get_server(Path(tmp), cleanup_mode="stop")
        server.psql("CREATE EXTENSION IF NOT EXISTS vector;")
        uri = str(server.get_uri())
        try:
            await run(uri, n, queries)
        finally:
            server.cleanup()


async def run(uri: str, n: int, queries: int) -> None:
    vectors = embeddings(n, seed=1)
    memories = make_memories(n, vectors)
    db = await PostgresAdapter.open(uri, exact_below=0)
    rows: list[list[str]] = []
    try:
        # raw baselines: same table layout (a copy), pre-encoded rows, one transaction each
        async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
            await conn.execute("CREATE TABLE raw_memories (LIKE memories INCLUDING ALL)")
            await conn.execute("CREATE TABLE raw_memories_many (LIKE memories INCLUDING ALL)")
            await register_vector_async(conn)
            encoded = [
                (
                    m.id, m.table_name, m.agent_id, m.entity_id, m.room_id, m.created_at,
                    m.content.model_dump_json(), "{}", np.asarray(m.embedding, np.float32),
                    False,
                )
                for m in memories
            ]  # fmt: skip
            started = time.perf_counter()
            async with conn.transaction(), conn.cursor() as cur, cur.copy(
                "COPY raw_memories FROM STDIN (FORMAT BINARY)"
            ) as copy:  # fmt: skip
                copy.set_types(
                    ["uuid", "text", "uuid", "uuid", "uuid", "timestamptz", "text", "text",
                     "vector", "bool"]
                )  # fmt: skip
                for row in encoded:
                    await copy.write_row(row)
            raw_copy = time.perf_counter() - started
            started = time.perf_counter()
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO raw_memories_many VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)",
                    encoded,
                )
            raw_many = time.perf_counter() - started
        started = time.perf_counter()
        await db.create_memories_batch(memories)
        adapter_insert = time.perf_counter() - started
        rows.append(
            ["raw psycopg binary COPY, pre-encoded (baseline)", f"{n / raw_copy:,.0f} rows/s",
             "1.00", ""]
        )  # fmt: skip
        rows.append(
            ["raw psycopg executemany, pre-encoded (reference)", f"{n / raw_many:,.0f} rows/s",
             f"{raw_copy / raw_many:.2f}", ""]
        )  # fmt: skip
        ratio = raw_copy / adapter_insert
        rows.append(
            ["PostgresAdapter.create_memories_batch (COPY)", f"{n / adapter_insert:,.0f} rows/s",
             f"{ratio:.2f}",
             "throughput vs raw COPY: >= 0.5x " + ("met" if ratio >= 0.5 else "NOT met")]
        )  # fmt: skip

        # streaming: keyset pages through the manager vs raw keyset queries
        manager = MemoryManager(db, page_size=1000)
        started = time.perf_counter()
        count = 0
        async for _ in manager.get_memories_stream(MemoryQuery(order="asc")):
            count += 1
        stream = time.perf_counter() - started
        async with await psycopg.AsyncConnection.connect(uri) as conn:
            started = time.perf_counter()
            last: tuple[Any, Any] | None = None
            raw_count = 0
            while True:
                if last is None:
                    cursor = await conn.execute(
                        "SELECT * FROM raw_memories ORDER BY created_at, id LIMIT 1000"
                    )
                else:
                    cursor = await conn.execute(
                        "SELECT * FROM raw_memories WHERE (created_at, id) > (%s, %s)"
                        " ORDER BY created_at, id LIMIT 1000",
                        last,
                    )
                page = await cursor.fetchall()
                if not page:
                    break
                raw_count += len(page)
                last = (page[-1][5], page[-1][0])
            raw_stream = time.perf_counter() - started
        assert count == raw_count == n
        rows.append(
            [
                "raw psycopg keyset pages of 1,000 (baseline)",
                f"{n / raw_stream:,.0f} rows/s",
                "1.00",
                "",
            ]
        )
        rows.append(
            ["MemoryManager.get_memories_stream", f"{n / stream:,.0f} rows/s",
             f"{raw_stream / stream:.2f}", "throughput vs raw"]
        )  # fmt: skip

        rows.extend(await search_rows(uri, db, vectors, memories, queries))
    finally:
        await db.close()
    table = Table(title=f"PostgreSQL 16 + pgvector (pgserver), {n:,} memories x 384-d")
    for column in ("operation", "figure", "ratio", "note"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"Python {platform.python_version()}, psycopg {psycopg.__version__}")


RAW_SEARCH = {
    # the statements the adapter runs, written out: the same expressions, settings and limit
    "flat": "SELECT id, embedding <=> %s AS d FROM memories WHERE table_name = 'messages'"
    " AND embedding IS NOT NULL ORDER BY d LIMIT 10",
    "hnsw": "SELECT id, (embedding::vector(384)) <=> %s::vector(384) AS d FROM memories"
    " WHERE table_name = 'messages' AND embedding IS NOT NULL ORDER BY d LIMIT 10",
    "ivf": "SELECT id, ((embedding::real[])::vector(384)) <=> %s::vector(384) AS d FROM memories"
    " WHERE table_name = 'messages' AND embedding IS NOT NULL ORDER BY d LIMIT 10",
}


async def search_rows(
    uri: str, db: PostgresAdapter, vectors: np.ndarray, memories: list[Any], queries: int
) -> list[list[str]]:
    """recall@10 and p50/p99 of flat / ivf / hnsw through the adapter and as the raw query.

    Raw and adapter alternate query by query, each going first on every other query, so
    neither always meets the other's warmed caches. The raw side runs the adapter's own
    statement (same index expression, same settings, in one pipelined round trip like the
    adapter's) on a plain autocommit connection: no pool, no connection check."""
    qs = embeddings(queries, seed=3)
    exact = np.argsort(-(qs @ vectors.T), axis=1)[:, :10]
    label_of = {m.id: i for i, m in enumerate(memories)}
    lists = max(1, int(np.sqrt(len(memories))))
    knobs = {
        "hnsw": ("hnsw.ef_search", "64"),
        "ivf": ("ivfflat.probes", str(max(1, lists // 8))),
    }
    out: list[list[str]] = []
    async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
        await register_vector_async(conn)
        for kind in ("flat", "ivf", "hnsw"):
            started = time.perf_counter()
            await db.build_index(kind)  # type: ignore[arg-type]
            first = time.perf_counter() - started
            lat: dict[str, list[float]] = {"raw": [], "adapter": []}
            hits = dict.fromkeys(lat, 0)
            for qi, q in enumerate(qs):
                truth = set(exact[qi].tolist())
                order = ("raw", "adapter") if qi % 2 == 0 else ("adapter", "raw")
                for who in order:
                    started = time.perf_counter()
                    if who == "adapter":
                        found = await db.search_memories(
                            list(q), params=SearchParams(k=10, index_type=kind)
                        )
                        ids = [m.id for m, _ in found]
                    elif kind == "flat":
                        cursor = await conn.execute(
                            RAW_SEARCH[kind], (q.astype(np.float32),), binary=True
                        )
                        ids = [row[0] for row in await cursor.fetchall()]
                    else:  # one round trip: BEGIN, the settings, the query, COMMIT
                        async with conn.pipeline(), conn.transaction():
                            await conn.execute(ANN_ONLY, knobs[kind])
                            cursor = await conn.execute(
                                RAW_SEARCH[kind], (q.astype(np.float32),), binary=True
                            )
                        ids = [row[0] for row in await cursor.fetchall()]
                    lat[who].append(time.perf_counter() - started)
                    hits[who] += len({label_of.get(i, -1) for i in ids} & truth)
            base = statistics.median(lat["raw"])
            for who, label in (
                ("raw", f"raw psycopg {kind} query, k=10 (baseline)"),
                ("adapter", f"PostgresAdapter.search_memories {kind}, k=10"),
            ):
                p50 = statistics.median(lat[who])
                p99 = float(np.percentile(lat[who], 99))
                note = f"recall@10 {hits[who] / (10 * queries):.3f}, p99 {p99 * 1e3:.2f} ms"
                if who == "adapter" and kind != "flat":
                    note += f"; build_index {first:.1f} s"
                out.append([label, f"p50 {p50 * 1e3:.2f} ms", f"{p50 / base:.2f}", note])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 rows, 100 queries")
    args = parser.parse_args()
    n, queries = (10_000, 100) if args.quick else (100_000, 300)
    asyncio.run(main_async(n, queries))


if __name__ == "__main__":
    main()
