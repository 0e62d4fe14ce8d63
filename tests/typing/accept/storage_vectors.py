"""What a plugin does with a `Vector`: read it as floats or an array, build and search with it."""

from __future__ import annotations

from uuid import UUID

import numpy as np
import numpy.typing as npt

from contracts.memory import Memory
from contracts.models import EmbeddingResult
from contracts.storage import DatabaseAdapter, SearchParams
from contracts.vector import Vector


async def use(db: DatabaseAdapter, memory: Memory, result: EmbeddingResult, who: UUID) -> float:
    assert memory.embedding is not None
    array: npt.NDArray[np.float32] = memory.embedding.array
    floats: list[float] = memory.embedding.tolist()
    first: float = memory.embedding[0]
    total = sum(x for x in memory.embedding) + len(memory.embedding) + first + float(array[0])
    vector: Vector = result.vector
    built = Memory(agent_id=who, entity_id=who, room_id=who, embedding=Vector(floats))
    hits = await db.search_memories(vector, params=SearchParams(k=3))
    rows = Vector.rows(np.eye(3))
    return total + len(hits) + len(rows) + (built.embedding or vector).dim
