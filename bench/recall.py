"""What the recall and knowledge providers cost a message, in the running pipeline and alone.

Four hosts of `bench/pipeline.py`'s default configuration (SQLite file, ELIZA, hashed local
embeddings, the audit trail on), each fed messages into one room, each reply awaited, in
alternating rounds (this machine's load drifts: a round's hosts share its conditions):

- **default**: every builtin plugin;
- **recall answers nothing**: recall's provider returns at once (the provider machinery without
  its work: no search, so no vector index or label set is kept either);
- **recall off** and **recall, knowledge off**.

The CPU a message of each (all threads, median over rounds) gives recall's cost (default minus
recall off), its provider's work with the upkeep of the store's index and label sets for it
(default minus "answers nothing") and knowledge's (recall off minus both off). Then each
provider called alone, on the room's latest user messages (`--documents N`: N knowledge
documents of ~15 chunks added first, half shared, half the agent's).

    .venv/bin/python bench/recall.py                  # rooms of 300 and 1,000 messages
    .venv/bin/python bench/recall.py --pre 1000 --documents 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).parent))

import pipeline as bp

from builtin_plugins.recall.plugin import RecallPlugin
from contracts.agent import ProviderResult, State
from contracts.memory import Memory, MemoryQuery

console = Console(width=150)
_relevant = RecallPlugin.relevant


async def _maybe_nothing(self: RecallPlugin, message: Memory, state: State) -> ProviderResult:
    """Recall's provider, or nothing at once on the host marked so."""
    if getattr(self, "_answers_nothing", False):
        return ProviderResult()
    return await _relevant(self, message, state)


RecallPlugin.relevant = _maybe_nothing  # type: ignore[method-assign]

HOSTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "recall answers nothing": (),
    "recall off": ("recall",),
    "recall, knowledge off": ("recall", "knowledge"),
}


FLOOR = "raw floor"
RECALL_FLOOR = "raw floor + recall"


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


async def add_documents(host: Any, count: int) -> None:
    words = [
        "garden",
        "gate",
        "code",
        "wifi",
        "password",
        "bicycle",
        "shed",
        "tax",
        "forms",
        "april",
        "roman",
        "navy",
        "history",
        "cat",
        "biscuit",
        "shelter",
    ]
    rnd = random.Random(1)
    store = host.loader.loaded["knowledge"].instance.store
    agent = host.agents.get("Eliza").agent_id
    for d in range(count):
        text = " ".join(rnd.choice(words) for _ in range(2000)) + "."
        await store.add_text(text, f"doc{d}.md", agent if d % 2 else None)


async def in_pipeline(directory: Path, pre: int, chunk: int, rounds: int, documents: int) -> Any:
    hosts = {}
    for index, (name, without) in enumerate(HOSTS.items()):
        hosts[name] = await bp.start_host(directory / f"h{index}", "hashed", without=without)
    hosts["recall answers nothing"].loader.loaded["recall"].instance._answers_nothing = True
    rooms = {name: uuid4() for name in hosts}
    # the raw work recall stands for (bench/pipeline.py's floor rows), in the same rounds
    floor = bp.Floor(directory, bp.embedder(hosts["default"]))
    (directory / "recall").mkdir()
    recall_floor = bp.RecallFloor(directory, bp.embedder(hosts["default"]))
    floors = {FLOOR: floor, RECALL_FLOOR: recall_floor}
    cpu: dict[str, list[float]] = {name: [] for name in [*hosts, *floors]}
    try:
        for name, host in hosts.items():
            if documents and "knowledge" in host.loader.loaded:
                await add_documents(host, documents)
            await bp.one_room(host, pre, rooms[name], [])
        for raw in floors.values():
            await raw.chunk(pre, [])
        names = [*hosts, *floors]
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                started = time.process_time()
                if name in floors:
                    await floors[name].chunk(chunk, [])
                else:
                    await bp.one_room(hosts[name], chunk, rooms[name], [])
                cpu[name].append((time.process_time() - started) / chunk)
        alone = await providers_alone(hosts["default"], rooms["default"])
    finally:
        for host in hosts.values():
            await host.stop()
    return {name: statistics.median(values) for name, values in cpu.items()}, alone


async def providers_alone(host: Any, room: Any, calls: int = 2000) -> dict[str, float]:
    """CPU seconds a call of each provider called directly on the room's latest messages."""
    recall = host.loader.loaded["recall"].instance
    knowledge = host.loader.loaded["knowledge"].instance
    agent = host.agents.get("Eliza").agent_id
    rows = await recall.database.get_memories(
        MemoryQuery(room_id=room, limit=200, with_embeddings=True)
    )
    messages = [m for m in rows if m.entity_id != agent][:50]
    state = State(values={"agent_name": "Eliza"})
    found = {}
    for name, provider in (("recall", recall.relevant), ("knowledge", knowledge.relevant)):
        for message in messages:  # warm
            await provider(message, state)
        started = time.process_time()
        for i in range(calls):
            await provider(messages[i % len(messages)], state)
        found[name] = (time.process_time() - started) / calls
    return found


async def run(args: argparse.Namespace) -> None:
    table = Table(title="Recall and knowledge per message (CPU of all threads, one room)")
    for column in ("messages before", "load", "measure", "CPU us/msg"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for pre in args.pre:
        at_start = load()
        with tempfile.TemporaryDirectory() as tmp:
            cpu, alone = await in_pipeline(Path(tmp), pre, args.chunk, args.rounds, args.documents)
        raw = cpu[RECALL_FLOOR] - cpu[FLOOR]
        both = cpu["default"] - cpu["recall, knowledge off"]
        rows = [
            *((f"pipeline: {name}", cpu[name]) for name in HOSTS),
            ("recall (default - recall off)", cpu["default"] - cpu["recall off"]),
            (
                "recall's provider work (default - answers nothing)",
                cpu["default"] - cpu["recall answers nothing"],
            ),
            ("knowledge (recall off - both off)", cpu["recall off"] - cpu["recall, knowledge off"]),
            (FLOOR, cpu[FLOOR]),
            (RECALL_FLOOR, cpu[RECALL_FLOOR]),
            ("recall's raw work (floor + recall - floor)", raw),
            ("recall + knowledge (default - both off)", both),
            ("recall + knowledge / their raw work", both / raw),
            ("recall called alone", alone["recall"]),
            ("knowledge called alone", alone["knowledge"]),
        ]
        for index, (label, seconds) in enumerate(rows):
            table.add_row(
                f"{pre:,}" if index == 0 else "",
                f"{at_start} / {load()}" if index == 0 else "",
                label,
                f"{seconds:.2f}x" if label.endswith("raw work") else f"{seconds * 1e6:,.0f}",
            )
        table.add_section()
    console.print(
        f"[dim]{args.rounds} rounds of {args.chunk} messages per host after the room's first"
        f" messages; knowledge documents: {args.documents}[/dim]"
    )
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--pre", type=int, nargs="+", default=[300, 1000], help="messages in the room first"
    )
    parser.add_argument("--chunk", type=int, default=100, help="messages per host per round")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--documents", type=int, default=0, help="knowledge documents added")
    args = parser.parse_args()
    from loguru import logger

    logger.remove()
    logger.add(lambda _: None, level="ERROR")
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
