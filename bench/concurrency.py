"""100 rooms at once against one room (issue 20, target 1): per round, what varies and why.

Two hosts of the default configuration (`bench/pipeline.py`'s `start_host`), one serving one
room, one serving `--rooms` rooms at once (each room's messages one after the other), take
turns in rounds of `--chunk` messages (ABBA order). Each round prints its wall and CPU time a
message, the CPU of each thread, the garbage collector's runs by generation and their time,
the event loop's longest stall (the gap between two ticks of a 1 ms timer), the memory store's
commits and the calls it sent to its worker thread; so that the spread of the 100-room figure
of `bench/pipeline.py` can be put down to what changed between rounds. Then the per-round
ratios (one room's time a message over 100 rooms'), their median and range.

Then the floor of the target (>= 1.5x): one more 100-room chunk under cProfile (the loop's
thread, timed by its CPU clock) gives the own time of the calls that run without the GIL
(SQLite's and faiss's); with the other threads' CPU (all counted as GIL-free) over the
unprofiled CPU a message that is p, an upper bound of the share that can overlap. Amdahl's
1 / (1 - p + p/cores) is the most the machine's cores can add; times the CPU ratio (1 room's
CPU a message over 100 rooms': what shared commits save) it bounds the wall ratio, printed next
to the measured one with the verdict (``--no-floor`` skips the profiled chunk).

    .venv/bin/python bench/concurrency.py                       # 10 rounds of 200 messages
    .venv/bin/python bench/concurrency.py --rounds 6 --gc 700   # CPython's GC threshold
    .venv/bin/python bench/concurrency.py --rounds 4 --no-floor # the rounds only
    .venv/bin/python bench/concurrency.py --gc-pairs 10000      # the host's GC threshold vs 10,000

``--gc-pairs T`` measures only a paired comparison of the youngest generation's GC threshold:
each round runs each scenario twice back to back, under the host's threshold and under `T`
(which goes first alternates), and prints per scenario the median of the per-round CPU ratios
(the host's over `T`'s: below 1, the host's threshold costs less) and, per threshold, the
100-room ratio. Adjacent chunks share the machine's load, which the separate runs of the
default mode do not.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import io
import os
import pstats
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import uuid4

from pipeline import many_rooms, one_room, start_host, thread_cpu, warm_up
from raw_trail import process_cpu
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


GIL_FREE = {"SQLite": "sqlite3.", "faiss": "faiss"}
"""Built-in calls counted as running without the GIL, by what cProfile's name of the C call
holds: every call of sqlite3's Connection and Cursor (SQLite's statements, commits and fetches
let go of it around the library's work) and of faiss (its scoring lets go of it). Their whole
own time is counted, including the parts that hold the GIL (arguments bound, rows built): an
over-count, so the share is an upper bound. numpy's calls are tallied apart (`NUMPY`)."""
NUMPY = "numpy"
"""numpy lets go of the GIL only in some loops, and in most only above 500 elements (these
vectors have 384): not counted in the bound, shown beside it."""


def profiler_bias(timer: Any, calls: int = 100_000) -> float:
    """Seconds cProfile adds to the own time of each C call it times with `timer` (its hooks'
    work between the two clock reads around the call): a cheap built-in's own time under the
    profiler less its cost unprofiled, the least of 3 tries."""
    probe = (1, 2, 3)
    found = []
    for _ in range(3):
        started = time.thread_time()
        for _ in range(calls):
            len(probe)
        bare = (time.thread_time() - started) / calls
        loop_only = time.thread_time()
        for _ in range(calls):
            pass
        bare -= (time.thread_time() - loop_only) / calls
        profile = cProfile.Profile(timer)
        profile.enable()
        for _ in range(calls):
            len(probe)
        profile.disable()
        stats = pstats.Stats(profile, stream=io.StringIO())
        own = sum(
            entry[2]
            for (path, _line, name), entry in stats.stats.items()  # type: ignore[attr-defined]
            if path == "~" and "len" in name
        )
        found.append(own / calls - max(bare, 0.0))
    return max(0.0, min(found))


async def gil_free(host: Any, chunk: int, rooms: list[Any]) -> dict[str, float]:
    """One more chunk of the 100-room scenario under cProfile (the loop's thread; timer: its
    CPU clock, which other processes' load does not move): per message, the own CPU time of
    the calls that run without the GIL (`GIL_FREE`), less the profiler's bias on each call
    (`profiler_bias`), and of everything profiled."""
    bias = profiler_bias(time.thread_time)
    profile = cProfile.Profile(time.thread_time)
    profile.enable()
    await many_rooms(host, chunk, rooms, [])
    profile.disable()
    stats = pstats.Stats(profile, stream=io.StringIO())
    found = dict.fromkeys([*GIL_FREE, NUMPY, "raw", "calls", "profiled"], 0.0)
    for (path, _line, name), entry in stats.stats.items():  # type: ignore[attr-defined]
        calls, own = entry[1], entry[2]
        found["profiled"] += own
        kind = next((k for k, mark in GIL_FREE.items() if mark in name), None)
        if path != "~" or (kind is None and NUMPY not in name):
            continue
        kind = kind or NUMPY
        found[kind] += max(0.0, own - calls * bias)
        if kind != NUMPY:
            found["raw"] += own
            found["calls"] += calls
    return {key: value / chunk for key, value in found.items()} | {"bias": bias}


def writer_pid(host: Any) -> int | None:
    """The audit trail's writer process (the default on a SQLite file), if it has one."""
    loaded = host.loader.loaded.get("audit")
    recorder = getattr(loaded.instance, "recorder", None) if loaded is not None else None
    process = getattr(recorder, "process", None)
    return None if process is None else int(process.pid)


@contextlib.asynccontextmanager
async def warmed_hosts(embeddings: str) -> AsyncIterator[dict[str, Any]]:
    """The default configuration twice, for the one-room and the 100-room scenario (each on a
    data dir of its own), warmed up; stopped after."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        hosts = {
            "one": await start_host(directory / "one", embeddings),
            "many": await start_host(directory / "many", embeddings),
        }
        try:
            for host in hosts.values():
                await warm_up(host)
            yield hosts
        finally:
            for host in hosts.values():
                await host.stop()


async def run(args: argparse.Namespace, floor: dict[str, float]) -> list[dict[str, Any]]:
    clock, stalls = GcClock(), Stalls()
    rows: list[dict[str, Any]] = []
    async with warmed_hosts(args.embeddings) as hosts:
        if args.gc:
            gc.set_threshold(args.gc, *gc.get_threshold()[1:])
        traces = {name: StoreTrace(host) for name, host in hosts.items()}
        writers = {name: writer_pid(host) for name, host in hosts.items()}
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
                threads, writer = thread_cpu(), process_cpu(writers[name])
                started, used = time.perf_counter(), time.process_time()
                await work
                wall, cpu = time.perf_counter() - started, time.process_time() - used
                writer = process_cpu(writers[name]) - writer
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
                        "writer": writer / args.chunk,
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
        if not args.no_floor:
            floor.update(await gil_free(hosts["many"], args.chunk, rooms))
    return rows


async def gc_pairs(args: argparse.Namespace) -> None:
    """`--gc-pairs`: the host's young GC threshold against `args.gc_pairs`, paired per round
    (see the module doc)."""
    thresholds = {"host": 0, "other": args.gc_pairs}
    took: dict[tuple[str, str], list[tuple[float, float]]] = {}
    async with warmed_hosts(args.embeddings) as hosts:
        try:
            thresholds["host"] = gc.get_threshold()[0]
            room, rooms = uuid4(), [uuid4() for _ in range(args.rooms)]
            await one_room(hosts["one"], args.rooms, room, [])
            await many_rooms(hosts["many"], args.rooms, rooms, [])
            for index in range(args.rounds):
                for name in ("one", "many") if index % 2 == 0 else ("many", "one"):
                    for arm in ("host", "other") if (index // 2) % 2 == 0 else ("other", "host"):
                        gc.set_threshold(thresholds[arm], *gc.get_threshold()[1:])
                        started, used = time.perf_counter(), time.process_time()
                        if name == "one":
                            await one_room(hosts[name], args.chunk, room, [])
                        else:
                            await many_rooms(hosts[name], args.chunk, rooms, [])
                        took.setdefault((name, arm), []).append(
                            (
                                (time.perf_counter() - started) / args.chunk,
                                (time.process_time() - used) / args.chunk,
                            )
                        )
        finally:
            gc.set_threshold(thresholds["host"], *gc.get_threshold()[1:])
    table = Table(
        title=f"the young GC threshold {thresholds['host']:,} (the host's) against"
        f" {args.gc_pairs:,}, paired in {args.rounds} rounds of {args.chunk} messages"
    )
    for column in ("scenario", "CPU us/msg, host's / other", "CPU host's / other (range)"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name, label in (("one", "1 room"), ("many", f"{args.rooms} rooms")):
        mine, other = took[(name, "host")], took[(name, "other")]
        ratios = [a[1] / b[1] for a, b in zip(mine, other, strict=True)]
        table.add_row(
            label,
            f"{statistics.median(c for _, c in mine) * 1e6:,.0f} /"
            f" {statistics.median(c for _, c in other) * 1e6:,.0f}",
            f"{statistics.median(ratios):.3f} ({min(ratios):.2f}..{max(ratios):.2f})",
        )
    console.print(table)
    for arm in ("host", "other"):
        walls = [a[0] / b[0] for a, b in zip(took[("one", arm)], took[("many", arm)], strict=True)]
        console.print(
            f"threshold {thresholds[arm]:,}: {args.rooms} rooms vs 1 room, median of the rounds"
            f" {statistics.median(walls):.2f}x ({min(walls):.2f}x..{max(walls):.2f}x)"
        )


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


def amdahl_floor(rows: list[dict[str, Any]], floor: dict[str, float], args: Any) -> None:
    """What the GIL lets a second core add (Amdahl), times the CPU the shared commits save: the
    most the wall ratio can reach, next to the measured one."""
    many = [r for r in rows if r["name"] == "many"]
    cpu = statistics.median(r["cpu"] for r in many)
    loop = statistics.median(r["threads"].get("MainThread", r["cpu"]) for r in many)
    others = max(0.0, cpu - loop)
    # the writer process's CPU (clock ticks: 10 ms, too coarse for a round) as a mean
    writer = statistics.fmean(r["writer"] for r in many)
    writer_one = statistics.fmean(r["writer"] for r in rows if r["name"] == "one")
    cpu += writer
    others += writer
    free = sum(floor[kind] for kind in GIL_FREE)
    cores = os.cpu_count() or 1

    def amdahl(p: float) -> float:
        return 1 / (1 - p + p / cores)

    p = min(1.0, (free + others) / cpu)
    p_numpy = min(1.0, (free + floor[NUMPY] + others) / cpu)
    p_threads_held = min(1.0, (free + writer) / cpu)  # the in-process threads' CPU all GIL-held
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["name"]] = row
    cpu_ratio = statistics.median(
        (r["one"]["cpu"] + writer_one) / (r["many"]["cpu"] + writer) for r in by_round.values()
    )
    wall_ratio = statistics.median(r["one"]["wall"] / r["many"]["wall"] for r in by_round.values())
    busy = {
        name: statistics.median(r["cpu"] / r["wall"] for r in rows if r["name"] == name)
        for name in ("one", "many")
    }
    bound = cpu_ratio * amdahl(p)
    table = Table(
        title=f"The floor of {args.rooms} rooms >= 1.5x one room: the GIL (Amdahl) and the"
        " work shared commits save"
    )
    for column in ("", "us/msg", "note"):
        table.add_column(column, justify="left" if column != "us/msg" else "right")
    table.add_row(
        f"{args.rooms} rooms: CPU a message (unprofiled, median of the rounds)",
        f"{cpu * 1e6:,.0f}",
        "all threads of this process, and the audit trail's writer process (its mean)",
    )
    table.add_row(
        "  of which the loop's thread", f"{loop * 1e6:,.0f}", "/proc per thread, same rounds"
    )
    table.add_row(
        "  of which other threads (the audit trail's writer thread, the store's worker)",
        f"{(others - writer) * 1e6:,.0f}",
        "all counted as GIL-free (they run Python too: an over-count)",
    )
    table.add_row(
        "  of which the audit trail's writer process",
        f"{writer * 1e6:,.0f}",
        f"another process: runs beside the loop (1 room: {writer_one * 1e6:,.0f} us)",
    )
    for kind in GIL_FREE:
        table.add_row(
            f"  GIL-free: {kind} calls on the loop's thread",
            f"{floor[kind] * 1e6:,.0f}",
            "cProfile of 1 more chunk, the thread's CPU clock, own time of each call",
        )
    table.add_row(
        "    (those calls, as profiled)",
        f"{floor['raw'] * 1e6:,.0f}",
        f"{floor['calls']:.0f} calls a message, each less the profiler's own"
        f" {floor['bias'] * 1e9:.0f} ns; profiled loop CPU {floor['profiled'] * 1e6:,.0f} us",
    )
    table.add_row(
        "  not counted: numpy calls on the loop's thread",
        f"{floor[NUMPY] * 1e6:,.0f}",
        f"it lets go of the GIL in few loops, most above 500 elements; counted: p {p_numpy:.0%},"
        f" bound {cpu_ratio * amdahl(p_numpy):.2f}x",
    )
    table.add_row(
        "p: share able to run without the GIL (an upper bound)",
        f"{p:.0%}",
        "(GIL-free calls + other threads + writer process) / the unprofiled CPU",
    )
    table.add_row(
        "  p with the other threads' CPU all counted as holding the GIL",
        f"{p_threads_held:.0%}",
        f"not a bound either way (SQLite's calls still whole): bound"
        f" {cpu_ratio * amdahl(p_threads_held):.2f}x",
    )
    table.add_row(
        f"Amdahl: the most {cores} cores can give, 1 / (1 - p + p/{cores})",
        f"{amdahl(p):.2f}x",
        f"any number of cores: {1 / (1 - p):.2f}x" if p < 1 else "",
    )
    table.add_row(
        "cores used (CPU / wall, median of the rounds): 1 room / 100 rooms",
        f"{busy['one']:.2f} / {busy['many']:.2f}",
        "below 1: waiting (other processes' load, I/O)",
    )
    table.add_row(
        "CPU ratio: 1 room's CPU a message / 100 rooms' (the work shared commits save)",
        f"{cpu_ratio:.2f}x",
        "median of the rounds",
    )
    table.add_row(
        "bound on the wall ratio: CPU ratio x Amdahl",
        f"{bound:.2f}x",
        "if one room's wall equals its CPU (one core busy: a quiet machine)",
    )
    table.add_row("measured wall ratio (median of the rounds)", f"{wall_ratio:.2f}x", "")
    console.print(table)
    if bound < 1.5:
        verdict = (
            f"the floor stops it: even with every GIL-free part overlapped on {cores} cores the"
            f" wall ratio cannot pass {bound:.2f}x; the rest is the per-message Python on one GIL"
        )
    else:
        verdict = (
            f"NOT a floor: this upper bound ({bound:.2f}x) is above 1.5x, so the GIL and the"
            " shared commits alone do not rule the target out; the host gets little of that"
            f" overlap (cores used by {args.rooms} rooms: {busy['many']:.2f})"
        )
    console.print(
        f"target 1 ({args.rooms} rooms >= 1.5x one room): measured {wall_ratio:.2f}x"
        f" (CPU {cpu_ratio:.2f}x), {'met' if wall_ratio >= 1.5 else 'NOT met'}; {verdict}"
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
    parser.add_argument(
        "--gc-pairs",
        type=int,
        default=0,
        metavar="T",
        help="only a paired comparison of the host's young GC threshold with T",
    )
    parser.add_argument(
        "--no-floor",
        action="store_true",
        help="skip the profiled chunk that measures the CPU able to run without the GIL",
    )
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    if args.gc_pairs:
        asyncio.run(gc_pairs(args))
        return
    floor: dict[str, float] = {}
    rows = asyncio.run(run(args, floor))
    report(rows, args)
    if floor:
        amdahl_floor(rows, floor, args)


if __name__ == "__main__":
    main()
