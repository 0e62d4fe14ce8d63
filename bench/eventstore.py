"""Event store benchmark: appends/s and aggregate reads vs raw drivers, in the same run.

Scenarios, each against a baseline measured in the same run on the same database:

- single appends: ``append_event`` one at a time (each its own transaction, with the version
  check) vs a raw INSERT loop, one transaction per row (stdlib ``sqlite3`` / raw ``psycopg``);
- batches of 100: ``append_events(agg, 100 events, expected_version)`` vs a raw ``executemany``
  of 100 rows per transaction;
- read one aggregate's 10k events: ``get_events`` (into `DomainEvent` models) vs a raw SELECT
  with ``json.loads`` of the data column;
- audit overhead: ``process_message`` with the audit plugin recording every event vs without
  (target: under 20%), as a paired A/B of two hosts side by side: wall-clock and CPU time
  (every thread of the process) per batch, the median of the per-round ratios.

PostgreSQL runs on a throwaway pgserver instance in a temp dir (skipped if pgserver is missing).

    .venv/bin/python bench/eventstore.py               # 5,000 appends, 200 batches; 60 x 40
    .venv/bin/python bench/eventstore.py --quick       # 1,000 / 50; 20 x 20 messages
    .venv/bin/python bench/eventstore.py --audit-only  # only the audit overhead
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console
from rich.table import Table

from contracts.eventstore import DomainEvent, EventStore
from host.eventstore import PostgresEventStore, SqliteEventStore

console = Console(width=140)
DATA = {"text": "I feel sad about my job", "room_id": str(uuid4()), "n": 1}
ROW_SQL = (
    "INSERT INTO raw_log (id, aggregate_id, version, event_type, schema_version, timestamp, data,"
    " metadata) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
RAW_TABLE = (
    "CREATE TABLE raw_log (position {pk}, id {blob} NOT NULL UNIQUE, aggregate_id TEXT NOT NULL,"
    " version INTEGER NOT NULL, event_type TEXT NOT NULL, schema_version INTEGER NOT NULL,"
    " timestamp {ts} NOT NULL, data {json} NOT NULL, metadata {json} NOT NULL,"
    " UNIQUE (aggregate_id, version))"
)


def event(aggregate: str) -> DomainEvent:
    return DomainEvent(aggregate_id=aggregate, event_type="message:received", data=DATA)


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


# -- SQLite --------------------------------------------------------------------------------------


def sqlite_raw(path: Path, n_single: int, n_batches: int, n_read: int) -> dict[str, float]:
    """Seconds for the raw sqlite3 baselines (same pragmas as the store: WAL, NORMAL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        RAW_TABLE.format(
            pk="INTEGER PRIMARY KEY AUTOINCREMENT", blob="BLOB", ts="INTEGER", json="TEXT"
        )
    )
    sql = ROW_SQL.format(p="?")

    def row(agg: str, version: int) -> tuple[Any, ...]:
        return (uuid4().bytes, agg, version, "message:received", 1, 0, json.dumps(DATA), "{}")

    out: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(n_single):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, row("single", i + 1))
        conn.execute("COMMIT")
    out["single"] = time.perf_counter() - start
    start = time.perf_counter()
    for b in range(n_batches):
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(sql, [row("batch", b * 100 + i + 1) for i in range(100)])
        conn.execute("COMMIT")
    out["batch"] = time.perf_counter() - start
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany(sql, [row("read", i + 1) for i in range(n_read)])
    conn.execute("COMMIT")
    start = time.perf_counter()
    rows = conn.execute(
        "SELECT position, id, aggregate_id, version, event_type, schema_version, timestamp, data,"
        " metadata FROM raw_log WHERE aggregate_id = ? AND version > 0 ORDER BY version",
        ("read",),
    ).fetchall()
    _ = [(r, json.loads(r[7]), json.loads(r[8])) for r in rows]
    out["read"] = time.perf_counter() - start
    conn.close()
    return out


async def store_run(
    store: EventStore, n_single: int, n_batches: int, n_read: int
) -> dict[str, float]:
    """Seconds for the same work through the `EventStore`."""

    async def singles() -> None:
        for _ in range(n_single):
            await store.append_event(event("single"))

    async def batches() -> None:
        for b in range(n_batches):
            await store.append_events("batch", [event("batch") for _ in range(100)], b * 100)

    out = {"single": await timed(singles), "batch": await timed(batches)}
    await store.append_events("read", [event("read") for _ in range(n_read)], 0)
    start = time.perf_counter()
    got = await store.get_events("read")
    out["read"] = time.perf_counter() - start
    assert len(got) == n_read
    return out


# -- PostgreSQL ----------------------------------------------------------------------------------


async def postgres_raw(url: str, n_single: int, n_batches: int, n_read: int) -> dict[str, float]:
    import psycopg
    from psycopg.types.json import Jsonb

    sql = ROW_SQL.format(p="%s")
    out: dict[str, float] = {}
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(
            RAW_TABLE.format(
                pk="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
                blob="UUID",
                ts="TIMESTAMPTZ",
                json="JSONB",
            )
        )
        now = DomainEvent(aggregate_id="x", event_type="x").timestamp

        def row(agg: str, version: int) -> tuple[Any, ...]:
            return (uuid4(), agg, version, "message:received", 1, now, Jsonb(DATA), Jsonb({}))

        start = time.perf_counter()
        for i in range(n_single):
            async with conn.transaction():
                await conn.execute(sql, row("single", i + 1))
        out["single"] = time.perf_counter() - start
        start = time.perf_counter()
        for b in range(n_batches):
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(sql, [row("batch", b * 100 + i + 1) for i in range(100)])
        out["batch"] = time.perf_counter() - start
        async with conn.transaction(), conn.cursor() as cur:
            await cur.executemany(sql, [row("read", i + 1) for i in range(n_read)])
        start = time.perf_counter()
        async with conn.cursor() as cur:
            await cur.execute(
                "SELECT position, id, aggregate_id, version, event_type, schema_version,"
                " timestamp, data, metadata FROM raw_log WHERE aggregate_id = %s AND version > 0"
                " ORDER BY version",
                ("read",),
            )
            await cur.fetchall()
        out["read"] = time.perf_counter() - start
    return out


def start_pgserver(directory: Path) -> tuple[Any, str] | None:
    try:
        import pgserver
    except ImportError:
        return None
    server = pgserver.get_server(directory / "pg", cleanup_mode="delete")
    return server, server.get_uri()


# -- report --------------------------------------------------------------------------------------


def add_rows(
    table: Table, engine: str, ours: dict[str, float], raw: dict[str, float], sizes: dict[str, int]
) -> None:
    for key, label, unit in (
        ("single", "single appends", "events/s"),
        ("batch", "batches of 100", "events/s"),
        ("read", f"read one aggregate ({sizes['read']:,} events)", "events/s"),
    ):
        n = sizes[key]
        table.add_row(
            engine,
            label,
            f"{n / ours[key]:,.0f} {unit}",
            f"{n / raw[key]:,.0f} {unit}",
            f"{raw[key] / ours[key]:.2f}x",
        )


async def store_tables(
    table: Table, directory: Path, no_postgres: bool, n_single: int, n_batches: int, n_read: int
) -> None:
    """The store-vs-raw-driver rows: SQLite, then PostgreSQL on a throwaway pgserver."""
    sizes = {"single": n_single, "batch": n_batches * 100, "read": n_read}
    raw = sqlite_raw(directory / "raw.sqlite3", n_single, n_batches, n_read)
    store = await SqliteEventStore.open(directory / "events.sqlite3")
    try:
        ours = await store_run(store, n_single, n_batches, n_read)
    finally:
        await store.close()
    add_rows(table, "sqlite", ours, raw, sizes)

    started = None if no_postgres else start_pgserver(directory)
    if started is not None:
        server, url = started
        try:
            raw = await postgres_raw(url, n_single, n_batches, n_read)
            pg = await PostgresEventStore.connect(url, max_size=4)
            try:
                ours = await store_run(pg, n_single, n_batches, n_read)
            finally:
                await pg.close()
            add_rows(table, "postgres", ours, raw, sizes)
        finally:
            server.cleanup()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs (about 10 s)")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    parser.add_argument(
        "--audit-only", action="store_true", help="only the audit overhead on process_message"
    )
    args = parser.parse_args()
    n_single, n_batches, n_read = (1_000, 50, 10_000) if args.quick else (5_000, 200, 10_000)

    table = Table(title="Event store vs raw driver (same run, same database engine)")
    for column in ("engine", "scenario", "EventStore", "raw driver", "store / raw speed"):
        table.add_column(column, justify="right" if column != "scenario" else "left")

    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        if not args.audit_only:
            await store_tables(table, directory, args.no_postgres, n_single, n_batches, n_read)
        audit = await audit_overhead(directory / "audit", *((20, 20) if args.quick else (60, 40)))

    if not args.audit_only:
        console.print(table)
    if audit is not None:
        console.print(audit)
    console.print(
        f"[dim]{platform.python_implementation()} {platform.python_version()},"
        f" SQLite {sqlite3.sqlite_version}, {platform.machine()}, {platform.system()}[/dim]"
    )


async def _host(directory: Path, audit: bool) -> Any:
    import os

    from host.app import Host
    from host.testing import offline_config

    os.environ["AGENTHOST_DATA_DIR"] = str(directory)
    plugins = ["audit"] if audit else []
    config = offline_config(
        directory, *plugins, http={"enabled": False}, logging={"level": "WARNING"}
    )
    host = Host(config)
    await host.start()
    return host


TEXTS = ["I feel sad about my job", "My mother never listens to me", "Can you help me"]


async def _batch(
    host: Any, rooms: list[Any], user: Any, messages: int, offset: int
) -> tuple[float, float]:
    """Wall-clock and CPU seconds (every thread of the process) for `messages` process_message
    calls over `rooms`, the audit trail flushed."""
    runtime = host.agents.get("Eliza")
    audit = host.loader.loaded.get("audit")
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(offset, offset + messages):
        message = runtime.new_message(
            TEXTS[i % len(TEXTS)], room_id=rooms[i % len(rooms)], entity_id=user
        )
        await runtime.process_message(message)
    if audit is not None:
        await audit.instance.flush()
    return time.perf_counter() - start, time.process_time() - cpu


async def audit_overhead(directory: Path, rounds: int, batch: int) -> Table | None:
    """process_message with and without the audit plugin: a paired A/B.

    Two hosts side by side (ELIZA + SQLite memory store; one also loads ``audit``), batches of
    `batch` messages alternating between them (ABBA order), the audit trail flushed inside each
    audited batch so its writes are timed. The median of the per-round ratios resists this
    shared machine's noise (a slow spell hits both halves of a round alike); the CPU-time
    ratio (user + system time of every thread of the process) resists it better still, since
    time spent waiting for a core other jobs hold is not counted."""
    from loguru import logger

    from contracts.eventstore import EVENT_STORE

    logger.remove()
    logger.add(lambda _: None, level="ERROR")
    hosts = {audit: await _host(directory / f"host-{audit}", audit) for audit in (False, True)}
    rooms, user = [uuid4() for _ in range(10)], uuid4()
    times: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    ratios: list[float] = []
    cpu_ratios: list[float] = []
    try:
        for audit in (False, True):
            await _batch(hosts[audit], rooms, user, 50, 0)  # warm-up
        for index in range(rounds):
            for audit in (False, True) if index % 2 == 0 else (True, False):
                wall, cpu = await _batch(hosts[audit], rooms, user, batch, index * batch)
                times[audit].append(wall)
                cpus[audit].append(cpu)
            ratios.append(times[True][-1] / times[False][-1] - 1)
            cpu_ratios.append(cpus[True][-1] / max(cpus[False][-1], 1e-9) - 1)
        store = await hosts[True].container.aresolve(EVENT_STORE)
        recorded = await store.last_position()
    finally:
        for host in hosts.values():
            await host.stop()
    messages = 50 + rounds * batch
    median, cpu_median = statistics.median(ratios), statistics.median(cpu_ratios)
    table = Table(
        title=f"Audit plugin overhead on process_message (paired A/B: {rounds} rounds of"
        f" {batch} messages each, ELIZA + SQLite, 10 rooms)"
    )
    for column in (
        "configuration",
        "messages/s",
        "ms/message",
        "CPU ms/message",
        "wall vs no audit",
        "CPU vs no audit",
    ):
        table.add_column(column, justify="right" if column != "configuration" else "left")
    for audit, label in (
        (False, "no audit (baseline)"),
        (True, f"audit ({recorded / messages:.1f} events/message)"),
    ):
        seconds = statistics.median(times[audit]) / batch
        cpu = statistics.median(cpus[audit]) / batch
        table.add_row(
            label,
            f"{1 / seconds:,.0f}",
            f"{seconds * 1000:.3f}",
            f"{cpu * 1000:.3f}",
            _spread(median, ratios) if audit else "1.00x",
            _spread(cpu_median, cpu_ratios) if audit else "1.00x",
        )
    verdict = "met" if max(median, cpu_median) < 0.20 else "NOT met"
    table.caption = (
        "medians of the per-round ratios (rounds' range in brackets); target under +20%"
        f" (wall and CPU): {verdict}"
    )
    return table


def _spread(median: float, ratios: list[float]) -> str:
    return f"{median:+.1%} [{min(ratios):+.0%}..{max(ratios):+.0%}]"


if __name__ == "__main__":
    asyncio.run(main())
