"""100 rooms at once against one room (issue 20, target 1): per round, what varies and why.

Two hosts of the default configuration (`bench/pipeline.py`'s `start_host`), one serving one
room, one serving `--rooms` rooms at once, take turns in rounds of `--chunk` messages. Each
round prints its wall and CPU time a message, the CPU of each thread, the collector's runs
(count and time, by generation), the loop's longest stall and the number of the memory store's
commits, so that a spread between rounds can be put down to what changed in it.

    .venv/bin/python bench/concurrency.py --rounds 12 --chunk 200
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from pipeline import many_rooms, one_room, start_host, thread_cpu, warm_up
from rich.console import Console
from rich.table import Table

console = Console(width=160)


class GcClock:
    """The collector's runs and their time, by generation, from `gc.callbacks`."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = 0.0
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        spent = time.perf_counter() - self._started
        generation = int(info["generation"])
        self.runs[generation] += 1
        self.seconds[generation] += spent
        self.longest = max(self.longest, spent)

    def snapshot(self) -> tuple[list[int], list[float], float]:
        taken = (list(self.runs), list(self.seconds), self.longest)
        self.longest = 0.0
        return taken


class Stalls:
    """The loop's longest gap between two ticks of a 1 ms timer (its longest stall)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def take(self) -> float:
        longest, self.longest = self.longest, 0.0
        return longest


def store_of(host: Any) -> Any:
    store = host.agents.get("Eliza").database
    while hasattr(store, "inner"):
        store = store.inner
    return store


WORKER_CALLS: dict[str, int] = {}


def trace_worker(store: Any) -> None:
    """Count the calls `store` sends to its worker thread, by function."""
    run = store._run

    async def counted(fn: Any, *args: Any) -> Any:
        name = getattr(fn, "__name__", str(fn))
        WORKER_CALLS[name] = WORKER_CALLS.get(name, 0) + 1
        return await run(fn, *args)

    store._run = counted
    enqueue = store._enqueue

    def queued(jobs: Any) -> None:
        WORKER_CALLS["(writes queued)"] = WORKER_CALLS.get("(writes queued)", 0) + len(jobs)
        enqueue(jobs)

    store._enqueue = queued


def commits_of(host: Any) -> list[int]:
    """A counter of COMMITs on the host's SQLite memory store (its connection's trace)."""
    store = host.agents.get("Eliza").database
    while hasattr(store, "inner"):
        store = store.inner
    conn = getattr(store, "_conn", None)
    counter = [0]
    if conn is not None:

        def count(sql: str) -> None:
            if sql == "COMMIT":
                counter[0] += 1

        conn.set_trace_callback(count)
    return counter


async def run(args: argparse.Namespace) -> None:
    clock = GcClock()
    stalls = Stalls()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        one = await start_host(directory / "one", args.embeddings)
        many = await start_host(directory / "many", args.embeddings)
        try:
            await warm_up(one)
            await warm_up(many)
            commits = {"one": commits_of(one), "many": commits_of(many)}
            trace_worker(store_of(many))
            if args.gc0:
                gc.set_threshold(args.gc0, args.gc1, args.gc2)
            if args.switch:
                sys.setswitchinterval(args.switch)
            stalls.start()
            room, rooms = uuid4(), [uuid4() for _ in range(args.rooms)]
            for index in range(args.rounds):
                order = ("one", "many") if index % 2 == 0 else ("many", "one")
                for name in order:
                    latencies: list[float] = []
                    work = (
                        one_room(one, args.chunk, room, latencies)
                        if name == "one"
                        else many_rooms(many, args.chunk, rooms, latencies)
                    )
                    clock.snapshot()
                    stalls.take()
                    before_commits = commits[name][0]
                    WORKER_CALLS.clear()
                    threads_before = thread_cpu()
                    gc_before = clock.snapshot()
                    started, used = time.perf_counter(), time.process_time()
                    await work
                    wall, cpu = time.perf_counter() - started, time.process_time() - used
                    gc_after = clock.snapshot()
                    threads_after = thread_cpu()
                    rows.append(
                        {
                            "round": index,
                            "name": name,
                            "wall": wall / args.chunk,
                            "cpu": cpu / args.chunk,
                            "threads": {
                                k: (v - threads_before.get(k, 0.0)) / args.chunk
                                for k, v in threads_after.items()
                                if v - threads_before.get(k, 0.0) > 0
                            },
                            "gc_runs": [
                                a - b for a, b in zip(gc_after[0], gc_before[0], strict=True)
                            ],
                            "gc_ms": sum(
                                a - b for a, b in zip(gc_after[1], gc_before[1], strict=True)
                            )
                            * 1e3,
                            "gc_longest": gc_after[2] * 1e3,
                            "stall": stalls.take() * 1e3,
                            "commits": commits[name][0] - before_commits,
                            "worker": dict(WORKER_CALLS),
                            "p50": statistics.median(latencies) * 1e3,
                            "p99": sorted(latencies)[int(0.99 * (len(latencies) - 1))] * 1e3,
                        }
                    )
        finally:
            await one.stop()
            await many.stop()
    table = Table(title=f"1 room against {args.rooms} rooms, rounds of {args.chunk} messages")
    for column in (
        "round",
        "scenario",
        "us/msg",
        "CPU us/msg",
        "CPU by thread us/msg",
        "gc runs 0/1/2",
        "gc ms",
        "gc max ms",
        "stall ms",
        "commits",
        "p50 / p99 ms",
    ):
        table.add_column(
            column, justify="left" if column.startswith(("scen", "CPU by")) else "right"
        )
    for row in rows:
        threads = ", ".join(
            f"{k[:12]} {v * 1e6:,.0f}"
            for k, v in sorted(row["threads"].items(), key=lambda kv: -kv[1])
        )
        table.add_row(
            str(row["round"]),
            row["name"],
            f"{row['wall'] * 1e6:,.0f}",
            f"{row['cpu'] * 1e6:,.0f}",
            threads,
            "/".join(map(str, row["gc_runs"])),
            f"{row['gc_ms']:.1f}",
            f"{row['gc_longest']:.1f}",
            f"{row['stall']:.1f}",
            str(row["commits"]),
            f"{row['p50']:.2f} / {row['p99']:.2f}",
        )
    console.print(table)
    for row in rows:
        if row["name"] == "many":
            console.print(f"round {row['round']} many: worker calls {row['worker']}")
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["name"]] = row
    ratios = [r["one"]["wall"] / r["many"]["wall"] for r in by_round.values()]
    cpu_ratios = [r["one"]["cpu"] / r["many"]["cpu"] for r in by_round.values()]
    console.print(
        f"{args.rooms} rooms vs 1 room, per round: "
        + ", ".join(f"{x:.2f}" for x in ratios)
        + f"; median {statistics.median(ratios):.2f}x (CPU {statistics.median(cpu_ratios):.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=200)
    parser.add_argument("--embeddings", choices=("hashed", "e5"), default="hashed")
    parser.add_argument("--gc0", type=int, default=0, help="gc.set_threshold(gc0, gc1, gc2)")
    parser.add_argument("--gc1", type=int, default=10)
    parser.add_argument("--gc2", type=int, default=10)
    parser.add_argument("--switch", type=float, default=0.0, help="sys.setswitchinterval")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
