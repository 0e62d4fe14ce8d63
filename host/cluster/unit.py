"""A message's unit of work in cluster mode: its writes held back, its ids deterministic.

While a worker processes a message, the agent's store is a `UnitAdapter`: memories created
(the incoming message, the reply, a plugin's) are kept in the current `Unit` instead of being
written, and the worker commits them with the room's progress in one transaction
(`RoomQueue.commit`), or drops them when its lease was lost. `unit_ids` gives the runtime ids
derived from the message id (uuid5), so a message processed again after a crash writes the same
ids (skipped if stored).

Updates and deletes are held too (committed after the creates, in the same transaction): one
of a memory created in the unit changes the held copy; one of a stored memory is recorded and
reported as the store would (found or not). Reads go to the store and see the unit's writes by
id (`get_memory`: created, updated, deleted); lists and searches see the store as committed.
Events marked for the cluster raised in the unit are held in its ``outbox`` and committed with
it: a try that fails or is fenced sends none to the other processes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from uuid import UUID, uuid4, uuid5

from contracts.memory import Memory, MemoryUpdate
from contracts.storage import DuplicateMemoryError
from host.forwarding import ForwardingAdapter

__all__ = ["Unit", "UnitAdapter", "current_unit", "unit_ids", "working_on"]


@dataclass(slots=True)
class Unit:
    """The writes of one message being processed."""

    message_id: UUID
    memories: list[Memory] = field(default_factory=list)
    """Created, in order (with the unit's later updates applied)."""
    updates: list[MemoryUpdate] = field(default_factory=list)
    """Of stored memories, in order."""
    deletes: list[UUID] = field(default_factory=list)
    """Of stored memories."""
    outbox: list[tuple[str, bytes]] = field(default_factory=list)
    """Cluster events (NATS subject, data) to send once the unit is committed."""
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
    """Delegates to `inner`; memories created, updated and deleted inside a `Unit` are held in
    it (module doc). `replace_memories` is written at once (knowledge replaces documents outside
    of a unit)."""

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
        if unit is None:
            return await self.inner.get_memory(memory_id)
        for memory in unit.memories:
            if memory.id == memory_id:
                return memory
        if memory_id in unit.deletes:
            return None
        stored = await self.inner.get_memory(memory_id)
        if stored is not None:
            for update in unit.updates:
                if update.id == memory_id:
                    stored = update.apply(stored)
        return stored

    async def update_memory(self, update: MemoryUpdate) -> bool:
        return (await self.update_memories_batch([update]))[0]

    async def delete_memory(self, memory_id: UUID) -> bool:
        return await self.delete_memories_batch([memory_id]) == 1

    async def update_memories_batch(self, updates: Sequence[MemoryUpdate]) -> list[bool]:
        unit = _current.get()
        if unit is None:
            return await self.inner.update_memories_batch(updates)
        found: list[bool] = []
        for update in updates:
            index = _index_of(unit.memories, update.id)
            if index is not None:
                unit.memories[index] = update.apply(unit.memories[index])
                found.append(True)
            elif update.id not in unit.deletes and await self._stored(update.id):
                unit.updates.append(update)
                found.append(True)
            else:
                found.append(False)
        return found

    async def delete_memories_batch(self, memory_ids: Sequence[UUID]) -> int:
        unit = _current.get()
        if unit is None:
            return await self.inner.delete_memories_batch(memory_ids)
        deleted = 0
        for memory_id in dict.fromkeys(memory_ids):
            index = _index_of(unit.memories, memory_id)
            if index is not None:
                del unit.memories[index]
                deleted += 1
            elif memory_id not in unit.deletes and await self._stored(memory_id):
                unit.deletes.append(memory_id)
                deleted += 1
        return deleted

    async def _stored(self, memory_id: UUID) -> bool:
        return await self.inner.get_memory(memory_id) is not None


def _index_of(memories: list[Memory], memory_id: UUID) -> int | None:
    for index, memory in enumerate(memories):
        if memory.id == memory_id:
            return index
    return None
