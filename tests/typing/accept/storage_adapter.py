"""A store written against the contract type-checks: adapters satisfy DatabaseAdapter."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import uuid4

from builtin_plugins.inmemory import InMemoryAdapter
from builtin_plugins.sqlite import SqliteAdapter
from contracts.memory import Content, Cursor, Memory, MemoryQuery, MemoryUpdate
from contracts.storage import DATABASE, DatabaseAdapter, IndexType, SearchParams
from contracts.tokens import Token
from host.memory import MemoryManager

token: Token[DatabaseAdapter] = DATABASE


async def use(db: DatabaseAdapter) -> list[str]:
    memory = Memory(
        agent_id=uuid4(), entity_id=uuid4(), room_id=uuid4(), content=Content(text="hi")
    )
    memory_id = await db.create_memory(memory, "messages")
    ok: bool = await db.update_memory(MemoryUpdate(id=memory_id, metadata={"seen": True}))
    ids = await db.create_memories_batch([memory], table_name="facts")
    flags: list[bool] = await db.update_memories_batch([MemoryUpdate(id=ids[0], unique=True)])
    gone: int = await db.delete_memories_batch(ids)
    kind: IndexType = "hnsw"
    hits = await db.search_memories(
        [0.1, 0.2], MemoryQuery(room_id=memory.room_id), SearchParams(k=5, index_type=kind)
    )
    texts = [m.content.text for m, score in hits if score > 0.5]
    cursor = Cursor.decode(memory.cursor.encode())
    page = await db.get_memories(MemoryQuery(order="asc", after=cursor, limit=10))
    del ok, flags, gone, page
    return texts


async def stream(manager: MemoryManager) -> AsyncIterator[Memory]:
    async for memory in manager.get_memories_stream(MemoryQuery(), batch_size=100):
        yield memory


async def adapters() -> None:
    stores: list[DatabaseAdapter] = [InMemoryAdapter(), await SqliteAdapter.open("x.sqlite3")]
    del stores
