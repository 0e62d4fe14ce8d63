"""The queue evaluation of docs/cluster.md: the cost of each candidate queue alone (no agent
pipeline), with per-room order, on this machine's pgserver PostgreSQL and nats-server.

- ``skip locked``: agenthost's room queue (`host.cluster.queue.RoomQueue`): claim a room with
  ``FOR UPDATE SKIP LOCKED`` and a lease, take its messages in order, commit each under the
  fencing token, release;
- ``procrastinate``: one job per message with ``lock=<room>`` (its jobs of one lock run one at a
  time, in id order), a worker of `W` concurrent jobs (needs ``pip install procrastinate``; skipped
  otherwise);
- ``pgmq``: pgmq 1.5.1 installed from its SQL (bench/data/pgmq.sql), a queue per room (it has no
  per-group order), each worker serving a fixed share of the rooms;
- ``jetstream``: one stream, a subject per room and one durable pull consumer per room with
  ``max_ack_pending=1`` (JetStream's way to keep one subject's order with several consumers
  processes), `W` tasks serving the rooms.

Each processes the same messages with `W` concurrent workers; ingress is timed apart.

    .venv/bin/python bench/cluster_queue.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console
from rich.table import Table

from builtin_plugins.postgres import PostgresAdapter
from contracts.memory import Content, Memory, utc_now
from host.cluster.local import free_port, start_nats, start_postgres, stop_process
from host.cluster.queue import RoomQueue
from host.cluster.unit import Unit
from host.pytest_plugin import schema_uri

console = Console(width=150)


async def fresh(url: str) -> str:
    import psycopg

    schema = f"q_{uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    return schema_uri(url, schema)


async def skip_locked(url: str, rooms: int, per_room: int, workers: int) -> tuple[float, float]:
    store = await PostgresAdapter.open(await fresh(url), max_size=workers + 4)
    agent = uuid4()
    try:
        api = RoomQueue(store, "api", lease=10)
        await api.migrate()
        ids = [uuid4() for _ in range(rooms)]
        started = time.perf_counter()
        gate = asyncio.Semaphore(16)

        async def put(room: Any, index: int) -> None:
            async with gate:
                memory = Memory(
                    agent_id=agent,
                    entity_id=agent,
                    room_id=room,
                    content=Content(text=str(index)),
                    created_at=utc_now(),
                )
                await api.enqueue(
                    memory, idem_key=None, origin=None, stream=False, limit=10**6, retry_after=1
                )

        for index in range(per_room):
            await asyncio.gather(*(put(room, index) for room in ids))
        ingress = time.perf_counter() - started
        total = rooms * per_room
        done = 0
        started = time.perf_counter()

        async def work(name: str) -> None:
            nonlocal done
            queue = RoomQueue(store, name, lease=10)
            while done < total:
                claim = await queue.claim([agent])
                if claim is None:
                    await asyncio.sleep(0.005)
                    continue
                taken = claim.first  # taken with the claim
                released = False
                while taken is not None:  # one transaction per message: commit takes the next
                    committed = await queue.commit(claim, taken, Unit(taken.id), "{}")
                    taken, released = committed.following, committed.released
                    done += 1
                if not released:
                    await queue.release(claim)

        await asyncio.gather(*(work(f"w{i}") for i in range(workers)))
        return total / ingress, total / (time.perf_counter() - started)
    finally:
        await store.close()


async def with_procrastinate(
    url: str, rooms: int, per_room: int, workers: int
) -> tuple[float, float] | None:
    try:
        import procrastinate
    except ImportError:
        return None
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=await fresh(url)))
    total = rooms * per_room
    done = 0
    finished = asyncio.Event()

    @app.task(name="message")
    async def message(room: str, index: int) -> None:
        nonlocal done
        done += 1
        if done == total:
            finished.set()

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        names = [str(uuid4()) for _ in range(rooms)]
        started = time.perf_counter()
        gate = asyncio.Semaphore(16)

        async def put(room: str, index: int) -> None:
            async with gate:
                await message.configure(lock=room).defer_async(room=room, index=index)

        for index in range(per_room):
            await asyncio.gather(*(put(room, index) for room in names))
        ingress = time.perf_counter() - started
        started = time.perf_counter()
        worker = asyncio.create_task(
            app.run_worker_async(
                concurrency=workers, wait=True, install_signal_handlers=False, delete_jobs="never"
            )
        )
        await finished.wait()
        elapsed = time.perf_counter() - started
        worker.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await worker
    return total / ingress, total / elapsed


PGMQ_SQL = Path(__file__).parent / "data" / "pgmq.sql"


async def with_pgmq(url: str, rooms: int, per_room: int, workers: int) -> tuple[float, float]:
    """pgmq 1.5.1 (installed from its SQL, bench/data/pgmq.sql): it has no per-group order, so
    a room's order needs a queue of its own (two tables per room: the queue and its archive)
    read by one worker at a time; here each worker serves a fixed share of the rooms (no lease,
    no takeover: the fairest case for pgmq), each message read with a visibility timeout and
    deleted in one transaction (the commit). Queue creation is timed with ingress."""
    from psycopg_pool import AsyncConnectionPool

    pool = AsyncConnectionPool(url, min_size=1, max_size=workers + 4, open=False)
    await pool.open(wait=True)
    try:
        async with pool.connection() as conn:
            cursor = await conn.execute("SELECT to_regclass('pgmq.meta') IS NOT NULL")
            row = await cursor.fetchone()
            if not (row and row[0]):
                await conn.execute(PGMQ_SQL.read_text())
        names = [f"r{uuid4().hex[:16]}" for _ in range(rooms)]
        started = time.perf_counter()
        gate = asyncio.Semaphore(16)

        async def create(name: str) -> None:
            async with gate, pool.connection() as conn:
                await conn.execute("SELECT pgmq.create(%s)", (name,))

        await asyncio.gather(*(create(name) for name in names))

        async def put(name: str, index: int) -> None:
            async with gate, pool.connection() as conn:
                await conn.execute("SELECT pgmq.send(%s, %s::jsonb)", (name, f'{{"i": {index}}}'))

        for index in range(per_room):
            await asyncio.gather(*(put(name, index) for name in names))
        ingress = time.perf_counter() - started
        total = rooms * per_room
        started = time.perf_counter()

        async def work(share: list[str]) -> None:
            left = {name: per_room for name in share}
            while left:
                for name in list(left):
                    async with pool.connection() as conn, conn.transaction():
                        cursor = await conn.execute(
                            "SELECT msg_id, message FROM pgmq.read(%s, 30, 1)", (name,)
                        )
                        row = await cursor.fetchone()
                        if row is None:
                            continue
                        assert row[1]["i"] == per_room - left[name]  # the room's order
                        await conn.execute("SELECT pgmq.delete(%s, %s::bigint)", (name, row[0]))
                    left[name] -= 1
                    if not left[name]:
                        del left[name]

        await asyncio.gather(*(work(names[i::workers]) for i in range(workers)))
        elapsed = time.perf_counter() - started
        return total / ingress, total / elapsed
    finally:
        await pool.close()


async def jetstream(nats_url: str, rooms: int, per_room: int, workers: int) -> tuple[float, float]:
    import nats
    from nats.js.api import AckPolicy, ConsumerConfig

    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    stream = f"B{uuid4().hex[:8]}"
    await js.add_stream(name=stream, subjects=[f"{stream}.>"])
    names = [uuid4().hex for _ in range(rooms)]
    total = rooms * per_room
    started = time.perf_counter()
    gate = asyncio.Semaphore(16)

    async def put(room: str, index: int) -> None:
        async with gate:
            await js.publish(f"{stream}.{room}", str(index).encode())

    for index in range(per_room):
        await asyncio.gather(*(put(room, index) for room in names))
    ingress = time.perf_counter() - started
    started = time.perf_counter()
    pending = list(names)

    async def work() -> None:
        while pending:
            room = pending.pop()
            sub = await js.pull_subscribe(
                f"{stream}.{room}",
                durable=f"c{room}",
                config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=1),
            )
            got = 0
            while got < per_room:
                for msg in await sub.fetch(1, timeout=5):
                    await msg.ack()
                    got += 1
            await sub.unsubscribe()

    await asyncio.gather(*(work() for _ in range(workers)))
    elapsed = time.perf_counter() - started
    await js.delete_stream(stream)
    await nc.close()
    return total / ingress, total / elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    loads = {"many rooms": (200, 5), "hot rooms": (10, 100)}
    if not args.quick:
        loads = {"many rooms": (1000, 10), "hot rooms": (10, 500)}
    workers = 4
    tmp = Path(tempfile.mkdtemp(prefix="agenthost-bench-queue-"))
    server = start_postgres(tmp / "postgres")
    port = free_port()
    nats_server = start_nats(port, jetstream=tmp / "jetstream")
    url = str(server.get_uri())
    try:
        for load, (rooms, per_room) in loads.items():
            table = Table(
                title=f"{load}: {rooms} rooms x {per_room} messages, {workers} concurrent workers"
            )
            for column in ("queue", "ingress msg/s", "processed msg/s", "vs skip locked"):
                table.add_column(column, justify="left" if column == "queue" else "right")
            base = await skip_locked(url, rooms, per_room, workers)
            table.add_row("skip locked (agenthost)", f"{base[0]:,.0f}", f"{base[1]:,.0f}", "1.00x")
            proc = await with_procrastinate(url, rooms, per_room, workers)
            if proc is None:
                table.add_row("procrastinate", "not installed", "", "")
            else:
                table.add_row(
                    "procrastinate (lock per room)",
                    f"{proc[0]:,.0f}",
                    f"{proc[1]:,.0f}",
                    f"{proc[1] / base[1]:.2f}x",
                )
            mq = await with_pgmq(url, rooms, per_room, workers)
            table.add_row(
                "pgmq (a queue per room, rooms shared out)",
                f"{mq[0]:,.0f}",
                f"{mq[1]:,.0f}",
                f"{mq[1] / base[1]:.2f}x",
            )
            jet = await jetstream(f"nats://127.0.0.1:{port}", rooms, per_room, workers)
            table.add_row(
                "jetstream (consumer per room)",
                f"{jet[0]:,.0f}",
                f"{jet[1]:,.0f}",
                f"{jet[1] / base[1]:.2f}x",
            )
            console.print(table)
    finally:
        stop_process(nats_server)
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
