"""Memory input limits on every backend: content and metadata nested past `MAX_JSON_DEPTH` or
longer than `MAX_JSON_LENGTH` as JSON are refused with `InvalidMemoryError` naming the field,
and nothing is written; whatever a store accepts, ``get``, ``get_memories``, the stream and
``search`` give back (hypothesis, bounded). Before the limits, content nested ~201-250 deep was
stored and could never be read again: its room's listing failed on every call."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contracts.memory import (
    MAX_JSON_DEPTH,
    MAX_JSON_LENGTH,
    Content,
    Memory,
    MemoryQuery,
    MemoryUpdate,
)
from contracts.storage import BatchError, DatabaseAdapter, InvalidMemoryError, SearchParams
from host.memory import MemoryManager, nesting_depth
from host.pytest_plugin import StoreFactory

from .storage_helpers import AGENT, ENTITY, ROOM, make_memory, run


def nested(depth: int, leaf: Any = "x") -> Any:
    """A value `depth` levels deep (dicts and lists alternating), `leaf` at the bottom."""
    value = leaf
    for level in range(depth):
        value = {"k": value} if level % 2 else [value]
    return value


def memory(content: dict[str, Any] | None = None, metadata: Any = None) -> Memory:
    return Memory(
        agent_id=AGENT,
        entity_id=ENTITY,
        room_id=ROOM,
        content=Content(text="deep", **(content or {})),
        metadata=metadata if metadata is not None else {},
        embedding=[1.0, 0.0, 0.0],
    )


async def _readable(db: DatabaseAdapter, expected: list[Memory]) -> None:
    """Every way of reading gives `expected` back (content and metadata equal)."""
    want = {m.id: (m.content.model_dump(), m.metadata) for m in expected}

    def seen(found: list[Memory]) -> dict[Any, Any]:
        return {m.id: (m.content.model_dump(), m.metadata) for m in found}

    got = [await db.get_memory(m.id) for m in expected]
    assert seen([m for m in got if m is not None]) == want
    assert seen(await db.get_memories(MemoryQuery(room_id=ROOM))) == want
    streamed = [m async for m in MemoryManager(db, page_size=2).get_memories_stream(MemoryQuery())]
    assert seen(streamed) == want
    hits = await db.search_memories([1.0, 0.0, 0.0], params=SearchParams(k=len(expected) + 1))
    assert seen([found for found, _score in hits]) == want


@pytest.mark.parametrize("field", ["content", "metadata"])
async def test_nesting_past_the_limit_is_refused_naming_the_field(
    memory_store: DatabaseAdapter, field: str
) -> None:
    at_limit = nested(MAX_JSON_DEPTH - 1)  # inside the object: MAX_JSON_DEPTH levels in all
    over = nested(MAX_JSON_DEPTH)
    kept = memory(**{field: {"v": at_limit}})
    await memory_store.create_memory(kept)
    for depth in (MAX_JSON_DEPTH, 230, 300, 3000):  # 230: stored, then unreadable, before
        with pytest.raises(InvalidMemoryError, match=f"memory {field} is nested deeper") as err:
            await memory_store.create_memory(memory(**{field: {"v": nested(depth)}}))
        assert err.value.field == field
    # a batch with one such row writes nothing of the batch
    batch = [make_memory(1), memory(**{field: {"v": over}}), make_memory(2)]
    with pytest.raises(BatchError) as failed:
        await memory_store.create_memories_batch(batch)
    assert failed.value.index == 1 and isinstance(failed.value.cause, InvalidMemoryError)
    assert await memory_store.count_memories() == 1
    # nor can an update nest it past the limit
    update = (
        MemoryUpdate(id=kept.id, content=Content(text="u", v=over))
        if field == "content"
        else MemoryUpdate(id=kept.id, metadata={"v": over})
    )
    with pytest.raises(InvalidMemoryError, match=field):
        await memory_store.update_memory(update)
    await _readable(memory_store, [kept])


@pytest.mark.parametrize("field", ["content", "metadata"])
async def test_json_longer_than_the_limit_is_refused(
    memory_store: DatabaseAdapter, field: str
) -> None:
    long = "x" * MAX_JSON_LENGTH
    with pytest.raises(InvalidMemoryError, match=f"memory {field} is .* characters as JSON"):
        await memory_store.create_memory(memory(**{field: {"blob": long}}))
    if field == "content":
        with pytest.raises(InvalidMemoryError):
            await memory_store.create_memory(
                make_memory(1).model_copy(update={"content": Content(text=long)})
            )
    assert await memory_store.count_memories() == 0
    fits = memory(**{field: {"blob": "x" * (MAX_JSON_LENGTH // 2)}})
    await memory_store.create_memory(fits)
    await _readable(memory_store, [fits])


def _json_leaf() -> st.SearchStrategy[Any]:
    return st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)


@st.composite
def deep_values(draw: st.DrawFn) -> Any:
    """JSON values around the depth limit: a chain of dicts and lists, each level maybe with a
    sibling, some far past the limit (up to 260 levels)."""
    depth = draw(st.one_of(st.integers(0, MAX_JSON_DEPTH + 3), st.integers(0, 260)))
    value = draw(_json_leaf())
    for _ in range(depth):
        sibling = draw(st.none() | _json_leaf())
        if draw(st.booleans()):
            value = {"k": value} if sibling is None else {"k": value, "s": sibling}
        else:
            value = [value] if sibling is None else [sibling, value]
    return value


SETTINGS = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SETTINGS
@given(content=deep_values(), metadata=deep_values())
def test_whatever_a_store_accepts_reads_back(
    store_factory: StoreFactory, content: Any, metadata: Any
) -> None:
    async def scenario() -> None:
        row = memory(content={"v": content}, metadata={"v": metadata})
        async with store_factory() as db:
            try:
                await db.create_memory(row)
            except InvalidMemoryError as exc:
                too_deep = {
                    "content": nesting_depth({"v": content}),
                    "metadata": nesting_depth({"v": metadata}),
                }
                assert too_deep[exc.field] > MAX_JSON_DEPTH, exc
                assert await db.count_memories() == 0
                return
            assert nesting_depth({"v": content}) <= MAX_JSON_DEPTH
            assert nesting_depth({"v": metadata}) <= MAX_JSON_DEPTH
            await _readable(db, [row])
            # and any room of it stays readable with a second, ordinary row beside it
            other = make_memory(3, embedding=[0.0, 1.0, 0.0])
            await db.create_memory(other)
            assert len(await db.get_memories(MemoryQuery(room_id=ROOM))) == 2

    run(scenario())


def test_nesting_depth_counts_without_recursion() -> None:
    assert [nesting_depth(v) for v in ("x", {}, [], {"a": [1]}, [[{}]])] == [0, 1, 1, 2, 3]
    assert nesting_depth(nested(100_000), limit=10) == 11  # stops counting past the limit
    assert nesting_depth(nested(500), limit=1000) == 500
