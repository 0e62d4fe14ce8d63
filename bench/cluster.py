"""Cluster mode benchmark: messages/s and latency with 1, 2 and 4 workers, against a
single-process host on the same PostgreSQL, plus the fault run's figures.

Every run starts real processes on loopback (an API process and N workers, or one
single-process host) over a pgserver PostgreSQL (a fresh schema per run) and a nats-server, and
drives them over HTTP: each room is a client sending its messages one after the other (the next
once the last is answered), many rooms at once. Two loads: many rooms (R rooms x 10 messages)
and hot rooms (10 rooms x M messages: one message at a time per room, so extra workers cannot
help). Two models: ELIZA (CPU-bound: on this 2-core machine every process competes for the same
cores, so scaling is bounded) and the test probe waiting 50 ms (latency-bound). Ratios are to
the single-process host measured in the same run, and from 1 to N workers.

    .venv/bin/python bench/cluster.py            # 1,000 rooms x 10, 10 hot rooms x 500
    .venv/bin/python bench/cluster.py --quick    # 200 rooms x 5, 10 hot rooms x 50
    .venv/bin/python bench/cluster.py --quick --only faults
    .venv/bin/python bench/cluster.py --quick --only throughput --model wait
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.cluster.harness

from host.cluster.local import free_port, start_nats, start_postgres, stop_process
from tests.cluster.harness import LocalCluster, Report, drive, fault_run

console = Console(width=150)

CONCURRENCY = {"eliza": 4, "probe": 1}
"""Rooms one worker processes at once in this bench (cluster.concurrency), per model: with the
50 ms model one room at a time, so that the workers and not this shared 2-core machine are the
bottleneck of the latency-bound load (16 would saturate the CPU with one worker already)."""


async def one_run(
    url: str,
    nats: str,
    tmp: Path,
    *,
    workers: int,
    model: str,
    rooms: int,
    per_room: int,
    clients: int,
) -> Report:
    """One measurement on a fresh schema; `workers` 0 is the single-process host."""
    import psycopg

    from host.pytest_plugin import schema_uri

    schema = f"bench_{uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    cluster = LocalCluster(schema_uri(url, schema), nats, run_dir)
    cluster.settings.update(lease=10, poll_interval=0.5, concurrency=CONCURRENCY[model])
    if model == "eliza":
        cluster.plugins = ["eliza", "postgres"]
    else:
        cluster.env["CLUSTER_PROBE_DELAY"] = "0.05"
    try:
        if workers == 0:
            cluster.spawn_single("single")
        else:
            names = [f"w{i}" for i in range(workers)]
            for name in names:
                cluster.spawn(name, "worker")
            cluster.spawn("api", "api")
            deadline = time.monotonic() + 120
            while not all("started" in cluster.log(n) for n in names):
                if time.monotonic() > deadline:
                    raise RuntimeError("workers did not start")
                await asyncio.sleep(0.2)
        names_ = [str(uuid4()) for _ in range(rooms)]
        # warm-up: one message per process path (imports, first connections)
        await drive(cluster.api_url, [str(uuid4()) for _ in range(4)], 2, concurrency=4)
        started = time.perf_counter()
        latencies, _ = await drive(cluster.api_url, names_, per_room, concurrency=clients)
        return Report(rooms * per_room, time.perf_counter() - started, latencies)
    finally:
        await asyncio.to_thread(cluster.stop_all)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")


async def throughput(args: argparse.Namespace, tmp: Path) -> None:
    server = start_postgres(tmp / "postgres")
    port = free_port()
    nats = start_nats(port)
    loads = {
        "many rooms": (args.rooms, args.per_room, 64),
        "hot rooms": (10, args.hot, 10),
    }
    try:
        for model in args.models:
            for load, (rooms, per_room, clients) in loads.items():
                kind = "eliza" if model == "eliza" else "probe"
                table = Table(
                    title=f"{model}, {load}: {rooms} rooms x {per_room} messages,"
                    f" {clients} rooms at once (worker concurrency {CONCURRENCY[kind]})"
                )
                for column in ("setup", "msg/s", "vs single", "vs 1 worker", "p50 ms", "p99 ms"):
                    table.add_column(column, justify="right" if column != "setup" else "left")
                single: Report | None = None
                one: Report | None = None
                for workers in (0, 1, 2, 4):
                    report = await one_run(
                        str(server.get_uri()),
                        f"nats://127.0.0.1:{port}",
                        tmp,
                        workers=workers,
                        model=kind,
                        rooms=rooms,
                        per_room=per_room,
                        clients=clients,
                    )
                    if workers == 0:
                        single = report
                    if workers == 1:
                        one = report
                    assert single is not None
                    table.add_row(
                        "single process" if workers == 0 else f"cluster, {workers} worker(s)",
                        f"{report.rate:,.0f}",
                        f"{report.rate / single.rate:.2f}x",
                        f"{report.rate / one.rate:.2f}x" if one is not None and workers else "",
                        f"{report.percentile(0.5) * 1000:,.0f}",
                        f"{report.percentile(0.99) * 1000:,.0f}",
                    )
                console.print(table)
    finally:
        stop_process(nats)
        server.cleanup()


async def faults(args: argparse.Namespace, tmp: Path) -> None:
    (tmp / "faults").mkdir()
    report, _chaos = await fault_run(tmp / "faults", rooms=args.fault_rooms, per_room=15)
    table = Table(title="fault run: kill -9, SIGSTOP past the lease, NATS and PostgreSQL restarts")
    for column in ("figure", "value"):
        table.add_column(column)
    takeovers = sorted(report.takeovers)
    rows = {
        "messages": report.messages,
        "faults": ", ".join(f"{k} {v}" for k, v in sorted(report.chaos.items())),
        "lost": report.lost,
        "duplicated": report.duplicated,
        "out of order (rooms)": report.out_of_order,
        "parked": report.parked,
        "redeliveries": report.redeliveries,
        "requests retried by clients": report.retried_requests,
        "takeover s p50 / max": (
            f"{takeovers[len(takeovers) // 2]:.2f} / {takeovers[-1]:.2f} ({len(takeovers)} kills"
            " holding rooms)"
            if takeovers
            else "no kill held a room"
        ),
        "msg/s under faults": f"{report.rate:.0f}",
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    console.print(table)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=("throughput", "faults"))
    parser.add_argument(
        "--model", choices=("eliza", "wait"), help="only this model (default: both)"
    )
    args = parser.parse_args()
    args.rooms, args.per_room, args.hot = (200, 5, 50) if args.quick else (1000, 10, 500)
    args.fault_rooms = 12 if args.quick else 40
    args.models = {"eliza": ["eliza"], "wait": ["wait 50 ms"]}.get(
        args.model, ["eliza", "wait 50 ms"]
    )
    tmp = Path(tempfile.mkdtemp(prefix="agenthost-bench-cluster-"))
    try:
        if args.only in (None, "throughput"):
            await throughput(args, tmp)
        if args.only in (None, "faults"):
            await faults(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
