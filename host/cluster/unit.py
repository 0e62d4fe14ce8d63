"""A message's unit of work in cluster mode: its writes held back, its ids deterministic.

While a worker processes a message, the agent's store is a `UnitAdapter`: memories created
(the incoming message, the reply, a plugin's) are kept in the current `Unit` instead of being
written, and the worker commits them with the room's progress in one transaction
(`RoomQueue.commit`), or drops them when its lease was lost. `unit_ids` gives the runtime ids
derived from the message id (uuid5), so a message processed again after a crash writes the same
ids (skipped if stored).

Reads go to the store (a memory created in the unit is found by id). Updates and deletes are
not held back: they go to the store at once (a plugin doing them must be idempotent).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from uuid import UUID, uuid4, uuid5

from contracts.memory import Memory
from contracts.storage import DuplicateMemoryError
from host.forwarding import ForwardingAdapter

__all__ = ["Unit", "UnitAdapter", "current_unit", "unit_ids", "working_on"]


@dataclass(slots=True)
class Unit:
    """The writes of one message being processed."""

    message_id: UUID
    memories: list[Memory] = field(default_factory=list)
    _counter: Iterator[int] = field(default_factory=itertools.count)

    def next_id(self) -> UUID:
        return uuid5(self.message_id, f"write:{next(self._counter)}")


_current: ContextVar[Unit | None] = ContextVar("agenthost_cluster_unit", default=None)


def current_unit() -> Unit | None:
    return _current.get()


@contextmanager
def working_on(unit: Unit) -> Iterator[Unit]:
    """Make `unit` current for the code run inside (and the tasks it starts)."""
    token = _current.set(unit)
    try:
        yield unit
    finally:
        _current.reset(token)


def unit_ids() -> UUID:
    """The runtime's id factory in cluster mode: derived from the message while one is
    processed (the same on every try), random otherwise (a message taken at ingress)."""
    unit = _current.get()
    return uuid4() if unit is None else unit.next_id()


class UnitAdapter(ForwardingAdapter):
    """Delegates to `inner`; memories created inside a `Unit` are held in it (module doc).
    Everything else, `replace_memories` included, is written at once (knowledge replaces
    documents outside of a unit)."""

    async def create_memory(self, memory: Memory, table_name: str | None = None) -> UUID:
        return (await self.create_memories_batch([memory], table_name))[0]

    async def create_memories_batch(
        self, memories: Sequence[Memory], table_name: str | None = None
    ) -> list[UUID]:
        unit = _current.get()
        if unit is None:
            return await self.inner.create_memories_batch(memories, table_name)
        batch = [
            m if table_name is None else m.model_copy(update={"table_name": table_name})
            for m in memories
        ]
        held = {m.id for m in unit.memories}
        for memory in batch:
            if memory.id in held:
                raise DuplicateMemoryError(memory.id)
            held.add(memory.id)
        unit.memories.extend(batch)
        return [m.id for m in batch]

    async def get_memory(self, memory_id: UUID) -> Memory | None:
        unit = _current.get()
        if unit is not None:
            for memory in unit.memories:
                if memory.id == memory_id:
                    return memory
        return await self.inner.get_memory(memory_id)
