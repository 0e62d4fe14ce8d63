"""Event bus benchmark: emit with 0, 1 and 10 handlers against a plain call and raw pluggy.

Baselines measured in the same run: a plain function call with the payload, a raw pluggy
hook call with the same number of implementations (``pm.hook.on_agent_started(payload=...)``),
and for async handlers a plain sequential ``for handler in handlers: await handler(payload)``
loop over the same handlers (what the bus does, minus isolation, timeouts and ordering).
``bus.emit`` is driven two ways: inside a running event loop (``await bus.emit(...)`` in a
loop, what the runtime does) and by hand (``coro.send(None)``: an emit whose handlers are sync
never suspends, so this isolates the bus from the event loop). Targets (issue 20): emit with
sync handlers <= 0.5x the raw pluggy call; with N async handlers <= 1.5x the plain await loop.
The async rows and their baselines are timed in alternation, round after round, so that all
see the same load, in CPU time of the thread (the machine is shared: wall time would count
other jobs' time slices).

    .venv/bin/python bench/events.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
import timeit
from collections.abc import Callable
from typing import Any
from uuid import uuid4

import pluggy
from rich.console import Console
from rich.table import Table

from contracts.events import AGENT_STARTED, AgentPayload
from host import hookspecs
from host.events import EventBus

PAYLOAD = AgentPayload(agent_id=uuid4(), name="bench")


def best(fn: Callable[[], object], number: int) -> float:
    """Best of 5 runs, seconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=5)) / number


def pluggy_call(impls: int) -> Callable[[], object]:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for index in range(impls):

        class Impl:
            @hookspecs.hookimpl
            def on_agent_started(self, payload: AgentPayload) -> None:
                pass

        pm.register(Impl(), name=f"impl{index}")
    hook = pm.hook.on_agent_started
    return lambda: hook(payload=PAYLOAD)


def bus_with(handlers: int, *, asynchronous: bool = False, detached: bool = False) -> EventBus:
    bus = EventBus()
    for _ in range(handlers):
        if asynchronous:

            async def handler(payload: AgentPayload) -> None:
                pass

        else:

            def handler(payload: AgentPayload) -> None:  # type: ignore[misc]
                pass

        bus.on(AGENT_STARTED, handler, detached=detached)
    return bus


def by_hand(bus: EventBus) -> Callable[[], object]:
    emit = bus.emit

    def run() -> None:
        coro = emit(AGENT_STARTED, PAYLOAD)
        try:  # noqa: SIM105 - contextlib.suppress would add a context manager to every call
            coro.send(None)
        except StopIteration:
            pass

    return run


def handlers_of(bus: EventBus) -> list[Callable[[AgentPayload], Any]]:
    return [sub.handler for sub in bus.subscriptions(AGENT_STARTED)]


def alternating(bus: EventBus, number: int, rounds: int = 9) -> tuple[float, float, float]:
    """Seconds per emit of `bus`, of a plain await loop over its handlers in an async function
    called like emit, and of the same loop inlined in the caller: timed in turn, round after
    round."""
    handlers = handlers_of(bus)

    async def plain_emit(event: object, payload: AgentPayload) -> None:
        for handler in handlers:
            await handler(payload)

    async def main() -> tuple[float, float, float]:
        emit = bus.emit
        best = [float("inf")] * 3
        for _ in range(rounds):
            started = time.thread_time()
            for _ in range(number):
                await emit(AGENT_STARTED, PAYLOAD)
            best[0] = min(best[0], (time.thread_time() - started) / number)
            started = time.thread_time()
            for _ in range(number):
                await plain_emit(AGENT_STARTED, PAYLOAD)
            best[1] = min(best[1], (time.thread_time() - started) / number)
            started = time.thread_time()
            for _ in range(number):
                for handler in handlers:
                    await handler(PAYLOAD)
            best[2] = min(best[2], (time.thread_time() - started) / number)
        return best[0], best[1], best[2]

    return asyncio.run(main())


def in_loop(bus: EventBus, number: int) -> float:
    async def main() -> float:
        emit = bus.emit
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(number):
                await emit(AGENT_STARTED, PAYLOAD)
            await bus.drain()  # detached runs count too
            timings.append((time.perf_counter() - started) / number)
        return min(timings)

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x fewer iterations")
    args = parser.parse_args()
    number = 20_000 if args.quick else 200_000

    def plain_handler(payload: AgentPayload) -> None:
        pass

    plain = best(lambda: plain_handler(PAYLOAD), number)
    rows: list[tuple[str, float, float | None, str]] = [
        ("plain function call (baseline)", plain, None, "")
    ]
    for count in (0, 1, 10):
        raw = best(pluggy_call(count), number)
        rows.append((f"raw pluggy hook, {count} impls (baseline)", raw, raw, ""))
        bus = bus_with(count)
        hand = best(by_hand(bus), number)
        loop = in_loop(bus, number)
        target = ""
        if count:
            target = f"<= 0.5x raw pluggy: {'met' if loop / raw <= 0.5 else 'NOT met'}"
        rows.append((f"bus.emit, {count} sync handlers (send by hand)", hand, raw, ""))
        rows.append((f"await bus.emit, {count} sync handlers (event loop)", loop, raw, target))
    for count in (1, 10):
        emitted, plain_loop, inlined = alternating(bus_with(count, asynchronous=True), number)
        verdict = "met" if emitted / plain_loop <= 1.5 else "NOT met"
        rows.append((f"{count} async handlers: plain await loop, inlined", inlined, plain_loop, ""))
        rows.append(
            (
                f"{count} async handlers: plain await loop in an async def (baseline)",
                plain_loop,
                plain_loop,
                "",
            )
        )
        rows.append(
            (
                f"await bus.emit, {count} async handlers (event loop)",
                emitted,
                plain_loop,
                f"<= 1.5x plain await loop: {verdict}",
            )
        )
    raw = best(pluggy_call(1), number)
    loop = in_loop(bus_with(1, asynchronous=True, detached=True), number)
    rows.append(("await bus.emit, 1 detached async handler (incl. drain)", loop, raw, ""))

    table = Table(title=f"event bus, best of 5 x {number:,} calls")
    for column in ("operation", "ns/op", "x plain call", "x baseline above", "target"):
        table.add_column(column, justify="left" if column in ("operation", "target") else "right")
    for name, seconds, baseline, target in rows:
        table.add_row(
            name,
            f"{seconds * 1e9:,.0f}",
            f"{seconds / plain:.1f}",
            f"{seconds / baseline:.2f}" if baseline else "",
            target,
        )
    console = Console(width=150)
    console.print(table)
    console.print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs, pluggy {pluggy.__version__}"
    )


if __name__ == "__main__":
    main()
