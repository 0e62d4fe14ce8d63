"""Misusing the storage contract is a type error."""

from __future__ import annotations

from contracts.memory import Memory, MemoryQuery
from contracts.storage import DATABASE, DatabaseAdapter, SearchParams
from contracts.tokens import Token


async def misuse(db: DatabaseAdapter, memory: Memory) -> None:
    await db.search_memories([1.0], params=SearchParams(index_type="annoy"))  # E: Argument "index_type" to "SearchParams" has incompatible type
    await db.search_memories([1.0], k=3)  # E: Unexpected keyword argument "k" for "search_memories" of "DatabaseAdapter"
    SearchParams(k=3).k = 4  # E: Property "k" defined in "SearchParams" is read-only
    await db.create_memories_batch(memory)  # E: Argument 1 to "create_memories_batch" of "DatabaseAdapter" has incompatible type "Memory"
    found: Memory = await db.get_memories(MemoryQuery())  # E: Incompatible types in assignment
    await db.update_memory(memory)  # E: Argument 1 to "update_memory" of "DatabaseAdapter" has incompatible type "Memory"; expected "MemoryUpdate"
    await db.build_index("annoy")  # E: Argument 1 to "build_index" of "DatabaseAdapter" has incompatible type
    del found


class NotAStore:
    backend = "nope"

    async def get_memory(self, memory_id: str) -> None: ...


wrong: Token[NotAStore] = DATABASE  # E: Incompatible types in assignment
store: DatabaseAdapter = NotAStore()  # E: Incompatible types in assignment


class NotAWrapper:
    backend = "x"


def kit_misuse() -> None:
    from host.storekit import ForwardingAdapter, VectorIndexSettings, check_dimension

    ForwardingAdapter(NotAWrapper())  # E: Argument 1 to "ForwardingAdapter" has incompatible type "NotAWrapper"
    check_dimension("messages", 3, "4")  # E: Argument 3 to "check_dimension" has incompatible type "str"
    VectorIndexSettings().index_params().hnsw_m = 8  # E: Property "hnsw_m" defined in "IndexParams" is read-only
