"""The provider machinery's cost a message: state composition around providers that do no work.

`StateComposer.compose` of one agent with the default configuration's providers: the builtin
``recent_messages`` (its history read answered at once: no rows) and two plugin providers
cached per message as recall and knowledge are (``CachePolicy(ttl=300, scope="message")``:
each message a miss), each returning a small `ProviderResult` at once. Baseline in the same
run: the same three provider functions awaited one after the other and their results merged
into a `State`, no timeouts, no cache, no tasks. What is left is the machinery: the tasks that
run providers in parallel, their deadlines, the cache's single flight and store.

Rows: the composition with the cache (the default configuration), without it (``cache: None``),
and with one provider only (the builtin). Rounds alternate; figures are medians over rounds.

    .venv/bin/python bench/providers.py [-n 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from loguru import logger
from rich.console import Console
from rich.table import Table

from contracts.agent import CachePolicy, Provider, ProviderResult, State
from contracts.config import CacheSettings
from contracts.memory import Content, Memory
from host.cache import ProviderCache
from host.components import ComponentRegistry
from host.state import StateComposer
from host.test_doubles import composer_alone

AGENT = uuid.uuid4()


async def no_history() -> list[Memory]:
    """The raw side's history read: none, as the composer's (`composer_alone`)."""
    return []


async def recall(message: Memory, state: State) -> ProviderResult:
    return ProviderResult(text="# Recalled\nuser: hello", values={"recalled": 1})


async def knowledge(message: Memory, state: State) -> ProviderResult:
    return ProviderResult(text="# Knowledge\nthe gate code", values={"knowledge": 1})


def composer(cached: bool, plugins: bool) -> StateComposer:
    cache = ProviderCache(CacheSettings()) if cached else None
    components = ComponentRegistry(cache)
    if plugins:
        policy = CachePolicy(ttl=300.0, scope="message")
        components.add("recall", providers=[Provider("recall", recall, cache=policy)])
        components.add("knowledge", providers=[Provider("knowledge", knowledge, cache=policy)])
    return composer_alone(components, cache, agent_id=AGENT)


def messages(n: int) -> list[Memory]:
    room, entity = uuid.uuid4(), uuid.uuid4()
    return [
        Memory(
            id=uuid.uuid4(),
            agent_id=AGENT,
            room_id=room,
            entity_id=entity,
            content=Content(text="hello"),
        )
        for _ in range(n)
    ]


async def raw(message: Memory) -> State:
    """The floor: the providers' functions awaited in turn, their results merged."""
    state = State()
    await no_history()
    outcomes = [ProviderResult()]
    outcomes.append(await recall(message, state))
    outcomes.append(await knowledge(message, state))
    state.text = "\n\n".join(o.text for o in outcomes if o.text)
    for outcome in outcomes:
        state.values.update(outcome.values)
    return state


Run = Callable[[Memory], Coroutine[Any, Any, State]]


async def timed(run: Run, batch: list[Memory]) -> float:
    """CPU microseconds a message over `batch`."""
    started = time.process_time()
    for message in batch:
        await run(message)
    return (time.process_time() - started) / len(batch) * 1e6


async def main(n: int, rounds: int) -> None:
    logger.remove()
    scenarios: dict[str, Run] = {
        "raw: 3 provider functions awaited in turn": raw,
        "compose, 3 providers, 2 cached per message (default)": composer(True, True).compose,
        "compose, 3 providers, no cache": composer(False, True).compose,
        "compose, the builtin provider alone": composer(False, False).compose,
    }
    per_round = n // rounds
    figures: dict[str, list[float]] = {name: [] for name in scenarios}
    ratios: dict[str, list[float]] = {name: [] for name in scenarios}
    for run in scenarios.values():  # warm up
        await timed(run, messages(200))
    for _ in range(rounds):
        us = {name: await timed(run, messages(per_round)) for name, run in scenarios.items()}
        floor = us["raw: 3 provider functions awaited in turn"]
        for name, value in us.items():
            figures[name].append(value)
            ratios[name].append(value / floor)
    table = Table(title=f"Provider machinery a message, {per_round * rounds:,} messages")
    for column in ("scenario", "CPU us/msg", "x raw", "machinery us/msg"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    floor = statistics.median(figures["raw: 3 provider functions awaited in turn"])
    for name in scenarios:
        us = statistics.median(figures[name])
        table.add_row(
            name, f"{us:.1f}", f"{statistics.median(ratios[name]):.2f}x", f"{us - floor:.1f}"
        )
    console = Console(width=120)
    console.print(table)
    console.print("load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.rounds))
