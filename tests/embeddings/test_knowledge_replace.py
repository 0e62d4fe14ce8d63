"""A changed document's chunks replace the old ones in one transaction: a reader looking between
any two of the knowledge base's store calls, or while they run, finds the old version or the new
one, whole, never both and never neither."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from builtin_plugins.eliza import ElizaPlugin
from builtin_plugins.knowledge import KnowledgeStore
from builtin_plugins.knowledge.base import TABLE
from contracts.memory import MemoryQuery
from contracts.storage import DatabaseAdapter
from host.models import ModelRegistry

_WRITES = {
    "create_memory",
    "create_memories_batch",
    "update_memory",
    "update_memories_batch",
    "delete_memory",
    "delete_memories_batch",
    "replace_memories",
}


def _models() -> ModelRegistry:
    registry = ModelRegistry()
    for handler in ElizaPlugin().models():
        registry.register(handler, owner="eliza")
    return registry


class _Looking:
    """The store, read by `look` after each of its writes returns."""

    def __init__(self, inner: DatabaseAdapter, look: Any) -> None:
        self.inner = inner
        self.backend = inner.backend
        self.look = look

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if name not in _WRITES:
            return method

        async def write(*args: Any, **kwargs: Any) -> Any:
            result = await method(*args, **kwargs)
            await self.look()
            return result

        return write


def _text(version: str) -> str:
    return "\n\n".join(f"{version} paragraph {i}: the gate code is {version}." for i in range(6))


async def _versions(db: DatabaseAdapter) -> tuple[str, ...]:
    rows = await db.get_memories(MemoryQuery(table_name=TABLE))
    return tuple(sorted(r.content.text.split()[0] for r in rows))


async def test_no_store_call_leaves_both_versions_or_neither(
    memory_store: DatabaseAdapter, tmp_path: Path
) -> None:
    doc = tmp_path / "gate.md"
    doc.write_text(_text("old"))
    seen: list[tuple[str, ...]] = []

    async def look() -> None:
        seen.append(await _versions(memory_store))

    store = KnowledgeStore(
        _Looking(memory_store, look),
        _models(),
        chunk_size=60,
        overlap=0,
    )
    assert (await store.add_paths([doc]))[0].status == "added"
    old = await _versions(memory_store)
    doc.write_text(_text("new"))
    seen.clear()
    assert (await store.add_paths([doc]))[0].status == "replaced"
    new = await _versions(memory_store)
    assert set(old) == {"old"} and set(new) == {"new"} and len(old) == len(new) > 1
    assert seen and all(s in (old, new) for s in seen), seen
    documents = await store.documents()
    assert [(d.sha256 != "", d.chunks) for d in documents] == [(True, len(new))]


async def test_a_concurrent_reader_never_sees_half_a_document(
    memory_store: DatabaseAdapter, tmp_path: Path
) -> None:
    doc = tmp_path / "gate.md"
    store = KnowledgeStore(memory_store, _models(), chunk_size=60, overlap=0)
    doc.write_text(_text("v0"))
    await store.add_paths([doc])
    whole = {await _versions(memory_store)}
    seen: set[tuple[str, ...]] = set()
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            seen.add(await _versions(memory_store))
            await asyncio.sleep(0)

    async def writer() -> None:
        for i in range(1, 13):
            doc.write_text(_text(f"v{i}"))
            assert (await store.add_paths([doc]))[0].status == "replaced"
            whole.add(await _versions(memory_store))
            await asyncio.sleep(0)
        done.set()

    await asyncio.gather(reader(), writer())
    assert seen and seen <= whole, seen - whole
