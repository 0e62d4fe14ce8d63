"""Agent runtime benchmark: process_message throughput and latency with ELIZA + SQLite.

Runs N messages through `AgentRuntime.process_message` (the whole pipeline: events, embedding,
SQLite writes, providers, TEXT_LARGE through the model registry, actions, evaluators), with

- 1 room: every message to one room, submitted at once (the runtime serializes them);
- 100 rooms: the same N messages spread over 100 rooms, all submitted at once;

and reports messages/s, p50/p99 latency, and the cost split by stage (memory, providers, model,
actions, evaluators, other = events + scope + bookkeeping). The floor, measured in the same run,
is a bare loop calling the ELIZA function and doing one raw ``sqlite3`` insert per message.

    .venv/bin/python bench/runtime.py            # 5,000 messages per scenario
    .venv/bin/python bench/runtime.py --quick    # 1,000
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sqlite3
import statistics
import tempfile
import time
import timeit
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console
from rich.table import Table

from builtin_plugins.eliza import Session
from contracts.config import LoggingSettings
from contracts.metrics import MetricsSettings
from host.app import Host
from host.logs import configure_logging
from host.metrics.bound import bind
from host.metrics.memory import InMemoryMetrics
from host.testing import offline_config

console = Console(width=150)

STAGES = ("memory", "providers", "model", "actions", "evaluators")
TEXTS = [
    "I feel sad about my job",
    "My mother never listens to me",
    "I dreamed about flying last night",
    "Perhaps I am just tired",
    "Why do you ask so many questions",
    "I am not sure what I want",
    "Everybody seems happier than me",
    "Can you help me",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def build(directory: Path, *, metrics: bool = True) -> Any:
    """The default host (SQLite store, ELIZA) on a data dir in `directory`; its agent and stop."""
    host = Host(offline_config(directory, metrics=MetricsSettings(enabled=metrics)))
    await host.start()
    assert host.agents is not None
    return host.agents.get("Eliza"), host.stop, host


_session = Session()


def eliza_reply(text: str) -> str:
    return _session.respond(text)


def floor(n: int, directory: Path) -> dict[str, Any]:
    """The floor: the ELIZA function + one raw sqlite3 insert (WAL) per message."""
    conn = sqlite3.connect(directory / "floor.sqlite3", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute("CREATE TABLE m (id TEXT PRIMARY KEY, room TEXT, text TEXT, reply TEXT)")
    latencies: list[float] = []
    room = str(uuid4())
    started = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        text = TEXTS[i % len(TEXTS)]
        reply = eliza_reply(text)
        conn.execute("INSERT INTO m VALUES (?, ?, ?, ?)", (str(uuid4()), room, text, reply))
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - started
    conn.close()
    return {"elapsed": elapsed, "latencies": latencies, "service": latencies, "stages": {}}


async def scenario(n: int, rooms: int, directory: Path, *, metrics: bool = True) -> dict[str, Any]:
    """`n` messages over `rooms` rooms, all submitted at once; latency = submit to reply."""
    await asyncio.to_thread(directory.mkdir, parents=True, exist_ok=True)
    runtime, close, host = await build(directory, metrics=metrics)
    try:
        room_ids = [uuid4() for _ in range(rooms)]
        user = uuid4()
        # warm-up: first-use costs (index creation, model registry caches) out of the figures
        await runtime.process_message(runtime.new_message("hello", room_id=uuid4(), entity_id=user))
        latencies: list[float] = []
        service: list[float] = []
        stages = dict.fromkeys((*STAGES, "total"), 0.0)

        async def one(i: int) -> None:
            message = runtime.new_message(
                TEXTS[i % len(TEXTS)], room_id=room_ids[i % rooms], entity_id=user
            )
            t = time.perf_counter()
            reply = await runtime.process_message(message)
            latencies.append(time.perf_counter() - t)
            service.append(reply.timings["total"])
            for stage in stages:
                stages[stage] += reply.timings.get(stage, 0.0)

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.perf_counter() - started
        recorded = sum(
            s.count if s.kind == "histogram" else s.value for s in host.telemetry.memory.series()
        )
    finally:
        await close()
    return {
        "elapsed": elapsed,
        "latencies": latencies,
        "service": service,
        "stages": stages,
        "metric_calls": recorded / (n + 1),
    }


def row(label: str, result: dict[str, Any], n: int, base: dict[str, Any]) -> list[str]:
    rate = n / result["elapsed"]
    base_rate = n / base["elapsed"]
    lat = result["latencies"]
    stages = result["stages"]
    total = stages.get("total") or 0.0
    split = ""
    if total:
        parts = [(s, stages[s] / total) for s in STAGES]
        other = 1.0 - sum(share for _, share in parts)
        split = ", ".join(f"{s} {share:.0%}" for s, share in parts) + f", other {other:.0%}"
    return [
        label,
        f"{rate:,.0f}",
        f"{rate / base_rate:.3f}x",
        f"{percentile(lat, 0.5) * 1e3:.2f}",
        f"{percentile(lat, 0.99) * 1e3:.2f}",
        f"{percentile(result['service'], 0.5) * 1e3:.2f}",
        split,
    ]


async def run(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        base = floor(n, directory)
        one_room = await scenario(n, 1, directory / "one")
        many_rooms = await scenario(n, 100, directory / "many")
        paired = await instrumentation_cost(directory / "paired", rounds=100, batch=20)
    table = Table(title=f"process_message with ELIZA + SQLite, {n:,} messages per scenario")
    for header in (
        "scenario",
        "msg/s",
        "vs floor",
        "p50 ms",
        "p99 ms",
        "service p50 ms",
        "cost split (share of total)",
    ):
        table.add_column(header)
    table.add_row(*row("floor: ELIZA fn + 1 sqlite3 insert", base, n, base))
    table.add_row(*row("process_message, 1 room", one_room, n, base))
    table.add_row(*row("process_message, 100 rooms", many_rooms, n, base))
    console.print(
        f"Python {platform.python_version()} on {platform.machine()}, "
        f"SQLite {sqlite3.sqlite_version}. p50/p99: submit to reply, all messages submitted at"
        " once (includes waiting for the room's turn); service: the pipeline itself"
    )
    console.print(table)
    cost = paired
    per_call = record_cost()
    direct = cost.observations * per_call / cost.service
    # The verdict is on the medians of the paired rounds (as bench/eventstore.py judges the audit
    # cost): stable within a point from run to run here, where the fastest single round of each
    # side swung from -7.5% to +6.5% over four runs of the same code.
    verdict = "met" if max(cost.wall_median, cost.cpu_median) <= 0.05 else "NOT met"
    console.print(
        f"instrumentation cost, paired A/B ({cost.rounds} alternating rounds of {cost.batch}"
        " messages, metrics on vs metrics.enabled false):\n"
        f"  median of the per-round ratios: wall {cost.wall_median:+.1%}, CPU"
        f" {cost.cpu_median:+.1%} (rounds ranged {cost.low:+.1%} to {cost.high:+.1%});"
        f" target <= 5% (wall and CPU): {verdict}\n"
        f"  fastest round each side: wall {cost.wall_min:+.1%}, CPU {cost.cpu_min:+.1%}\n"
        f"instrumentation cost, direct: {cost.observations:.1f} observations per message x"
        f" {per_call * 1e6:.2f} us (a bound histogram recorder) ="
        f" {cost.observations * per_call * 1e6:.1f} us = {direct:.1%} of a message's pipeline time"
    )


@dataclass(frozen=True, slots=True)
class Cost:
    """The paired A/B's figures: metrics on relative to off (+0.02 is 2% slower)."""

    rounds: int
    batch: int
    wall_min: float
    cpu_min: float
    wall_median: float
    cpu_median: float
    low: float
    high: float
    observations: float
    """Observations recorded per message."""
    service: float
    """Median seconds per message, metrics on."""


async def instrumentation_cost(directory: Path, *, rounds: int, batch: int) -> Cost:
    """Two hosts side by side (metrics on / off), sequential batches of messages alternating
    between them. Wall and process CPU time per message of each batch; compared are the fastest
    batch of each side (the machine's other load only ever adds time) and the median of the
    per-round ratios."""
    hosts = {}
    for enabled in (False, True):
        where = directory / f"metrics-{enabled}"
        await asyncio.to_thread(where.mkdir, parents=True, exist_ok=True)
        hosts[enabled] = await build(where, metrics=enabled)
    room, user = uuid4(), uuid4()
    warm_up = 100
    try:
        for runtime, _close, _host in hosts.values():
            for _ in range(warm_up):
                await runtime.process_message(
                    runtime.new_message("hi", room_id=room, entity_id=user)
                )
        wall: dict[bool, list[float]] = {False: [], True: []}
        cpu: dict[bool, list[float]] = {False: [], True: []}
        for index in range(rounds):
            for enabled in (False, True) if index % 2 == 0 else (True, False):
                runtime = hosts[enabled][0]
                started, used = time.perf_counter(), time.process_time()
                for i in range(batch):
                    message = runtime.new_message(
                        TEXTS[i % len(TEXTS)], room_id=room, entity_id=user
                    )
                    await runtime.process_message(message)
                cpu[enabled].append((time.process_time() - used) / batch)
                wall[enabled].append((time.perf_counter() - started) / batch)
        memory = hosts[True][2].telemetry.memory
        observed = sum(s.count if s.kind == "histogram" else s.value for s in memory.series())
    finally:
        for _runtime, close, _host in hosts.values():
            await close()
    wall_ratios = [on / off - 1 for on, off in zip(wall[True], wall[False], strict=True)]
    cpu_ratios = [on / off - 1 for on, off in zip(cpu[True], cpu[False], strict=True)]
    return Cost(
        rounds=rounds,
        batch=batch,
        wall_min=min(wall[True]) / min(wall[False]) - 1,
        cpu_min=min(cpu[True]) / min(cpu[False]) - 1,
        wall_median=statistics.median(wall_ratios),
        cpu_median=statistics.median(cpu_ratios),
        low=min(wall_ratios),
        high=max(wall_ratios),
        observations=observed / (warm_up + rounds * batch),
        service=statistics.median(wall[True]),
    )


def record_cost() -> float:
    """Seconds per observation recorded by the host's instrumentation: a bound histogram
    recorder (`host.metrics.bound`), its folds included."""
    metrics = InMemoryMetrics()
    tags = {"operation": "create", "backend": "sqlite", "outcome": "ok"}
    record = bind(metrics, "histogram", "agenthost.memory.operation.duration", tags)
    return min(timeit.repeat(partial(record, 0.001), number=20_000, repeat=5)) / 20_000


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,000 messages per scenario")
    parser.add_argument("-n", type=int, default=None, help="messages per scenario")
    args = parser.parse_args()
    configure_logging(LoggingSettings(level="WARNING"))
    asyncio.run(run(args.n or (1_000 if args.quick else 5_000)))


if __name__ == "__main__":
    main()
