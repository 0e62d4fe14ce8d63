"""Secret scrubbing on the audit trail's hot path: what masking costs per recorded event.

A real host (ELIZA + SQLite + audit) holds a conversation; its recorded events (about 7 a
message: received, model calls, memories, sent) are the texts measured. Each store append
scrubs every event's JSON text (`host.secrets.scrub_json`); the baseline is what the audit
trail already pays per event to make that text (pydantic-core serializing the payload data),
measured in the same run on the same events:

- no secret registered (the scrub is one truth test);
- 3 secrets registered, none in the events (one precompiled regex search per text);
- 3 secrets registered, one event in 7 holding one (that event decoded, masked, re-encoded).

Then the whole path: ``process_message`` with the audit trail on one host, batches alternating
(ABBA) between no secret registered and 3 registered (every log line, event and error text
scrubbed), the median of the per-round ratios (wall and CPU), as bench/eventstore.py measures
the audit overhead.

    .venv/bin/python bench/scrubbing.py           # 30 messages, best of 7 rounds
    .venv/bin/python bench/scrubbing.py --quick   # 10 messages, best of 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import uuid4

from pydantic_core import to_json
from rich.console import Console
from rich.table import Table

from contracts.eventstore import EVENT_STORE
from host.app import Host
from host.secrets import SECRETS as REGISTRY
from host.secrets import SecretRegistry
from host.testing import offline_config

TEXTS = ["I feel sad about my job", "My mother never listens to me", "Can you help me"]
SECRETS = ("sk-proj-0123456789abcdefghijklmnop", "postgres-pass-9f8e7d6c", "hf_tokenABCDEFGH1234")


async def recorded(directory: Path, messages: int) -> list[dict[str, Any]]:
    """The data of every event the audit trail records for `messages` messages."""
    os.environ["AGENTHOST_DATA_DIR"] = str(directory)
    config = offline_config(
        directory, "audit", http={"enabled": False}, logging={"level": "WARNING"}
    )
    host = Host(config)
    await host.start()
    try:
        assert host.agents is not None
        runtime = host.agents.get("Eliza")
        room, user = uuid4(), uuid4()
        for i in range(messages):
            message = runtime.new_message(TEXTS[i % 3], room_id=room, entity_id=user)
            await runtime.process_message(message)
        await host.loader.loaded["audit"].instance.flush()  # type: ignore[attr-defined]
        store = await host.container.aresolve(EVENT_STORE)
        return [e.data for e in await store.read_all(limit=1_000_000)]
    finally:
        await host.stop()


def best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 messages, best of 3")
    args = parser.parse_args()
    messages, rounds = (10, 3) if args.quick else (30, 7)
    from loguru import logger

    logger.remove()
    logger.add(lambda _: None, level="ERROR")
    with tempfile.TemporaryDirectory() as directory:
        events = asyncio.run(recorded(Path(directory), messages))
    texts = [to_json(data).decode() for data in events]
    leaky = [
        to_json({**data, "error": f"key {SECRETS[0]}"}).decode() if i % 7 == 0 else texts[i]
        for i, data in enumerate(events)
    ]
    repeat = max(1, 20_000 // len(texts))
    none, three = SecretRegistry(), SecretRegistry()
    three.add(SECRETS)

    def encode() -> None:
        for _ in range(repeat):
            for data in events:
                to_json(data)

    def scrub(registry: SecretRegistry, batch: list[str]) -> Callable[[], None]:
        def run() -> None:
            for _ in range(repeat):
                for text in batch:
                    registry.scrub_json(text)

        return run

    count = repeat * len(texts)
    baseline = best(encode, rounds)
    rows = [
        ("encode the event data (baseline)", baseline),
        ("scrub, no secret registered", best(scrub(none, texts), rounds)),
        ("scrub, 3 secrets, none present", best(scrub(three, texts), rounds)),
        ("scrub, 3 secrets, 1 event in 7 has one", best(scrub(three, leaky), rounds)),
    ]
    size = sum(map(len, texts)) / len(texts)
    table = Table(
        title=f"secret scrubbing per audit event ({len(texts)} events of {messages} messages,"
        f" {size:.0f} chars on average; best of {rounds})"
    )
    for column in ("scenario", "µs/event", "x baseline"):
        table.add_column(column, justify="left" if column == "scenario" else "right")
    for name, seconds in rows:
        table.add_row(name, f"{1e6 * seconds / count:.2f}", f"{seconds / baseline:.2f}x")
    console = Console()
    console.print(table)
    with tempfile.TemporaryDirectory() as directory:
        console.print(asyncio.run(path_overhead(Path(directory), 8 if args.quick else 20, 40)))
    console.print(f"{platform.python_implementation()} {platform.python_version()}")


async def path_overhead(directory: Path, rounds: int, batch: int) -> Table:
    """process_message (ELIZA + SQLite + audit) with 3 secrets registered vs none: paired."""
    from eventstore import _batch, _host  # bench/eventstore.py: the audit overhead's own A/B

    host = await _host(directory, True)
    rooms, user = [uuid4() for _ in range(10)], uuid4()
    walls: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    try:
        await _batch(host, rooms, user, 50, 0)  # warm-up
        for index in range(rounds):
            for secrets in (False, True) if index % 2 == 0 else (True, False):
                REGISTRY.clear()
                if secrets:
                    REGISTRY.add(SECRETS)
                wall, cpu = await _batch(host, rooms, user, batch, 50 + index * batch)
                walls[secrets].append(wall)
                cpus[secrets].append(cpu)
    finally:
        REGISTRY.clear()
        await host.stop()
    table = Table(
        title=f"process_message with the audit trail, 3 secrets registered vs none (paired A/B:"
        f" {rounds} rounds of {batch} messages)"
    )
    for column in ("secrets", "ms/message", "CPU ms/message", "wall vs none", "CPU vs none"):
        table.add_column(column, justify="left" if column == "secrets" else "right")
    for secrets in (False, True):
        wall = [b / a - 1 for a, b in zip(walls[False], walls[True], strict=True)]
        cpu = [b / max(a, 1e-9) - 1 for a, b in zip(cpus[False], cpus[True], strict=True)]
        table.add_row(
            "3 registered" if secrets else "none (baseline)",
            f"{1000 * statistics.median(walls[secrets]) / batch:.3f}",
            f"{1000 * statistics.median(cpus[secrets]) / batch:.3f}",
            f"{statistics.median(wall):+.1%}" if secrets else "1.00x",
            f"{statistics.median(cpu):+.1%}" if secrets else "1.00x",
        )
    return table


if __name__ == "__main__":
    main()
