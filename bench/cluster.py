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
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
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


TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, *, children: bool = False) -> float:
    """User + system CPU of process `pid` (and of its children it waited for)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def postgres_cpu(server: Any) -> float:
    """CPU of the PostgreSQL server: the postmaster, the backends it reaped, the live ones."""
    postmaster = int(server.get_pid())
    total = cpu_seconds(postmaster, children=True)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == postmaster:
                total += cpu_seconds(int(entry.name))
    return total


def cpu_snapshot(cluster: LocalCluster, server: Any) -> dict[str, float]:
    groups = {"api": 0.0, "workers": 0.0, "postgres": postgres_cpu(server)}
    groups["bench client"] = time.process_time()
    for name, process in cluster.members.items():
        group = "workers" if name.startswith("w") else "api"  # "single" counts as api
        groups[group] += cpu_seconds(process.pid)
    return groups


def worker_phases(cluster: LocalCluster) -> tuple[dict[str, float], int]:
    """The workers' phase seconds, from the line each logs when it stops."""
    seconds: dict[str, float] = {}
    processed = 0
    for name in cluster.members:
        for line in cluster.log(name).splitlines():
            if "worker phases: " in line:
                item = json.loads(line.split("worker phases: ", 1)[1])
                processed += int(item["processed"])
                for phase, value in item["seconds"].items():
                    seconds[phase] = seconds.get(phase, 0.0) + float(value)
    return seconds, processed


async def one_run(
    server: Any,
    url: str,
    nats: str,
    tmp: Path,
    *,
    workers: int,
    model: str,
    rooms: int,
    per_room: int,
    clients: int,
    concurrency: int | None = None,
) -> Report:
    """One measurement on a fresh schema; `workers` 0 is the single-process host."""
    import psycopg

    from host.pytest_plugin import schema_uri

    schema = f"bench_{uuid4().hex[:8]}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    run_dir = Path(tempfile.mkdtemp(dir=tmp))
    cluster = LocalCluster(schema_uri(url, schema), nats, run_dir)
    cluster.settings.update(
        lease=10, poll_interval=0.5, concurrency=concurrency or CONCURRENCY[model]
    )
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
        before = cpu_snapshot(cluster, server)
        started = time.perf_counter()
        latencies, _ = await drive(cluster.api_url, names_, per_room, concurrency=clients)
        report = Report(rooms * per_room, time.perf_counter() - started, latencies)
        after = cpu_snapshot(cluster, server)
        report.cpu = {k: after[k] - before[k] for k in before}
        report.load = os.getloadavg()[0]  # the machine's, other jobs included
        await asyncio.to_thread(cluster.stop_all)
        report.phases, report.processed = worker_phases(cluster)
        return report
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
                if load not in args.loads:
                    continue
                kind = "eliza" if model == "eliza" else "probe"
                table = Table(
                    title=f"{model}, {load}: {rooms} rooms x {per_room} messages,"
                    f" {clients} rooms at once (worker concurrency {CONCURRENCY[kind]})"
                )
                columns = ("setup", "msg/s", "vs single", "vs 1 worker", "p50 ms", "p99 ms")
                columns += ("CPU ms/msg", "CPU vs single", "CPU busy", "load avg")
                for column in columns:
                    table.add_column(column, justify="right" if column != "setup" else "left")
                breakdown = Table(title=f"where the time goes: {model}, {load}")
                for column in ("setup", *PHASES, "idle share", *CPU_GROUPS):
                    breakdown.add_column(
                        column if column in ("setup", "idle share") else f"{column} ms",
                        justify="right" if column != "setup" else "left",
                    )
                single: Report | None = None
                one: Report | None = None
                for workers in args.workers:
                    report = await one_run(
                        server,
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
                    setup = "single process" if workers == 0 else f"cluster, {workers} worker(s)"
                    table.add_row(setup, *figures(report, single, one))
                    breakdown.add_row(setup, *phase_row(report))
                console.print(table)
                console.print(breakdown)
    finally:
        stop_process(nats)
        server.cleanup()


CPU_GROUPS = ("api", "workers", "postgres", "bench client")
PHASES = ("claim", "take", "run", "commit", "notify")


def host_cpu(report: Report) -> float:
    """CPU seconds of the host's processes and PostgreSQL (not the bench's client)."""
    return sum(v for k, v in report.cpu.items() if k != "bench client")


def figures(report: Report, single: Report | None, one: Report | None) -> list[str]:
    cpu = host_cpu(report) / report.messages
    return [
        f"{report.rate:,.0f}",
        f"{report.rate / single.rate:.2f}x" if single is not None else "",
        f"{report.rate / one.rate:.2f}x" if one is not None and one is not report else "",
        f"{report.percentile(0.5) * 1000:,.0f}",
        f"{report.percentile(0.99) * 1000:,.0f}",
        f"{cpu * 1000:.1f}",
        f"{cpu / (host_cpu(single) / single.messages):.2f}x" if single is not None else "",
        f"{sum(report.cpu.values()) / (report.seconds * CORES):.0%}",
        f"{report.load:.1f}",
    ]


CORES = os.cpu_count() or 1


def phase_row(report: Report) -> list[str]:
    """Per message: each worker phase (wall time, summed over the rooms a worker serves at
    once), the share of worker time spent idle, CPU of each process group."""
    row = []
    n = max(report.processed, 1)
    for phase in PHASES:
        row.append(f"{report.phases[phase] / n * 1000:.1f}" if report.phases else "")
    total = sum(report.phases.values())
    row.append(f"{report.phases.get('idle', 0) / total:.0%}" if total else "")
    for group in CPU_GROUPS:
        row.append(f"{report.cpu.get(group, 0) / report.messages * 1000:.1f}")
    return row


async def faults(args: argparse.Namespace, tmp: Path) -> None:
    (tmp / "faults").mkdir()
    report, chaos = await fault_run(tmp / "faults", rooms=args.fault_rooms, per_room=15)
    table = Table(title="fault run: kill -9, SIGSTOP past the lease, NATS and PostgreSQL restarts")
    for column in ("figure", "value"):
        table.add_column(column)
    takeovers = sorted(report.takeovers)
    claims = sorted(chaos.claims)
    rows = {
        "messages": report.messages,
        "faults": ", ".join(f"{k} {v}" for k, v in sorted(report.chaos.items())),
        "workers started (3, then replacements)": chaos.started,
        "a whole cycle of faults": (
            f"yes, in {chaos.cycle_seconds:.0f} s" if chaos.complete else "NO (time bound hit)"
        ),
        "lost": report.lost,
        "duplicated": report.duplicated,
        "out of order (rooms)": report.out_of_order,
        "parked": report.parked,
        "redeliveries": report.redeliveries,
        "requests retried by clients": report.retried_requests,
        "takeover s p50 / max (kill -9 to the room's next commit elsewhere)": (
            f"{takeovers[len(takeovers) // 2]:.2f} / {takeovers[-1]:.2f} ({len(takeovers)} rooms,"
            f" {chaos.done['kill mid-message']} kills mid-message)"
            if takeovers
            else "no kill hit a worker mid-message"
        ),
        "claimed by another worker s p50 / max (kill -9 to the claim)": (
            f"{claims[len(claims) // 2]:.2f} / {claims[-1]:.2f} ({len(claims)} rooms)"
            if claims
            else "not seen"
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
    parser.add_argument(
        "--workers", default="0,1,2,4", help="worker counts to run, 0 = single process"
    )
    parser.add_argument("--loads", default="many,hot", help="many, hot or both")
    parser.add_argument("--rooms", type=int, help="many rooms: rooms (default 1,000; quick 200)")
    parser.add_argument("--per-room", type=int, help="many rooms: messages each (10; quick 5)")
    parser.add_argument("--hot", type=int, help="hot rooms: messages each (500; quick 50)")
    args = parser.parse_args()
    rooms, per_room, hot = (200, 5, 50) if args.quick else (1000, 10, 500)
    args.rooms = args.rooms or rooms
    args.per_room = args.per_room or per_room
    args.hot = args.hot or hot
    args.workers = [int(w) for w in args.workers.split(",")]
    args.loads = [f"{name} rooms" for name in args.loads.split(",")]
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
