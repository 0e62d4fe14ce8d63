"""An agent's rooms: the store's grouped `room_summaries` against a pass over its memories.

What ``GET /agents/{agent}/rooms`` and the console's room pickers cost. Writes N memories of one
agent over R rooms (and as many of another agent), then times both ways of listing the agent's
rooms on SQLite and in memory. Baseline in the same run: the pass over the memories
(``MemoryManager.get_memories_stream``, what the console did before the grouped query).

    .venv/bin/python bench/rooms.py [--memories 20000] [--rooms 50] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console
from rich.table import Table

from builtin_plugins.inmemory import InMemoryAdapter
from builtin_plugins.sqlite import SqliteAdapter
from contracts.memory import Content, Memory, MemoryQuery
from contracts.storage import DatabaseAdapter
from host.memory import MemoryManager


async def _best(repeat: int, call: Callable[[], Awaitable[Any]]) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        best = min(best, time.perf_counter() - started)
    return best


async def _measure(
    db: DatabaseAdapter, memories: int, rooms: int, repeat: int
) -> tuple[float, float]:
    agent, other = uuid4(), uuid4()
    room_ids = [uuid4() for _ in range(rooms)]
    for owner in (agent, other):
        batch = [
            Memory(
                agent_id=owner,
                entity_id=uuid4(),
                room_id=room_ids[i % rooms],
                content=Content(text=f"message {i} " * 10),
            )
            for i in range(memories)
        ]
        for start in range(0, memories, 1000):
            await db.create_memories_batch(batch[start : start + 1000])

    async def scan() -> int:
        seen = set()
        manager = MemoryManager(db, agent_id=agent)
        async for memory in manager.get_memories_stream(MemoryQuery(order="asc")):
            seen.add(memory.room_id)
        return len(seen)

    async def grouped() -> int:
        return len(await db.room_summaries(MemoryQuery(agent_id=agent)))

    assert await scan() == await grouped() == rooms
    return await _best(repeat, scan), await _best(repeat, grouped)


async def run(memories: int, rooms: int, repeat: int) -> None:
    table = Table(
        title=f"an agent's rooms: {memories} memories over {rooms} rooms (+ another agent's)"
    )
    for column in ("store", "way", "time", "ratio to the pass"):
        table.add_column(column, justify="right" if column != "way" else "left")
    with tempfile.TemporaryDirectory() as folder:
        stores: list[tuple[str, DatabaseAdapter]] = [
            ("sqlite", await SqliteAdapter.open(Path(folder) / "rooms.sqlite3")),
            ("inmemory", InMemoryAdapter()),
        ]
        for name, db in stores:
            try:
                scan, grouped = await _measure(db, memories, rooms, repeat)
            finally:
                await db.close()
            table.add_row(
                name, "pass over the memories (baseline)", f"{scan * 1e3:.1f} ms", "1.00x"
            )
            table.add_row(
                name, "room_summaries", f"{grouped * 1e3:.1f} ms", f"{grouped / scan:.3f}x"
            )
    Console().print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memories", type=int, default=20_000)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(run(args.memories, args.rooms, args.repeat))


if __name__ == "__main__":
    main()
