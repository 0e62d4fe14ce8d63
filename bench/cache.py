"""Provider cache benchmark: state composition with and without the cache, and the hit path.

Composes state for N messages spread over R rooms, each through P providers that cost 1 ms of
waiting (I/O-like) each, providers run in parallel as the runtime does. Baselines in the same run:
the uncached composition, and a plain dict lookup for the hit path.

    .venv/bin/python bench/cache.py [--messages 1000] [--rooms 10] [--providers 5]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import platform
import time
import timeit

from rich.console import Console
from rich.table import Table

from contracts.agent import CachePolicy
from contracts.cache import CacheContext
from host.cache import ProviderCache


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


def hit_path(repeat: int) -> tuple[float, float]:
    cache = ProviderCache(max_entries=1000)
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
    cache = ProviderCache(max_entries=10_000)
    for name in providers:
        cache.register(name, CachePolicy(ttl=60))
    cached = asyncio.run(run_messages(cache, messages, args.rooms, providers))
    stats = cache.stats()
    t_hit, t_dict = hit_path(200_000)

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
    table.add_row("dict lookup (baseline)", f"{t_dict * 1e9:.0f} ns", "", "1.00x")
    table.add_row("cache hit path", f"{t_hit * 1e9:.0f} ns", "", f"{t_hit / t_dict:.1f}x dict")
    console.print(table)
    console.print(
        f"hits={stats.hits} misses={stats.misses} hit ratio={stats.hit_ratio:.3f} "
        f"saved={stats.saved_seconds:.3f} s"
    )


if __name__ == "__main__":
    main()
