"""A `Vector` (a memory's embedding) is not a list: it cannot be changed in place."""

from __future__ import annotations

from uuid import UUID

from contracts.memory import Memory
from contracts.vector import Vector


def misuse(memory: Memory, vector: Vector, who: UUID) -> None:
    assert memory.embedding is not None
    memory.embedding.append(1.0)  # E: "Vector" has no attribute "append"
    floats: list[float] = memory.embedding  # E: Incompatible types in assignment
    vector[0] = 2.0  # E: Unsupported target for indexed assignment
    Memory(agent_id=who, entity_id=who, room_id=who, embedding="0.5")  # E: Argument "embedding" to "Memory" has incompatible type "str"
    del floats
