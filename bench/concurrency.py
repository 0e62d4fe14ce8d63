"""100 rooms at once against one room (issue 20, target 1): per round, what varies and why.

Two hosts of the default configuration (`bench/pipeline.py`'s `start_host`), one serving one
room, one serving `--rooms` rooms at once (each room's messages one after the other), take
turns in rounds of `--chunk` messages (ABBA order). Each round prints its wall and CPU time a
message, the CPU of each thread, the garbage collector's runs by generation and their time,
the event loop's longest stall (the gap between two ticks of a 1 ms timer), the memory store's
commits and the calls it sent to its worker thread; so that the spread of the 100-room figure
of `bench/pipeline.py` can be put down to what changed between rounds. Then the per-round
ratios (one room's time a message over 100 rooms'), their median and range.

    .venv/bin/python bench/concurrency.py                       # 10 rounds of 200 messages
    .venv/bin/python bench/concurrency.py --rounds 6 --gc 700   # CPython's GC threshold
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any
from uuid import uuid4

from pipeline import many_rooms, one_room, start_host, thread_cpu, warm_up
from rich.console import Console
from rich.table import Table

console = Console(width=170)


class GcClock:
    """The collector's runs and their time, by generation (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.runs = [0, 0, 0]
        self.seconds = 0.0
        self.longest = 0.0
        self._started = 0.0
        gc.callbacks.append(self._tick)

    def _tick(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        spent = time.perf_counter() - self._started
        self.runs[int(info["generation"])] += 1
        self.seconds += spent
        self.longest = max(self.longest, spent)

    def take(self) -> tuple[list[int], float, float]:
        """Runs by generation, seconds and the longest run since the last `take`."""
        taken = (self.runs, self.seconds, self.longest)
        self.runs, self.seconds, self.longest = [0, 0, 0], 0.0, 0.0
        return taken


class Stalls:
    """The loop's longest gap between two ticks of a 1 ms timer."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        last = time.perf_counter()
        while True:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._tick())

    def take(self) -> float:
        longest, self.longest = self.longest, 0.0
        return longest


class StoreTrace:
    """The commits of a host's SQLite memory store and the calls it sends to its worker thread
    (by function; queued writes as "writes queued")."""

    def __init__(self, host: Any) -> None:
        store = host.agents.get("Eliza").database
        while hasattr(store, "inner"):  # the metrics and cluster wrappers
            store = store.inner
        self.commits = 0
        self.sent: Counter[str] = Counter()
        store._conn.set_trace_callback(self._statement)
        run, enqueue = store._run, store._enqueue

        async def counted(fn: Any, *args: Any) -> Any:
            self.sent[getattr(fn, "__name__", repr(fn))] += 1
            return await run(fn, *args)

        def queued(jobs: list[Any]) -> None:
            self.sent["writes queued"] += len(jobs)
            enqueue(jobs)

        store._run, store._enqueue = counted, queued

    def _statement(self, sql: str) -> None:
        if sql == "COMMIT":
            self.commits += 1

    def take(self) -> tuple[int, Counter[str]]:
        taken = (self.commits, self.sent)
        self.commits, self.sent = 0, Counter()
        return taken


async def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    clock, stalls = GcClock(), Stalls()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        hosts = {
            "one": await start_host(directory / "one", args.embeddings),
            "many": await start_host(directory / "many", args.embeddings),
        }
        try:
            for host in hosts.values():
                await warm_up(host)
            if args.gc:
                gc.set_threshold(args.gc, *gc.get_threshold()[1:])
            traces = {name: StoreTrace(host) for name, host in hosts.items()}
            stalls.start()
            room, rooms = uuid4(), [uuid4() for _ in range(args.rooms)]
            # each room's first message (its room and participants set up) before the rounds:
            # 100 rooms' first round paid 100 set-ups, one room's one; as many into the 1 room
            await one_room(hosts["one"], args.rooms, room, [])
            await many_rooms(hosts["many"], args.rooms, rooms, [])
            for index in range(args.rounds):
                for name in ("one", "many") if index % 2 == 0 else ("many", "one"):
                    latencies: list[float] = []
                    work = (
                        one_room(hosts[name], args.chunk, room, latencies)
                        if name == "one"
                        else many_rooms(hosts[name], args.chunk, rooms, latencies)
                    )
                    clock.take(), stalls.take(), traces[name].take()
                    threads = thread_cpu()
                    started, used = time.perf_counter(), time.process_time()
                    await work
                    wall, cpu = time.perf_counter() - started, time.process_time() - used
                    runs, gc_seconds, gc_longest = clock.take()
                    commits, sent = traces[name].take()
                    after = thread_cpu()
                    latencies.sort()
                    rows.append(
                        {
                            "round": index,
                            "name": name,
                            "wall": wall / args.chunk,
                            "cpu": cpu / args.chunk,
                            "threads": {
                                thread: (seconds - threads.get(thread, 0.0)) / args.chunk
                                for thread, seconds in after.items()
                            },
                            "gc": runs,
                            "gc_ms": gc_seconds * 1e3,
                            "gc_longest": gc_longest * 1e3,
                            "stall": stalls.take() * 1e3,
                            "commits": commits / args.chunk,
                            "sent": sum(sent.values()) / args.chunk,
                            "p50": latencies[len(latencies) // 2] * 1e3,
                            "p99": latencies[int(0.99 * (len(latencies) - 1))] * 1e3,
                        }
                    )
            if stalls.task is not None:
                stalls.task.cancel()
        finally:
            for host in hosts.values():
                await host.stop()
    return rows


def report(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    table = Table(
        title=f"1 room against {args.rooms} rooms at once, rounds of {args.chunk} messages"
    )
    columns = (
        "round",
        "scenario",
        "us/msg",
        "CPU us/msg",
        "CPU by thread us/msg (>= 25)",
        "gc runs 0/1/2",
        "gc ms",
        "gc max ms",
        "stall ms",
        "commits/msg",
        "to worker/msg",
        "p50 / p99 ms",
    )
    for column in columns:
        table.add_column(
            column, justify="left" if column.startswith(("scen", "CPU by")) else "right"
        )
    for row in rows:
        threads = ", ".join(
            f"{name.split(':')[0][:12]} {seconds * 1e6:,.0f}"
            for name, seconds in sorted(row["threads"].items(), key=lambda kv: -kv[1])
            if seconds >= 25e-6
        )
        table.add_row(
            str(row["round"]),
            "1 room" if row["name"] == "one" else f"{args.rooms} rooms",
            f"{row['wall'] * 1e6:,.0f}",
            f"{row['cpu'] * 1e6:,.0f}",
            threads,
            "/".join(map(str, row["gc"])),
            f"{row['gc_ms']:.1f}",
            f"{row['gc_longest']:.1f}",
            f"{row['stall']:.1f}",
            f"{row['commits']:.2f}",
            f"{row['sent']:.2f}",
            f"{row['p50']:.2f} / {row['p99']:.2f}",
        )
    console.print(table)
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["name"]] = row
    wall = [r["one"]["wall"] / r["many"]["wall"] for r in by_round.values()]
    cpu = [r["one"]["cpu"] / r["many"]["cpu"] for r in by_round.values()]
    console.print(
        f"{args.rooms} rooms vs 1 room (throughput), by round: "
        + ", ".join(f"{ratio:.2f}x" for ratio in wall)
        + f"; median {statistics.median(wall):.2f}x ({min(wall):.2f}x..{max(wall):.2f}x),"
        f" CPU {statistics.median(cpu):.2f}x ({min(cpu):.2f}x..{max(cpu):.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=200, help="messages a round per scenario")
    parser.add_argument("--embeddings", choices=("hashed", "e5"), default="hashed")
    parser.add_argument(
        "--gc", type=int, default=0, help="the youngest generation's GC threshold (0: the host's)"
    )
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    report(asyncio.run(run(args)), args)


if __name__ == "__main__":
    main()
