"""Memory storage benchmark: batch insert, streaming, vector search (SQLite and in-memory).

Every figure is compared with a baseline measured in the same run:

- insert: rows/s of `SqliteAdapter.create_memories_batch` vs raw ``sqlite3.executemany`` of
  pre-encoded rows into the same schema in one transaction (target >= 0.5x); per-row
  `create_memory` as a reference;
- streaming: `MemoryManager.get_memories_stream` over N rows (keyset pages): total time, first vs
  last page, vs raw sqlite3 keyset pages and raw ``LIMIT/OFFSET`` pages for contrast; RSS while
  streaming (must stay flat);
- read: N memories with their 384-d vectors read in keyset pages by the adapter vs raw sqlite3
  pages of the same rows with each vector decoded by ``numpy.frombuffer`` (target, issue 20:
  >= 0.5x), and with ``with_embeddings=False``;
- vector search on N x 384: recall@10 vs exact brute force and p50/p99 latency of
  `search_memories` for flat / ivf / hnsw on each backend, vs the same faiss index called directly
  and vs that search plus one raw sqlite3 SELECT of the k rows by rowid, the raw work a SQLite
  search stands for (target, issue 20: HNSW recall >= 0.95, SQLite p50 <= 1.5x that);
- recall (`--only recall`): HNSW recall@10 at the default settings (ef_search tuned per graph)
  on the clustered set and on uniform random data at 10k and 100k x 384.

    .venv/bin/python bench/storage.py            # 100k inserts, 1M streamed, 100k x 384 search
    .venv/bin/python bench/storage.py --quick    # 10k, 100k, 20k x 384
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import json
import multiprocessing
import platform
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import faiss
import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

from builtin_plugins.inmemory import InMemoryAdapter
from builtin_plugins.sqlite import SqliteAdapter
from builtin_plugins.sqlite import worker as sqlite_worker
from builtin_plugins.sqlite.rows import by_seqs_sql, embedding_blob, to_micros
from builtin_plugins.sqlite.search import _hits
from contracts.memory import Content, Memory, MemoryQuery
from contracts.storage import SearchParams
from contracts.vector import Vector
from host import heap
from host.memory import MemoryManager
from host.vectors import IndexParams, VectorIndex, as_vector, normalize, query_vector

DIM = 384
AGENT, ENTITY, ROOM = uuid4(), uuid4(), uuid4()
console = Console(width=150)


def embeddings(n: int, seed: int, latent: int = 32) -> np.ndarray:
    """Unit vectors of intrinsic dimension `latent` embedded in 384-d, plus a little noise.

    A stand-in for sentence embeddings (no model weights are downloaded here): real embedding
    sets have a low intrinsic dimension, which is what makes graph indexes work on them;
    isotropic noise in 384-d would not resemble them.
    """
    basis = np.random.default_rng(0).standard_normal((latent, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, latent)).astype(np.float32)
    noise = 0.05 * np.sqrt(latent) * rng.standard_normal((n, DIM)).astype(np.float32)
    return normalize((z @ basis + noise).astype(np.float32))


def make_memories(n: int, vectors: np.ndarray | None) -> list[Memory]:
    t0 = Memory(agent_id=AGENT, entity_id=ENTITY, room_id=ROOM).created_at
    rows = Vector.rows(vectors) if vectors is not None else None
    return [
        Memory(
            agent_id=AGENT,
            entity_id=ENTITY,
            room_id=ROOM,
            content=Content(text=f"memory number {i}"),
            embedding=None if rows is None else rows[i],
            metadata={"i": i},
            created_at=t0 + timedelta(microseconds=i),
        )
        for i in range(n)
    ]


def encode(memories: list[Memory]) -> list[tuple[Any, ...]]:
    return [
        (
            m.id.bytes,
            m.table_name,
            m.agent_id.bytes,
            m.entity_id.bytes,
            m.room_id.bytes,
            to_micros(m.created_at),
            m.content.model_dump_json(),
            json.dumps(m.metadata),
            None if m.embedding is None else embedding_blob(m.embedding),
            int(m.unique),
        )
        for m in memories
    ]


def raw_connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


async def empty_schema(path: Path) -> None:
    await (await SqliteAdapter.open(path)).close()


def raw_insert(path: Path, rows: list[tuple[Any, ...]]) -> float:
    conn = raw_connect(path)
    started = time.perf_counter()
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(
        "INSERT INTO memories (id, table_name, agent_id, entity_id, room_id, created_at, content,"
        " metadata, embedding, is_unique) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        rows,
    )
    conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return elapsed


async def timed(coro: Awaitable[Any]) -> float:
    started = time.perf_counter()
    await coro
    return time.perf_counter() - started


# -- insert ------------------------------------------------------------------------------------


async def bench_insert(tmp: Path, n: int, per_row: int) -> tuple[list[list[str]], Path]:
    vectors = embeddings(n, seed=1)
    memories = make_memories(n, vectors)
    rows = encode(memories)
    await empty_schema(tmp / "raw.sqlite3")
    t_raw = raw_insert(tmp / "raw.sqlite3", rows)
    t_raw_encode_started = time.perf_counter()
    encode(memories)
    t_encode = time.perf_counter() - t_raw_encode_started
    db = await SqliteAdapter.open(tmp / "adapter.sqlite3")
    t_batch = await timed(db.create_memories_batch(memories))
    single = make_memories(per_row, embeddings(per_row, seed=2))
    other = await SqliteAdapter.open(tmp / "per-row.sqlite3")
    started = time.perf_counter()
    for m in single:
        await other.create_memory(m)
    t_single = (time.perf_counter() - started) / per_row * n
    await other.close()
    mem = InMemoryAdapter()
    t_mem = await timed(mem.create_memories_batch(memories))
    await mem.close()
    await db.close()
    raw_rate = n / t_raw

    def row(name: str, seconds: float, target: str = "") -> list[str]:
        rate = n / seconds
        return [name, f"{rate:,.0f}", f"{rate / raw_rate:.2f}", target]

    table = [
        row("raw sqlite3.executemany, pre-encoded rows, 1 txn (baseline)", t_raw),
        row("raw executemany + encoding the same Memory objects", t_raw + t_encode),
        row(
            "SqliteAdapter.create_memories_batch (1 txn)",
            t_batch,
            ">= 0.5x: " + ("met" if raw_rate and n / t_batch / raw_rate >= 0.5 else "NOT met"),
        ),
        row(f"SqliteAdapter.create_memory per row ({per_row:,} rows, reference)", t_single),
        row("InMemoryAdapter.create_memories_batch", t_mem),
    ]
    return table, tmp / "adapter.sqlite3"


# -- streaming ---------------------------------------------------------------------------------


async def bench_stream(tmp: Path, n: int, page: int) -> list[list[str]]:
    path = tmp / "stream.sqlite3"
    db = await SqliteAdapter.open(path)
    chunk = 50_000
    for start in range(0, n, chunk):
        await db.create_memories_batch(make_memories(min(chunk, n - start), None))
    gc.collect()
    process = psutil.Process()
    manager = MemoryManager(db, page_size=page)
    page_times: list[float] = []
    rss: list[int] = []
    count = 0
    started = last = time.perf_counter()
    async for batch in manager.get_memories_batch(MemoryQuery(order="asc")):
        now = time.perf_counter()
        page_times.append(now - last)
        count += len(batch)
        if len(page_times) % 50 == 1:
            rss.append(process.memory_info().rss)
        last = time.perf_counter()
    total = time.perf_counter() - started
    assert count == n, (count, n)
    await db.close()

    conn = raw_connect(path)
    cols = "id, table_name, agent_id, entity_id, room_id, created_at, content, metadata"

    def raw_page(sql: str, params: tuple[Any, ...]) -> float:
        t = time.perf_counter()
        conn.execute(sql, params).fetchall()
        return time.perf_counter() - t

    order = " ORDER BY created_at, id LIMIT ?"
    first_row = conn.execute(f"SELECT created_at, id FROM memories{order}", (1,)).fetchone()
    last_key = conn.execute(
        f"SELECT created_at, id FROM memories ORDER BY created_at, id LIMIT 1 OFFSET {n - page - 1}"
    ).fetchone()
    best = min
    raw_key_first = best(
        raw_page(
            f"SELECT {cols} FROM memories WHERE (created_at, id) > (?, ?){order}",
            (first_row[0] - 1, b"", page),
        )
        for _ in range(5)
    )
    raw_key_last = best(
        raw_page(
            f"SELECT {cols} FROM memories WHERE (created_at, id) > (?, ?){order}",
            (*last_key, page),
        )
        for _ in range(5)
    )
    off_first = best(
        raw_page(f"SELECT {cols} FROM memories{order} OFFSET 0", (page,)) for _ in range(3)
    )
    off_last = best(
        raw_page(f"SELECT {cols} FROM memories{order} OFFSET ?", (page, n - page)) for _ in range(3)
    )
    conn.close()
    first, last_p = page_times[0], page_times[-2] if len(page_times) > 1 else page_times[-1]
    mb = 1024 * 1024
    return [
        ["rows streamed", f"{n:,}", f"page size {page:,}"],
        ["total stream time", f"{total:.2f} s", f"{n / total:,.0f} rows/s"],
        [
            "first page / last full page (adapter, keyset)",
            f"{first * 1e3:.2f} / {last_p * 1e3:.2f} ms",
            f"last/first {last_p / first:.2f}x",
        ],
        [
            "raw sqlite3 keyset page first / last (baseline)",
            f"{raw_key_first * 1e3:.2f} / {raw_key_last * 1e3:.2f} ms",
            f"adapter/raw, last page {last_p / raw_key_last:.2f}x",
        ],
        [
            "raw OFFSET page first / last (contrast)",
            f"{off_first * 1e3:.2f} / {off_last * 1e3:.2f} ms",
            f"last/first {off_last / off_first:.1f}x",
        ],
        [
            "RSS after first page / peak while streaming",
            f"{rss[0] / mb:.0f} / {max(rss) / mb:.0f} MB",
            f"growth {(max(rss) - rss[0]) / mb:+.1f} MB over {n:,} rows",
        ],
    ]


# -- reading memories with their vectors -------------------------------------------------------


async def bench_read(tmp: Path, n: int, page: int) -> list[list[str]]:
    """Reading N memories with their 384-d vectors, a page at a time in keyset order, vs the
    same pages fetched by raw sqlite3 with every column and each vector decoded by
    ``numpy.frombuffer`` (target, issue 20: >= 0.5x). Methods alternate over 5 rounds; each
    one's best round counts, in wall time and in CPU time of the process (all its threads: the
    adapter reads on its worker thread; on a shared machine CPU time is the steadier figure).

    The process is in a started host's state: start-up's objects frozen out of the garbage
    collector's walks (`host.heap.freeze`, as `Host.start` does); one row reads with them
    thawed, as before the host froze them. A page's memories decode their content, time,
    metadata, vector and id when one is first read, and a vector, id or time alone when only
    it is read (docs/storage.md): the first row reads every memory's vector, the work the
    baseline does (the target's row); the last reads its content, which decodes them all."""
    heap.freeze()
    try:
        return await _bench_read(tmp, n, page)
    finally:
        heap.thaw()


async def _bench_read(tmp: Path, n: int, page: int) -> list[list[str]]:
    path = tmp / "read.sqlite3"
    db = await SqliteAdapter.open(path)
    chunk = 20_000
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        await db.create_memories_batch(make_memories(size, embeddings(size, seed=start)))
    conn = raw_connect(path)
    cols = "seq, id, table_name, agent_id, entity_id, room_id, created_at, content, metadata,"
    cols += " embedding, is_unique"
    keyset = f"SELECT {cols} FROM memories WHERE (created_at, id) > (?, ?)"
    keyset += " ORDER BY created_at, id LIMIT ?"

    def raw(decode: Any) -> int:
        count, key = 0, (-1, b"")
        while True:
            rows = conn.execute(keyset, (*key, page)).fetchall()
            for row in rows:
                decode(row[9])
            count += len(rows)
            if len(rows) < page:
                return count
            key = (rows[-1][6], rows[-1][1])

    def frombuffer(blob: bytes) -> Any:
        return np.frombuffer(blob, "<f4")

    def floats(blob: bytes) -> Any:
        return np.frombuffer(blob, "<f4").tolist()

    async def adapter(vectors: bool, used: str | None = None) -> int:
        count = 0
        query = MemoryQuery(order="asc", with_embeddings=vectors)
        async for batch in MemoryManager(db, page_size=page).get_memories_batch(query):
            if used == "vector":  # what the baseline decodes: each row's vector
                for memory in batch:
                    memory.embedding  # noqa: B018
            elif used == "all":  # a page's fields are decoded when first read: all of them
                for memory in batch:
                    memory.content  # noqa: B018
            count += len(batch)
        return count

    async def sync(fn: Any, *args: Any) -> int:
        return int(fn(*args))

    async def thawed() -> int:
        gc.unfreeze()
        try:
            return await adapter(True, "vector")
        finally:
            gc.freeze()

    baseline = "raw sqlite3 pages + numpy.frombuffer per row (baseline)"
    methods: dict[str, Any] = {
        baseline: lambda: sync(raw, frombuffer),
        "raw sqlite3 pages + floats per row (what lists cost)": lambda: sync(raw, floats),
        "MemoryManager.get_memories_batch, every memory's vector read": lambda: adapter(
            True, "vector"
        ),
        "  with vectors, none of them read": lambda: adapter(True),
        "  with_embeddings=False (vectors left unread)": lambda: adapter(False),
        "  with vectors, start-up's objects not frozen": thawed,
        "  with vectors, every memory's fields read (decoded)": lambda: adapter(True, "all"),
    }
    best: dict[str, float] = {}
    best_cpu: dict[str, float] = {}
    for _ in range(5):
        for name, method in methods.items():
            started, cpu = time.perf_counter(), time.process_time()
            count = await method()
            elapsed, used = time.perf_counter() - started, time.process_time() - cpu
            assert count == n, (name, count, n)
            best[name] = min(best.get(name, elapsed), elapsed)
            best_cpu[name] = min(best_cpu.get(name, used), used)
    conn.close()
    await db.close()
    base, base_cpu = n / best[baseline], n / best_cpu[baseline]
    out = []
    for name, seconds in best.items():
        rate, cpu_rate = n / seconds, n / best_cpu[name]
        target = ""
        if name.startswith("MemoryManager"):
            met = [rate / base >= 0.5, cpu_rate / base_cpu >= 0.5]
            target = ">= 0.5x: " + {2: "met", 1: "met in CPU only" if met[1] else "wall only"}.get(
                sum(met), "NOT met"
            )
        out.append(
            [
                name,
                f"{rate:,.0f}",
                f"{rate / base:.2f}",
                f"{cpu_rate:,.0f}",
                f"{cpu_rate / base_cpu:.2f}",
                target,
            ]
        )
    return out


# -- vector search -----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    return float(np.percentile(np.asarray(values), p))


def raw_target(index: VectorIndex) -> tuple[Any, Any]:
    """The faiss index and search parameters a search of `index` at the default settings
    runs (`VectorIndex.search`: its tuned or configured ef_search, its probes; an HNSW index
    whose tuning chose exact scoring searches its graph's flat storage): what a raw search of
    the same graph runs, so that the raw rows and an adapter's differ by the adapter alone."""
    if index.kind == "hnsw" and index.exact:
        return faiss.downcast_index(index._index.storage), None
    return index._index, index._shared_params(None, None)


def adapter_index(db: Any, kind: str) -> VectorIndex:
    """`db`'s own index of `kind` over the default table (built by `build_index`)."""
    index: VectorIndex = db._indexes._indexes[("messages", kind)]
    return index


def ef_note(index: VectorIndex) -> str:
    return "exact (tuned)" if index.exact else str(index.default_ef(10))


ROUND = 25
"""Queries a method runs before the next method's turn (see `bench_search`)."""


def cold(*conns: sqlite3.Connection | None) -> None:
    """Empty `conns`' page caches (``PRAGMA shrink_memory``), so that every method's turn
    reads its rows as the first turn of a round did: from the OS's cache into SQLite's. Else
    a method following another that read the same rows on its connection found them cached
    (the raw rows read on their own connection, the adapter's on its own)."""
    for conn in conns:
        if conn is not None:
            conn.execute("PRAGMA shrink_memory")


async def bench_search(
    sqlite_path: Path, n: int, queries: int, params: IndexParams
) -> list[list[str]]:
    """Recall@10 and p50/p99 of each index type on both adapters, against raw faiss and raw
    faiss plus one raw sqlite3 SELECT of the 10 rows (the raw work a SQLite search stands for).

    The raw rows search the SQLite adapter's own index of each type with the settings it
    searches with (`raw_target`): raw and adapter differ by the adapter's own work alone, as
    in the breakdown (a graph of its own, built alike, tuned its own ef_search: 48 here, 64
    there, and its own cost). The in-memory adapter searches its own index (its ef_search is
    printed). The query arrives as a `Vector` (what an embedding model returns), made before
    the timing as the raw rows' float32 array is; recall is counted after it."""
    vectors = embeddings(n, seed=1)
    qs = embeddings(queries, seed=3)
    exact = np.argsort(-(qs @ vectors.T), axis=1)[:, :10]
    memories = make_memories(n, vectors)
    label_of = {m.id: i for i, m in enumerate(memories)}
    sqlite_db = await SqliteAdapter.open(sqlite_path, index_params=params)
    await sqlite_db.create_memories_batch(memories)
    mem_db = InMemoryAdapter(index_params=params)
    await mem_db.create_memories_batch(memories)
    del memories
    out: list[list[str]] = []
    settings: dict[str, dict[str, int]] = {
        "flat": {},
        "ivf": {"probes": params.ivf_probes} if params.ivf_probes else {},
        "hnsw": {"ef_search": params.hnsw_ef_search} if params.hnsw_ef_search else {},
    }
    conn = raw_connect(sqlite_path)
    cols = "seq, id, table_name, agent_id, entity_id, room_id, created_at, content, metadata,"
    cols += " embedding, is_unique"
    query_vectors = [Vector(q) for q in qs]  # as a message's embedding arrives
    # One OpenMP thread, as the adapters search (an idle team left spinning after a raw
    # search took the core the next method needed).
    faiss.omp_set_num_threads(1)
    for kind in ("flat", "ivf", "hnsw"):
        firsts = {}
        for name, db in (("sqlite", sqlite_db), ("inmemory", mem_db)):
            firsts[name] = await timed(db.build_index(kind))  # type: ignore[arg-type]
        own = adapter_index(sqlite_db, kind)
        target, search_params = raw_target(own)
        lat: dict[str, list[float]] = {
            "raw": [],
            "fetch": [],
            "sqlite": [],
            "sqlite-bare": [],
            "inmemory": [],
            "inmemory-bare": [],
        }
        hits = dict.fromkeys(lat, 0)
        # Methods take turns over rounds of ROUND queries, so machine load hits every method
        # alike. Not query by query: a method searching a graph for the query the method before
        # it had just searched on that graph (the raw pair; each adapter and its bare twin)
        # would find the nodes it visits already in the CPU caches, a 15-30% head start. Each
        # turn starts from empty page caches (`cold`).
        for start in range(0, queries, ROUND):
            block = range(start, min(start + ROUND, queries))
            for name in lat:
                cold(conn, sqlite_db._conn, sqlite_db._reader)
                store: Any = sqlite_db if name.startswith("sqlite") else mem_db
                search = SearchParams(
                    k=10,
                    index_type=kind,  # type: ignore[arg-type]
                    with_embeddings=not name.endswith("-bare"),
                    **settings[kind],
                )
                for qi in block:
                    if name in ("raw", "fetch"):
                        t = time.perf_counter()
                        _, ids = target.search(qs[qi : qi + 1], 10, params=search_params)
                        seqs = own._ext[ids[0]].tolist()  # faiss ids -> rowids, as the adapter
                        if name == "fetch":
                            marks = ",".join("?" * len(seqs))
                            sql = f"SELECT {cols} FROM memories WHERE seq IN ({marks})"
                            conn.execute(sql, seqs).fetchall()
                        lat[name].append(time.perf_counter() - t)
                        found = {seq - 1 for seq in seqs}  # rows went in in order: seq = row + 1
                    else:
                        t = time.perf_counter()
                        results = await store.search_memories(query_vectors[qi], params=search)
                        lat[name].append(time.perf_counter() - t)
                        found = {label_of.get(m.id, -1) for m, _ in results}
                    hits[name] += len(found & set(exact[qi].tolist()))
        raw_p50 = percentile(lat["raw"], 50)
        fetch_p50 = percentile(lat["fetch"], 50)
        on = "the SQLite adapter's own index"
        if kind == "hnsw":
            on += f", ef_search {ef_note(own)}"
        labels = {
            "raw": (f"raw faiss {kind} (baseline)", on),
            "fetch": (f"raw faiss {kind} + sqlite3 fetch of the 10 rows (baseline)", ""),
            "sqlite": (f"SqliteAdapter.search_memories {kind}", ""),
            "sqlite-bare": (f"SqliteAdapter {kind}, with_embeddings=False", ""),
            "inmemory": (f"InMemoryAdapter.search_memories {kind}", ""),
            "inmemory-bare": (f"InMemoryAdapter {kind}, with_embeddings=False", ""),
        }
        for key, (label, note) in labels.items():
            recall = hits[key] / (10 * queries)
            p50 = percentile(lat[key], 50)
            notes = [note] if note else []
            if key in firsts:
                notes = [f"build_index {firsts[key]:.1f} s"]
                if kind == "hnsw" and key == "inmemory":
                    notes.append(f"its own graph, ef_search {ef_note(adapter_index(mem_db, kind))}")
            if kind == "hnsw" and key.startswith("sqlite"):
                ok = recall >= 0.95 and p50 / fetch_p50 <= 1.5
                notes.append("target (<= 1.5x faiss + fetch) " + ("met" if ok else "NOT met"))
            out.append(
                [
                    label,
                    f"{recall:.3f}",
                    f"{p50 * 1e3:.3f}",
                    f"{percentile(lat[key], 99) * 1e3:.3f}",
                    f"{p50 / raw_p50:.2f}",
                    f"{p50 / fetch_p50:.2f}",
                    "; ".join(notes),
                ]
            )
    conn.close()
    await sqlite_db.close()
    await mem_db.close()
    return out


Timed = Callable[[int], Awaitable[float]]
"""A breakdown method: runs for query `i`, returns the seconds its measured part took."""


async def bench_breakdown(
    sqlite_path: Path, n: int, queries: int, params: IndexParams
) -> list[list[str]]:
    """Where an HNSW search's time goes past the raw work, on the SQLite adapter's own graph
    with the settings it searches with (`raw_target`), the same graph and ef as the search
    section's HNSW rows. Methods take turns over rounds of `ROUND` queries, as there, each
    turn with the connections' page caches emptied (`cold`):

    - the two baselines (raw faiss; raw faiss plus one raw sqlite3 SELECT of the 10 rows,
      the target's) and the raw SELECT alone, of the same rows;
    - the adapter's stages one at a time, on the same queries: the query normalised
      (`query_vector`), its index call (`VectorIndex.search`: the tuned ef, labels mapped),
      the rows statement (the 10 rows and the table's version, on the writes' connection),
      the rows made into `Memory` objects, then every hit's vector read (decoded) and every
      hit's other fields read (the whole row decoded): a search's memories decode their
      fields when first read, as a page's do; their sum, and what the awaited search costs
      beyond it (the call's own Python, its locks, the loop's turns, cache misses between
      the stages);
    - the search awaited as shipped (on the loop's thread: no hop), and the time its own
      index call took meanwhile; without vectors; with the query `Vector` made inside the
      timing (the embedding's own validation); with the loop's turns off (a search answered
      on the loop's thread lets it turn once it has not for 1 ms: the raw rows never do);
    - the thread hop: raw faiss on the adapter's worker thread, and the adapter's worker path
      awaited (the hop and the search in one read snapshot, four statements): what a search
      that cannot be answered on the loop's thread pays;
    - the in-memory adapter (its own graph, built alike), with and without vectors.
    """
    vectors = embeddings(n, seed=1)
    qs = embeddings(queries, seed=3)
    memories = make_memories(n, vectors)
    sqlite_db = await SqliteAdapter.open(sqlite_path, index_params=params)
    await sqlite_db.create_memories_batch(memories)
    mem_db = InMemoryAdapter(index_params=params)
    await mem_db.create_memories_batch(memories)
    del memories
    for db in (sqlite_db, mem_db):  # builds each adapter's HNSW graph
        await db.build_index("hnsw")
    index = adapter_index(sqlite_db, "hnsw")
    target, search_params = raw_target(index)
    conn = raw_connect(sqlite_path)
    cols = "seq, id, table_name, agent_id, entity_id, room_id, created_at, content, metadata,"
    cols += " embedding, is_unique"
    faiss.omp_set_num_threads(1)  # as the adapters search
    loop = asyncio.get_running_loop()
    worker = sqlite_db._executor
    writes = sqlite_db._conn
    query_vectors = [Vector(q) for q in qs]  # as a message's embedding arrives
    normalised = [query_vector(v, DIM) for v in query_vectors]
    found = [index.search(q, 10) for q in normalised]  # the adapter's hits: labels, scores
    shipped = SearchParams(k=10, index_type="hnsw", **_ef(params))
    bare = SearchParams(k=10, index_type="hnsw", with_embeddings=False, **_ef(params))
    statement = by_seqs_sql(10, versioned=True, vectors=True)
    version = index.version
    inside: list[float] = []
    recording = False
    searched = index.search

    def timed_search(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return searched(*args, **kwargs)
        finally:
            if recording:
                inside.append(time.perf_counter() - started)

    def rows_of(i: int) -> dict[int, tuple[Any, ...]]:
        return {r[0]: r for r in writes.execute(statement, ["messages", *found[i][0]])}

    def select(seqs: list[int]) -> None:
        marks = ",".join("?" * len(seqs))
        conn.execute(f"SELECT {cols} FROM memories WHERE seq IN ({marks})", seqs).fetchall()

    def clock(fn: Callable[[int], Any]) -> Timed:
        async def run(i: int) -> float:
            started = time.perf_counter()
            fn(i)
            return time.perf_counter() - started

        return run

    def awaiting(make: Callable[[int], Awaitable[Any]]) -> Timed:
        async def run(i: int) -> float:
            started = time.perf_counter()
            await make(i)
            return time.perf_counter() - started

        return run

    def raw_fetch(i: int) -> None:
        _, ids = target.search(qs[i : i + 1], 10, params=search_params)
        select(index._ext[ids[0]].tolist())  # faiss ids -> rowids, as the adapter maps them

    def memories_of(i: int) -> list[tuple[Memory, float]]:
        labels, scores = found[i]
        hits: list[tuple[Memory, float]] = _hits(rows_of(i), labels, scores, shipped)
        return hits

    def reading(field: str) -> Timed:
        """Every hit's `field` read, on fresh memories of query i (made before the timing)."""

        async def run(i: int) -> float:
            hits = memories_of(i)
            started = time.perf_counter()
            for memory, _ in hits:
                getattr(memory, field)
            return time.perf_counter() - started

        return run

    async def made(i: int) -> float:
        rows = rows_of(i)
        labels, scores = found[i]
        started = time.perf_counter()
        _hits(rows, labels, scores, shipped)
        return time.perf_counter() - started

    async def recorded(i: int) -> float:
        nonlocal recording
        recording = True
        started = time.perf_counter()
        await sqlite_db.search_memories(query_vectors[i], params=shipped)
        elapsed = time.perf_counter() - started
        recording = False
        return elapsed

    async def unpaced(i: int) -> float:
        """The awaited search without the loop's turns a search answered on the loop's thread
        makes once the loop has not turned for `YIELD_EVERY` (1 ms: every second or third
        search here; the raw rows never let the loop turn)."""
        sqlite_worker.YIELD_EVERY = float("inf")
        try:
            started = time.perf_counter()
            await sqlite_db.search_memories(query_vectors[i], params=shipped)
            return time.perf_counter() - started
        finally:
            sqlite_worker.YIELD_EVERY = paced

    paced = sqlite_worker.YIELD_EVERY
    everything = MemoryQuery()
    names = {
        "raw": "raw faiss hnsw on the loop thread (baseline)",
        "fetch": "raw faiss hnsw + one raw sqlite3 SELECT of the 10 rows (baseline)",
        "select": "  the raw SELECT alone (the same 10 rows)",
        "prep": "stage: the query normalised (query_vector)",
        "index": "stage: the adapter's index call (VectorIndex.search)",
        "rows": "stage: the rows statement (+ the table's version, writes' connection)",
        "made": "stage: the 10 rows made into Memory objects",
        "vector": "stage: then every hit's vector read (decoded)",
        "fields": "stage: then every hit's other fields read (decoded)",
        "shipped": "SqliteAdapter.search_memories (awaited, as shipped)",
        "bare": "  awaited, with_embeddings=False",
        "made-vector": "  awaited, the query Vector made inside the timing",
        "unpaced": "  awaited, the loop's turns off (what pacing costs)",
        "hop": "the thread hop: raw faiss on the SQLite worker thread",
        "worker": "  the adapter's worker path awaited (hop + 4 statements)",
        "inmemory": "InMemoryAdapter.search_memories (its own graph)",
        "inmemory-bare": "  in memory, with_embeddings=False",
    }
    methods: dict[str, Timed] = {
        "raw": clock(lambda i: target.search(qs[i : i + 1], 10, params=search_params)),
        "fetch": clock(raw_fetch),
        "select": clock(lambda i: select(found[i][0])),
        "prep": clock(lambda i: query_vector(as_vector(query_vectors[i]), DIM)),
        "index": clock(lambda i: index.search(normalised[i], 10)),
        "rows": clock(rows_of),
        "made": made,
        "vector": reading("embedding"),
        "fields": reading("content"),
        "shipped": recorded,
        "bare": awaiting(lambda i: sqlite_db.search_memories(query_vectors[i], params=bare)),
        "made-vector": awaiting(lambda i: sqlite_db.search_memories(Vector(qs[i]), params=shipped)),
        "unpaced": unpaced,
        "hop": awaiting(
            lambda i: loop.run_in_executor(
                worker, functools.partial(target.search, qs[i : i + 1], 10, params=search_params)
            )
        ),
        "worker": awaiting(
            lambda i: sqlite_db._run(
                sqlite_db._search, as_vector(query_vectors[i]), everything, shipped
            )
        ),
        "inmemory": awaiting(lambda i: mem_db.search_memories(query_vectors[i], params=shipped)),
        "inmemory-bare": awaiting(lambda i: mem_db.search_memories(query_vectors[i], params=bare)),
    }
    lat: dict[str, list[float]] = {name: [] for name in methods}
    index.search = timed_search  # type: ignore[method-assign]
    for start in range(0, queries, ROUND):
        for name in methods:
            cold(conn, writes, sqlite_db._reader)
            for i in range(start, min(start + ROUND, queries)):
                lat[name].append(await methods[name](i))
    index.search = searched  # type: ignore[method-assign]
    assert index.version == version  # nothing wrote meanwhile: every stage read one snapshot
    p50 = {name: percentile(values, 50) for name, values in lat.items()}
    base, fetch = p50["raw"], p50["fetch"]

    def row(label: str, mid: float, p99: str = "", note: str = "") -> list[str]:
        return [label, f"{mid * 1e3:.3f}", p99, f"{mid / base:.2f}", f"{mid / fetch:.2f}", note]

    summed = sum(p50[stage] for stage in ("prep", "index", "rows", "made"))
    out = []
    for name, values in lat.items():
        note = ""
        if name == "shipped":
            note = "<= 1.5x: " + ("met" if p50[name] / fetch <= 1.5 else "NOT met")
        elif name == "raw":
            note = f"ef_search {ef_note(index)}"
        elif name == "inmemory":
            note = f"ef_search {ef_note(adapter_index(mem_db, 'hnsw'))}"
        out.append(row(names[name], p50[name], f"{percentile(values, 99) * 1e3:.3f}", note))
        if name == "fields":
            out.append(row("  the stages summed (prep, index, rows, Memory objects)", summed))
        if name == "shipped":
            own = percentile(inside, 50)
            out.append(row("  the index call inside it", own))
            rest = p50["shipped"] - summed
            out.append(row("  the rest: awaited - the stages summed", rest))
    conn.close()
    await sqlite_db.close()
    await mem_db.close()
    return out


def _ef(params: IndexParams) -> dict[str, int]:
    return {"ef_search": params.hnsw_ef_search} if params.hnsw_ef_search else {}


def uniform(n: int, seed: int) -> np.ndarray:
    """Unit vectors of points drawn uniformly in the 384-d unit cube: no low-dimensional
    structure at all, the hard case for a graph index (what the clustered set is not)."""
    return normalize(np.random.default_rng(seed).random((n, DIM), dtype=np.float32))


def bench_recall(sizes: list[int], queries: int) -> list[list[str]]:
    """HNSW recall@10 with the default settings, on both data sets and at each size: the graph
    `VectorIndex` builds for the SQLite and in-memory stores (M, ef_construction and the
    `ef_search` it tunes on held-out rows), against exact search, on fresh queries."""
    out: list[list[str]] = []
    for n in sizes:
        for name, data in (("clustered", embeddings), ("uniform", uniform)):
            vectors = data(n, 1)
            qs = data(queries, 3)
            index = VectorIndex("hnsw", DIM)
            started = time.perf_counter()
            index.build(np.arange(n, dtype=np.int64), vectors.copy())
            build = time.perf_counter() - started
            hits = 0
            lat: list[float] = []
            for qi in range(queries):
                truth = np.argpartition(-(vectors @ qs[qi]), 10)[:10]
                t = time.perf_counter()
                labels, _ = index.search(qs[qi : qi + 1], 10)
                lat.append(time.perf_counter() - t)
                hits += len(set(labels) & set(truth.tolist()))
            recall = hits / (10 * queries)
            out.append(
                [
                    name,
                    f"{n:,}",
                    f"{index.params.hnsw_m} / {index.params.hnsw_ef_construction}",
                    "exact (cheaper)" if index.exact else str(index.tuned_ef),
                    f"{index.tuned_recall or 0:.3f}",
                    f"{recall:.3f}",
                    f"{percentile(lat, 50) * 1e3:.3f}",
                    f"{build:.1f}",
                    ">= 0.95: " + ("met" if recall >= 0.95 else "NOT met"),
                ]
            )
            console.print(" | ".join(out[-1]))
            del index, vectors
    return out


def show(title: str, columns: list[str], rows: list[list[str]]) -> None:
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


async def section(name: str, args: argparse.Namespace) -> tuple[str, list[str], list[list[str]]]:
    """Run one benchmark section; returns its table title, columns and rows."""
    params = IndexParams(hnsw_ef_search=args.ef_search, ivf_probes=args.probes)
    with tempfile.TemporaryDirectory(prefix="agenthost-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if name == "insert":
            rows, _ = await bench_insert(tmp, args.insert, args.per_row)
            title = f"batch insert: {args.insert:,} memories x {DIM}-d"
            return title, ["method", "rows/s", "x raw executemany", "target"], rows
        if name == "read":
            rows = await bench_read(tmp, args.read, args.page)
            title = f"reading {args.read:,} memories with {DIM}-d vectors, pages of {args.page:,}"
            columns = ["method", "rows/s", "x raw + frombuffer", "rows/CPU s", "x raw (CPU)"]
            return title, [*columns, "target"], rows
        if name == "stream":
            rows = await bench_stream(tmp, args.stream, args.page)
            title = f"streaming {args.stream:,} memories"
            return title, ["measure", "value", "note"], rows
        if name == "recall":
            rows = bench_recall(args.recall_sizes, args.queries)
            title = (
                f"HNSW recall@10 at the default settings, {args.queries} fresh queries per set"
                " (ef_search tuned per graph on held-out rows)"
            )
            columns = ["data", "rows", "M / ef_construction", "tuned ef_search"]
            columns += ["held-out recall", "recall@10", "p50 ms", "build s", "target"]
            return title, columns, rows
        if name == "breakdown":
            rows = await bench_breakdown(tmp / "search.sqlite3", args.search, args.queries, params)
            title = (
                f"HNSW search breakdown: {args.search:,} x {DIM}, {args.queries} queries, k=10,"
                f" ef_search={params.hnsw_ef_search or 'tuned'}, methods one after the other on"
                " one graph"
            )
            columns = ["method", "p50 ms", "p99 ms", "p50 x raw faiss", "x faiss + fetch"]
            return title, [*columns, "target (issue 20)"], rows
        rows = await bench_search(tmp / "search.sqlite3", args.search, args.queries, params)
        title = (
            f"vector search: {args.search:,} x {DIM}, {args.queries} queries, k=10"
            f" (ivf probes={params.ivf_probes or 'lists/8'}, hnsw M={params.hnsw_m}"
            f" ef_search={params.hnsw_ef_search})"
        )
        columns = ["method", "recall@10", "p50 ms", "p99 ms", "p50 x raw faiss", "x faiss+fetch"]
        return title, [*columns, "note"], rows


def run_section(name: str, args: argparse.Namespace) -> tuple[str, list[str], list[list[str]]]:
    return asyncio.run(section(name, args))


def run_all(args: argparse.Namespace) -> None:
    console.print(
        f"[bold]agenthost storage benchmark[/] python {platform.python_version()},"
        f" {platform.machine()}, {psutil.cpu_count()} CPUs, sqlite {sqlite3.sqlite_version},"
        f" faiss {faiss.__version__}, {'quick' if args.quick else 'full'} sizes"
    )
    # Each section runs in a fresh process, so its RSS figures start from a clean heap.
    context = multiprocessing.get_context("spawn")
    for name in ("insert", "stream", "read", "search", "breakdown", "recall"):
        if name in args.only:
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                show(*pool.submit(run_section, name, args).result())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument(
        "--only",
        nargs="+",
        default=["insert", "stream", "read", "search"],
        choices=["insert", "stream", "read", "search", "breakdown", "recall"],
        help="sections (default: all but breakdown, the HNSW cost split, and recall, HNSW"
        " recall on clustered and uniform data at --recall-sizes)",
    )
    parser.add_argument(
        "--recall-sizes", type=int, nargs="+", default=None, help="rows (default 10k and 100k)"
    )
    parser.add_argument("--queries", type=int, default=None, help="search queries (300)")
    parser.add_argument("--probes", type=int, default=None)
    parser.add_argument("--ef-search", type=int, default=None, help="default: tuned per graph")
    args = parser.parse_args()
    queries = args.queries
    args.insert, args.stream, args.search, args.queries = (
        (10_000, 100_000, 20_000, 300) if args.quick else (100_000, 1_000_000, 100_000, 300)
    )
    args.queries = queries or args.queries
    args.per_row = 1_000 if args.quick else 2_000
    args.read = 20_000 if args.quick else 100_000
    if args.recall_sizes is None:
        args.recall_sizes = [10_000] if args.quick else [10_000, 100_000]
    args.page = 1_000
    run_all(args)


if __name__ == "__main__":
    main()
