"""Builders and reference computations shared by the storage tests."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from uuid import UUID, uuid4

import numpy as np

from contracts.memory import Content, Memory

T = TypeVar("T")

AGENT = UUID("00000000-0000-4000-8000-00000000000a")
OTHER_AGENT = UUID("00000000-0000-4000-8000-00000000000b")
ENTITY = UUID("00000000-0000-4000-8000-0000000000e1")
ROOM = UUID("00000000-0000-4000-8000-0000000000f1")
OTHER_ROOM = UUID("00000000-0000-4000-8000-0000000000f2")
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_memory(
    i: int = 0,
    *,
    embedding: Sequence[float] | None = None,
    table_name: str = "messages",
    agent_id: UUID = AGENT,
    room_id: UUID = ROOM,
    entity_id: UUID = ENTITY,
    created_at: datetime | None = None,
    memory_id: UUID | None = None,
    **content: Any,
) -> Memory:
    """A memory numbered `i` (text ``m{i}``, created ``T0 + i seconds`` unless given)."""
    return Memory(
        id=memory_id or uuid4(),
        agent_id=agent_id,
        entity_id=entity_id,
        room_id=room_id,
        table_name=table_name,
        content=Content(text=f"m{i}", **content),
        embedding=None if embedding is None else list(embedding),
        metadata={"i": i, "nested": {"tags": ["a", "b"]}},
        created_at=created_at or T0 + timedelta(seconds=i),
    )


def f32(values: Sequence[float]) -> list[float]:
    """`values` rounded to float32, as stored."""
    result: list[float] = np.asarray(values, dtype=np.float32).tolist()
    return result


def stored(memory: Memory, table_name: str | None = None) -> Memory:
    """What a store gives back for `memory`: float32 embedding, maybe another table."""
    update: dict[str, Any] = {}
    if memory.embedding is not None:
        update["embedding"] = f32(memory.embedding)
    if table_name is not None:
        update["table_name"] = table_name
    return memory.model_copy(update=update)


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    if na == 0 or nb == 0:
        return 0.0
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on a fresh event loop (hypothesis examples are synchronous)."""
    return asyncio.run(coro)


SEARCH_CONNECTIONS = ("writes", "reader")
"""The connections a SQLite search on the caller's thread reads from: the writes' connection
when the worker is not using it (its page cache warm), else the read-only one."""


@contextlib.contextmanager
def searching_through(adapter: Any, via: str, proxy: Callable[[Any], Any]) -> Iterator[None]:
    """While open, a SQLite `adapter`'s searches on the caller's thread read through `proxy`
    (wrapping the connection) from `via`: ``"writes"`` (the writes' connection, free), or
    ``"reader"`` (the read-only one: small writes and reads then go to the worker, as while it
    holds the writes' connection)."""
    attribute = "_conn" if via == "writes" else "_reader"
    real, inline = getattr(adapter, attribute), adapter._inline
    setattr(adapter, attribute, proxy(real))
    if via == "reader":
        adapter._inline = False
    try:
        yield
    finally:
        setattr(adapter, attribute, real)
        adapter._inline = inline
