"""Rebuilding an agent's conversation state from its audit trail, and checking it against the store.

The audit plugin records each ``memory:created`` / ``memory:updated`` / ``memory:deleted`` with
the memory as its payload; folding those events in version order gives the agent's memories of a
room as they should be. `compare_room` diffs that against the memory store: a memory the trail
has but the store lacks (lost write), one the store has that the trail never saw (unaudited
write), or one whose text or metadata differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from contracts.eventstore import DomainEvent, EventStore
from contracts.memory import Memory, MemoryQuery
from contracts.storage import DatabaseAdapter
from host.memory import MemoryManager

__all__ = [
    "RoomDiff",
    "compare_room",
    "fold_memories",
    "memory_id_of",
    "memory_tables",
    "rebuild_room",
]

MEMORY_EVENTS = ("memory:created", "memory:updated", "memory:deleted")


def memory_id_of(data: Mapping[str, Any]) -> UUID | None:
    """The id of the memory an event's `data` is about (None if it names none)."""
    for key in ("id", "memory_id"):
        value = data.get(key)
        if value is not None:
            try:
                return UUID(str(value))
            except ValueError:
                return None
    memory = data.get("memory")
    if isinstance(memory, Mapping):
        return memory_id_of(memory)
    return None


def _memory_data(data: Mapping[str, Any]) -> Mapping[str, Any]:
    nested = data.get("memory")
    return nested if isinstance(nested, Mapping) else data


def fold_memories(events: Iterable[DomainEvent], room_id: UUID | None = None) -> list[Memory]:
    """The memories `events` leave behind (of `room_id` if given), in ``(created_at, id)`` order."""
    memories: dict[UUID, Memory] = {}
    for event in events:
        if event.event_type not in MEMORY_EVENTS:
            continue
        data = _memory_data(event.data)
        memory_id = memory_id_of(data)
        if memory_id is None:
            continue
        if event.event_type == "memory:deleted":
            memories.pop(memory_id, None)
        elif event.event_type == "memory:created":
            memories[memory_id] = Memory.model_validate(data)
        elif memory_id in memories:
            changes = {
                k: data[k]
                for k in ("content", "metadata", "embedding", "unique")
                if data.get(k) is not None
            }
            merged = memories[memory_id].model_dump(mode="json") | changes
            memories[memory_id] = Memory.model_validate(merged)
    kept = [m for m in memories.values() if room_id is None or m.room_id == room_id]
    return sorted(kept, key=lambda m: (m.created_at, m.id))


def memory_tables(events: Iterable[DomainEvent]) -> frozenset[str]:
    """The tables `events` record memories written to (a conversation's tables)."""
    tables = set()
    for event in events:
        if event.event_type in MEMORY_EVENTS:
            table = _memory_data(event.data).get("table_name")
            if isinstance(table, str):
                tables.add(table)
    return frozenset(tables)


async def rebuild_room(store: EventStore, agent_id: UUID | str, room_id: UUID) -> list[Memory]:
    """Agent `agent_id`'s memories of `room_id`, rebuilt from its events alone."""
    return fold_memories(
        [e async for e in store.iter_events(str(agent_id)) if e.event_type in MEMORY_EVENTS],
        room_id,
    )


@dataclass(frozen=True)
class RoomDiff:
    """How the memories rebuilt from events differ from the memory store's."""

    missing: list[Memory] = field(default_factory=list)
    """In the trail, not in the store."""
    unrecorded: list[Memory] = field(default_factory=list)
    """In the store, never recorded."""
    changed: list[tuple[Memory, Memory]] = field(default_factory=list)
    """(rebuilt, stored) pairs whose text, metadata or room differ."""
    matched: int = 0

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unrecorded or self.changed)

    def summary(self) -> str:
        if self.ok:
            return f"{self.matched} memories match the store"
        return (
            f"{self.matched} match, {len(self.missing)} missing from the store,"
            f" {len(self.unrecorded)} never recorded, {len(self.changed)} changed"
        )


def _same(a: Memory, b: Memory) -> bool:
    return (
        a.content.model_dump(mode="json") == b.content.model_dump(mode="json")
        and a.metadata == b.metadata
        and a.room_id == b.room_id
        and a.entity_id == b.entity_id
    )


async def compare_room(
    database: DatabaseAdapter, agent_id: UUID, room_id: UUID, rebuilt: list[Memory]
) -> RoomDiff:
    """Diff `rebuilt` (from `rebuild_room`) against what `database` holds for the room."""
    query = MemoryQuery(agent_id=agent_id, room_id=room_id, order="asc", with_embeddings=False)
    stored = {m.id: m async for m in MemoryManager(database).get_memories_stream(query)}
    missing: list[Memory] = []
    changed: list[tuple[Memory, Memory]] = []
    matched = 0
    for memory in rebuilt:
        other = stored.pop(memory.id, None)
        if other is None:
            missing.append(memory)
        elif _same(memory, other):
            matched += 1
        else:
            changed.append((memory, other))
    unrecorded = sorted(stored.values(), key=lambda m: (m.created_at, m.id))
    return RoomDiff(missing=missing, unrecorded=unrecorded, changed=changed, matched=matched)
