"""Provider cache benchmark: state composition with and without the cache, and the hit path.

Composes state for N messages spread over R rooms, each through P providers that cost 1 ms of
waiting (I/O-like) each, providers run in parallel as the runtime does. Measured two ways: a bare
composition loop around the cache (the cache alone), and the real `AgentRuntime.compose_state` of
a running host (SQLite store, eliza agent; it also runs the builtin recent-messages provider,
uncached, against SQLite). Baselines in the same run: the uncached composition, and a plain dict
lookup for the hit path.

    .venv/bin/python bench/cache.py [--messages 1000] [--rooms 10] [--providers 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import tempfile
import time
import timeit
import uuid
from collections.abc import Iterator
from pathlib import Path

from loguru import logger
from rich.console import Console
from rich.table import Table

from contracts.agent import CachePolicy, Provider, ProviderResult, State
from contracts.cache import CacheContext
from contracts.config import CacheSettings
from contracts.memory import Memory
from host.app import Host
from host.cache import ProviderCache
from host.testing import offline_config


@contextlib.contextmanager
def logger_disabled() -> Iterator[None]:
    """The host logs its start and stop at INFO; keep the table readable."""
    logger.disable("")
    try:
        yield
    finally:
        logger.enable("")


async def compose(
    cache: ProviderCache | None, providers: list[str], context: CacheContext
) -> list[str]:
    async def cost(name: str) -> str:
        await asyncio.sleep(0.001)
        return f"{name}:{context.room_id}"

    async def one(name: str) -> str:
        if cache is None:
            return await cost(name)
        return await cache.get_or_compute(name, context, lambda: cost(name))

    return list(await asyncio.gather(*(one(name) for name in providers)))


async def run_messages(
    cache: ProviderCache | None, messages: int, rooms: int, providers: list[str]
) -> float:
    started = time.perf_counter()
    for i in range(messages):
        context = CacheContext(agent_id="agent", room_id=f"room-{i % rooms}", message_id=str(i))
        await compose(cache, providers, context)
    return time.perf_counter() - started


async def run_runtime(messages: int, rooms: int, providers: list[str], ttl: float | None) -> float:
    """`compose_state` of a real agent runtime for `messages` messages; seconds (best of 3)."""
    with tempfile.TemporaryDirectory() as data:
        host = Host(offline_config(Path(data)))
        await host.start()
        try:
            assert host.agents is not None
            runtime = host.agents.get("eliza")

            def provider(name: str) -> Provider:
                async def get(message: Memory, state: State) -> ProviderResult:
                    await asyncio.sleep(0.001)
                    return ProviderResult(text=f"{name}:{message.room_id}")

                return Provider(name, get, cache=CachePolicy(ttl=ttl))

            host.components.add("bench", providers=[provider(name) for name in providers])
            timings = []
            for _ in range(3):  # best of 3, each in fresh rooms (the first messages miss)
                room_ids = [uuid.uuid4() for _ in range(rooms)]
                user = uuid.uuid4()
                started = time.perf_counter()
                for i in range(messages):
                    room_id = room_ids[i % rooms]
                    await runtime.compose_state(
                        runtime.new_message("hi", room_id=room_id, entity_id=user)
                    )
                timings.append(time.perf_counter() - started)
            return min(timings)
        finally:
            await host.stop()


def hit_path(repeat: int) -> tuple[float, float]:
    cache = ProviderCache(CacheSettings(max_entries=1000))
    cache.register("p", CachePolicy(ttl=3600))
    context = CacheContext(agent_id="agent", room_id="r")

    async def value() -> str:
        return "v"

    loop = asyncio.new_event_loop()
    loop.run_until_complete(cache.get_or_compute("p", context, value))
    coro_hit = cache.get_or_compute

    def cached() -> None:
        # Drive the coroutine by hand: a hit never suspends, so one send() completes it.
        coro = coro_hit("p", context, value)
        with contextlib.suppress(StopIteration):
            coro.send(None)

    plain = {("p", "agent", "r"): "v"}
    key = ("p", "agent", "r")
    t_dict = min(timeit.repeat(lambda: plain[key], number=repeat, repeat=5)) / repeat
    t_hit = min(timeit.repeat(cached, number=repeat, repeat=5)) / repeat
    loop.close()
    return t_hit, t_dict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--providers", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="200 messages")
    args = parser.parse_args()
    messages = 200 if args.quick else args.messages
    providers = [f"provider-{i}" for i in range(args.providers)]

    uncached = asyncio.run(run_messages(None, messages, args.rooms, providers))
    cache = ProviderCache(CacheSettings(max_entries=10_000))
    for name in providers:
        cache.register(name, CachePolicy(ttl=60))
    cached = asyncio.run(run_messages(cache, messages, args.rooms, providers))
    stats = cache.stats()
    t_hit, t_dict = hit_path(200_000)
    with logger_disabled():
        rt_uncached = asyncio.run(run_runtime(messages, args.rooms, providers, None))
        rt_cached = asyncio.run(run_runtime(messages, args.rooms, providers, 60))

    console = Console()
    table = Table(
        title=f"provider cache: {messages} messages, {args.rooms} rooms, "
        f"{args.providers} providers x 1 ms ({platform.python_version()}, {platform.machine()})"
    )
    table.add_column("case")
    table.add_column("time", justify="right")
    table.add_column("per message", justify="right")
    table.add_column("vs baseline", justify="right")
    table.add_row(
        "compose, no cache (baseline)",
        f"{uncached:.3f} s",
        f"{uncached / messages * 1e3:.3f} ms",
        "1.00x",
    )
    table.add_row(
        "compose, cache ttl=60s",
        f"{cached:.3f} s",
        f"{cached / messages * 1e3:.3f} ms",
        f"{uncached / cached:.1f}x faster",
    )
    table.add_row(
        "runtime compose_state, no cache (baseline)",
        f"{rt_uncached:.3f} s",
        f"{rt_uncached / messages * 1e3:.3f} ms",
        "1.00x",
    )
    table.add_row(
        "runtime compose_state, cache ttl=60s",
        f"{rt_cached:.3f} s",
        f"{rt_cached / messages * 1e3:.3f} ms",
        f"{rt_uncached / rt_cached:.1f}x faster",
    )
    # The scenario is the five 1 ms providers; the runtime case also runs the builtin
    # recent-messages provider (a SQLite query that depends on the message, so never cached),
    # whose cost stays in both of its rows: it is reported beside the verdict, not in it.
    verdict = "met" if uncached / cached >= 5 else "NOT met"
    table.add_row("dict lookup (baseline)", f"{t_dict * 1e9:.0f} ns", "", "1.00x")
    table.add_row("cache hit path", f"{t_hit * 1e9:.0f} ns", "", f"{t_hit / t_dict:.1f}x dict")
    console.print(table)
    console.print(
        f"hits={stats.hits} misses={stats.misses} hit ratio={stats.hit_ratio:.3f} "
        f"saved={stats.saved_seconds:.3f} s; target >= 5x faster with a 60 s TTL "
        f"({args.providers} providers x 1 ms): {verdict} ({uncached / cached:.1f}x); in the real "
        f"runtime, with its uncached recent-messages query: {rt_uncached / rt_cached:.1f}x"
    )


if __name__ == "__main__":
    main()
