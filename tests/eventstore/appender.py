"""A separate process appending to one aggregate with optimistic retries (used by
test_eventstore_processes.py). Usage: ``python -m tests.eventstore.appender ENGINE TARGET
WRITER COUNT``; prints the number of conflicts it retried."""

from __future__ import annotations

import asyncio
import sys

from contracts.eventstore import ConcurrencyError, DomainEvent, EventStore
from host.eventstore import PostgresEventStore, SqliteEventStore


async def run(engine: str, target: str, writer: str, count: int) -> int:
    store: EventStore
    if engine == "sqlite":
        store = await SqliteEventStore.open(target)
    else:
        store = await PostgresEventStore.connect(target, max_size=2)
    conflicts = 0
    try:
        for i in range(count):
            while True:
                version = await store.get_version("shared")
                try:
                    await store.append_events(
                        "shared",
                        [
                            DomainEvent(
                                aggregate_id="shared", event_type="t", data={"w": writer, "i": i}
                            )
                        ],
                        version,
                    )
                    break
                except ConcurrencyError:
                    conflicts += 1
    finally:
        await store.close()
    return conflicts


if __name__ == "__main__":
    engine, target, writer, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    print(asyncio.run(run(engine, target, writer, count)))
