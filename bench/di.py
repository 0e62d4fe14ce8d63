"""Dependency-injection benchmark: resolution cost, scope cost, constructor injection.

Every figure is a ratio to two baselines measured in the same run: a plain attribute lookup
(``obj.attr``) and dependency-injector's raw provider call (``providers.Singleton(...)()``, the
floor our container builds on). Targets from the issue: a singleton resolve within 3x of the raw
provider call, a message scope open + close under 20 µs.

    .venv/bin/python bench/di.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
import timeit
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from dependency_injector import providers
from rich.console import Console
from rich.table import Table

from contracts.tokens import Token
from host.di import Container


class Settings:
    debug = False


class Database:
    pass


class Clock:
    pass


class Cache:
    pass


class Metrics:
    pass


class State:
    def __init__(self, db: Database) -> None:
        self.db = db


class Request:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock


SETTINGS = Token("bench.settings", Settings)
DATABASE = Token("bench.database", Database)
CLOCK = Token("bench.clock", Clock)
CACHE = Token("bench.cache", Cache)
METRICS = Token("bench.metrics", Metrics)
STATE = Token("bench.state", State)
REQUEST = Token("bench.request", Request)
REPLICA = Token[Database]("bench.replica")
RESOURCE = Token[Clock]("bench.resource")


class FivePlugin:
    """A plugin constructor with 5 injected parameters (one explicit token)."""

    def __init__(
        self,
        db: Database,
        replica: Annotated[Database, REPLICA],
        clock: Clock,
        cache: Cache,
        metrics: Metrics,
    ) -> None:
        self.db = db
        self.replica = replica
        self.clock = clock
        self.cache = cache
        self.metrics = metrics


def build() -> Container:
    container = Container()
    container.register(SETTINGS, Settings)
    container.register(DATABASE, Database)
    container.register(REPLICA, Database)
    container.register(CLOCK, Clock)
    container.register(CACHE, Cache)
    container.register(METRICS, Metrics)
    container.register(STATE, State, lifetime="scoped", scope="message")
    container.register(REQUEST, Request, lifetime="transient")
    return container


def per_call(fn: Callable[[], object], number: int) -> float:
    """Best-of-5 seconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


async def per_call_async(fn: Callable[[], Awaitable[object]], number: int) -> float:
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(number):
            await fn()
        best = min(best, (time.perf_counter() - started) / number)
    return best


async def measure(number: int) -> list[tuple[str, float, str]]:
    """(operation, seconds per op, target) rows; the first two are the baselines."""
    rows: list[tuple[str, float, str]] = []
    obj = Settings()
    raw_singleton = providers.Singleton(Settings)
    raw_singleton()
    raw_factory = providers.Factory(Request, clock=providers.Singleton(Clock))
    rows.append(("plain attribute lookup (baseline)", per_call(lambda: obj.debug, number), ""))
    rows.append(
        (
            "raw dependency-injector Singleton() (baseline)",
            per_call(lambda: raw_singleton(), number),
            "",
        )
    )
    rows.append(
        (
            "raw dependency-injector Factory() with 1 dep",
            per_call(lambda: raw_factory(), number),
            "",
        )
    )

    container = build()
    resolve = container.resolve
    resolve(SETTINGS)
    rows.append(
        ("resolve singleton (app)", per_call(lambda: resolve(SETTINGS), number), "<= 3x raw")
    )
    resolve(REQUEST)
    rows.append(
        ("resolve transient (1 dep)", per_call(lambda: resolve(REQUEST), number), "vs raw Factory")
    )

    agent = container.create_scope("agent")
    message = agent.create_scope("message")
    message.resolve(STATE)
    in_message = message.resolve
    rows.append(
        ("resolve scoped (message, cached)", per_call(lambda: in_message(STATE), number), "")
    )
    rows.append(
        (
            "resolve singleton from a message scope",
            per_call(lambda: in_message(SETTINGS), number),
            "",
        )
    )
    await message.aclose()

    aresolve = container.aresolve
    rows.append(
        ("await aresolve singleton", await per_call_async(lambda: aresolve(SETTINGS), number), "")
    )

    async def open_close() -> None:
        async with agent.create_scope("message"):
            pass

    rows.append(
        ("message scope open + close", await per_call_async(open_close, number // 4), "< 20 µs")
    )

    async def open_resolve_close() -> None:
        async with agent.create_scope("message") as scope:
            scope.resolve(STATE)

    rows.append(
        (
            "message scope open + first scoped resolve + close",
            await per_call_async(open_resolve_close, number // 10),
            "",
        )
    )

    async def with_resource() -> AsyncIterator[Clock]:
        yield Clock()

    container.register(RESOURCE, with_resource, scope="message")

    async def open_resource_close() -> None:
        async with agent.create_scope("message") as scope:
            await scope.aresolve(RESOURCE)

    rows.append(
        (
            "message scope + async resource setup/teardown",
            await per_call_async(open_resource_close, number // 20),
            "",
        )
    )

    construct = container.construct
    await construct(FivePlugin, owner="bench")
    rows.append(
        (
            "construct plugin, 5 injected params",
            await per_call_async(lambda: construct(FivePlugin, owner="bench"), number // 10),
            "",
        )
    )
    db, replica = container.resolve(DATABASE), container.resolve(REPLICA)
    clock, cache, metrics = (
        container.resolve(CLOCK),
        container.resolve(CACHE),
        container.resolve(METRICS),
    )

    def by_hand() -> FivePlugin:
        return FivePlugin(db, replica, clock, cache, metrics)

    rows.append(("  same plugin built by hand (reference)", per_call(by_hand, number), ""))
    await agent.aclose()
    await container.aclose()
    return rows


def render(rows: list[tuple[str, float, str]], console: Console) -> None:
    attr = rows[0][1]
    raw = rows[1][1]
    table = Table(title="agenthost DI: cost per operation (best of 5)")
    table.add_column("operation")
    table.add_column("ns/op", justify="right")
    table.add_column("x attribute lookup", justify="right")
    table.add_column("x raw DI provider", justify="right")
    table.add_column("target")
    for name, seconds, target in rows:
        verdict = ""
        if target == "vs raw Factory":
            verdict = f": {seconds / rows[2][1]:.2f}x"
        elif target.startswith("<="):
            verdict = " ok" if seconds / raw <= 3 else " MISSED"
        elif target.startswith("<"):
            verdict = " ok" if seconds < 20e-6 else " MISSED"
        table.add_row(
            name,
            f"{seconds * 1e9:,.0f}",
            f"{seconds / attr:,.1f}",
            f"{seconds / raw:,.2f}",
            target + verdict,
        )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (a few seconds)")
    args = parser.parse_args()
    number = 20_000 if args.quick else 200_000
    console = Console(width=150)
    console.print(
        f"python {platform.python_version()} on {platform.machine()} {platform.system()},"
        f" {os.cpu_count()} CPUs; {number:,} iterations per row (fewer for scope rows)"
    )
    rows = asyncio.run(measure(number))
    render(rows, console)


if __name__ == "__main__":
    main()
