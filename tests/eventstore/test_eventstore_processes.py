"""Optimistic concurrency across processes: two OS processes append to one aggregate of one
database (a SQLite file; PostgreSQL when available) and no version is lost or duplicated."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.eventstore import EventStore
from host.eventstore import PostgresEventStore, SqliteEventStore
from host.pytest_plugin import fresh_schema

from .conftest import postgres_conninfo

ROOT = Path(__file__).resolve().parents[2]
PER_PROCESS = 150
APPENDER = "tests.eventstore.appender"


def _run_two(engine: str, target: str) -> list[int]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.eventstore.appender",
                engine,
                target,
                w,
                str(PER_PROCESS),
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in ("p1", "p2")
    ]
    conflicts = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        conflicts.append(int(out.strip()))
    return conflicts


async def _check(store: EventStore) -> None:
    events = await store.get_events("shared")
    assert [e.version for e in events] == list(range(1, 2 * PER_PROCESS + 1))
    seen = sorted((str(e.data["w"]), int(e.data["i"])) for e in events)  # type: ignore[call-overload]
    assert seen == sorted((w, i) for w in ("p1", "p2") for i in range(PER_PROCESS))
    positions = [e.position for e in await store.read_all(limit=10_000)]
    assert positions == list(range(1, 2 * PER_PROCESS + 1))


async def test_two_processes_on_one_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.sqlite3"
    store = await SqliteEventStore.open(path)  # creates the schema before the race
    try:
        conflicts = await asyncio.to_thread(_run_two, "sqlite", str(path))
        print("conflicts retried per process:", conflicts)
        await _check(store)
    finally:
        await store.close()


@pytest.mark.postgres
async def test_two_processes_on_one_postgres(pg_server_uri: str) -> None:
    async with fresh_schema(pg_server_uri, "ev_proc") as schema:
        conninfo = postgres_conninfo(pg_server_uri, schema)
        store = await PostgresEventStore.connect(conninfo, max_size=2)
        try:
            await asyncio.to_thread(_run_two, "postgres", conninfo)
            await _check(store)
        finally:
            await store.close()
