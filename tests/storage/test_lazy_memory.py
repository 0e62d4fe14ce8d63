"""Pages of memories, and the SQLite store's search hits, decode their fields on first use
(`host.memory.lazy_memory`): a memory read in a page or found by a search must be
indistinguishable from the same row read alone (decoded at once) and from the memory written,
whatever is done with it first (read a field, compare, dump, nest, copy, pickle), on every
store, from any thread."""

from __future__ import annotations

import copy
import pickle
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from builtin_plugins.sqlite import SqliteAdapter
from contracts.memory import _PENDING, Memory, MemoryQuery
from contracts.storage import DatabaseAdapter, SearchParams
from host.memory import RowDecoder, lazy_memory

from .storage_helpers import make_memory

PAGE = 100  # over every store's eager limit (64 rows): a page, decoded lazily
_raw_dict = BaseModel.__dict__["__dict__"].__get__


class Listing(BaseModel):
    memories: list[Memory]


def _written() -> list[Memory]:
    return [
        make_memory(
            i,
            embedding=[0.25 * i, -1.5, 3.0],
            source="test",
            actions=["REPLY"],
            **({"nested": {"a": [1, {"b": None}]}} if i % 2 else {}),
        ).model_copy(update={"metadata": {"i": i, "tags": ["x", "y"]}, "unique": i % 3 == 0})
        for i in range(PAGE)
    ]


def _pending(memories: list[Memory]) -> int:
    return sum(_PENDING in _raw_dict(m) for m in memories)


UsesOf = dict[str, Callable[[Memory], Any]]
USES: UsesOf = {
    "a field": lambda m: (m.content.text, m.content.model_extra, m.created_at, m.embedding),
    "its id": lambda m: m.id,
    "its cursor": lambda m: m.cursor,
    "its vector, then the rest": lambda m: (m.embedding, m.created_at, m.model_dump_json()),
    "its time, then its vector": lambda m: (m.created_at, m.embedding, m.content),
    "model_dump": lambda m: m.model_dump(),
    "model_dump unset": lambda m: m.model_dump(exclude_unset=True),
    "model_dump_json": lambda m: m.model_dump_json(),
    "nested json": lambda m: Listing(memories=[m]).model_dump_json(),
    "nested dump": lambda m: Listing(memories=[m]).model_dump(mode="json"),
    "repr": repr,
    "vars": lambda m: sorted(vars(m)),
    "iteration": lambda m: dict(m),
    "pickle": lambda m: pickle.loads(pickle.dumps(m)),
    "copy": copy.copy,
    "deepcopy": copy.deepcopy,
    "model_copy": lambda m: m.model_copy(update={"unique": not m.unique}),
    "validated again": lambda m: Memory.model_validate(m, from_attributes=True),
    "fields set": lambda m: m.model_fields_set,
}


@pytest.mark.parametrize("use", list(USES))
async def test_a_page_reads_as_its_rows_read_alone_whatever_is_done_first(
    memory_store: DatabaseAdapter, use: str
) -> None:
    written = _written()
    await memory_store.create_memories_batch(written)
    page = await memory_store.get_memories(MemoryQuery(order="asc"))
    alone = [await memory_store.get_memory(m.id) for m in written]
    assert [m.id for m in page] == [m.id for m in written]  # (ids decoded here: a fresh page)
    page = await memory_store.get_memories(MemoryQuery(order="asc"))
    do = USES[use]
    first = [do(m) for m in page]  # what is done first, on fresh memories
    assert first == [do(m) for m in alone] == [do(m) for m in written]
    assert page == alone == written and alone == page and written == page
    assert [m.model_dump_json() for m in page] == [m.model_dump_json() for m in written]


@pytest.mark.parametrize("use", list(USES))
async def test_search_hits_read_as_the_memories_written_whatever_is_done_first(
    memory_store: DatabaseAdapter, use: str
) -> None:
    written = _written()
    await memory_store.create_memories_batch(written)
    await memory_store.build_index("hnsw")  # SQLite: answered on the loop's thread
    by_id = {m.id: m for m in written}
    for kind in ("hnsw", "flat"):  # SQLite: flat on the worker thread
        params = SearchParams(k=10, index_type=kind)
        hits = await memory_store.search_memories([1.0, -1.5, 3.0], params=params)
        do = USES[use]
        first = [do(m) for m, _ in hits]  # what is done first, on fresh memories
        assert len(first) == 10
        assert first == [do(by_id[m.id]) for m, _ in hits]
        assert [m for m, _ in hits] == [by_id[m.id] for m, _ in hits]


async def test_sqlite_search_hits_are_lazy_on_every_path(tmp_path: Path) -> None:
    """Hits found on the loop's thread (an HNSW index, a filter's kept label set) or on the
    worker (flat, unfiltered) decode nothing but what they are read for."""
    db = await SqliteAdapter.open(tmp_path / "m.sqlite3")
    try:
        written = _written()
        await db.create_memories_batch(written)
        await db.build_index("hnsw")
        by_id = {m.id: m for m in written}
        room = MemoryQuery(room_id=written[0].room_id)
        for kind, query in (("hnsw", None), ("flat", None), ("flat", room), ("flat", room)):
            params = SearchParams(k=10, index_type=kind)
            hits = [m for m, _ in await db.search_memories([1.0, -1.5, 3.0], query, params)]
            assert len(hits) == 10 and _pending(hits) == 10, (kind, query)
            vectors = [m.embedding for m in hits]
            assert _pending(hits) == 10  # a vector alone decodes nothing else
            texts = [m.content.text for m in hits]
            assert _pending(hits) == 0
            assert texts == [by_id[m.id].content.text for m in hits]
            assert all(m.embedding is v for m, v in zip(hits, vectors, strict=True))
    finally:
        await db.close()


async def test_sqlite_pages_are_lazy_and_small_reads_are_not(tmp_path: Path) -> None:
    db = await SqliteAdapter.open(tmp_path / "m.sqlite3")
    try:
        await db.create_memories_batch(_written())
        page = await db.get_memories(MemoryQuery(order="asc"))
        assert _pending(page) == PAGE  # nothing decoded yet
        assert page[5].content.text == "m5"
        assert _pending(page) == PAGE - 1  # the one read, and only it
        history = await db.get_memories(MemoryQuery(order="desc", limit=10))
        assert _pending(history) == 0
        assert [m.content.text for m in history] == [f"m{i}" for i in range(99, 89, -1)]
    finally:
        await db.close()


async def test_a_vector_id_or_time_read_alone_decodes_nothing_else(
    memory_store: DatabaseAdapter,
) -> None:
    """What a page is read for (its vectors, its last cursor) decodes only that: the content
    and metadata wait; once they are read, the field decoded alone stays the same object."""
    written = _written()
    await memory_store.create_memories_batch(written)
    page = await memory_store.get_memories(MemoryQuery(order="asc"))
    if not _pending(page):
        pytest.skip("this store decodes its pages at once")
    vectors = [m.embedding for m in page]
    cursors = [m.cursor for m in page]
    assert vectors == [m.embedding for m in written]
    assert cursors == [m.cursor for m in written]
    assert _pending(page) == PAGE  # neither content nor metadata decoded
    assert not any("content" in _raw_dict(m) or "metadata" in _raw_dict(m) for m in page)
    assert [m.content.text for m in page] == [m.content.text for m in written]
    assert _pending(page) == 0
    assert all(m.embedding is vector for m, vector in zip(page, vectors, strict=True))
    assert page == written


async def test_threads_decoding_the_same_memories_at_once_all_see_them_whole(
    tmp_path: Path,
) -> None:
    db = await SqliteAdapter.open(tmp_path / "m.sqlite3")
    try:
        written = _written()
        await db.create_memories_batch(written)
        expected = [m.model_dump_json() for m in written]
        for _ in range(5):
            page = await db.get_memories(MemoryQuery(order="asc"))
            assert _pending(page) == PAGE

            def read(k: int, page: list[Memory] = page) -> list[str]:
                # each thread starts at another row, so that they meet mid-page
                order = page[k * 13 % PAGE :] + page[: k * 13 % PAGE]
                seen = {m.id: (m.content.text, m.model_dump_json()) for m in order}
                return [seen[m.id][1] for m in page]

            with ThreadPoolExecutor(8) as pool:
                results = list(pool.map(read, range(8)))
            assert all(result == expected for result in results)
            assert page == written
    finally:
        await db.close()


async def test_a_stored_row_that_cannot_be_decoded_fails_at_first_use(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite3"
    db = await SqliteAdapter.open(path)
    written = _written()
    await db.create_memories_batch(written)
    raw = sqlite3.connect(path)
    bad = ('{"text": 7}', written[3].id.bytes)
    raw.execute("UPDATE memories SET content = ? WHERE id = ?", bad)
    raw.commit()
    raw.close()
    page = await db.get_memories(MemoryQuery(order="asc"))
    assert page[2].content.text == "m2"  # the others read as ever
    with pytest.raises(ValidationError, match="text"):
        page[3].content  # noqa: B018
    for use in (lambda: page[3].model_dump_json(), lambda: page[3] == written[3]):
        with pytest.raises(ValueError, match="text"):  # pydantic's serializer wraps the error
            use()
    with pytest.raises(ValidationError, match="text"):  # a few rows: decoded at once, as ever
        await db.get_memories(MemoryQuery(order="asc", limit=5))
    await db.build_index("hnsw")
    for kind in ("hnsw", "flat"):  # a search's hits: the bad one fails where it is read
        params = SearchParams(k=PAGE, index_type=kind)
        hits = {m.id: m for m, _ in await db.search_memories([0.75, -1.5, 3.0], params=params)}
        assert hits[written[2].id].content.text == "m2"
        with pytest.raises(ValidationError, match="text"):
            hits[written[3].id].content  # noqa: B018
    await db.close()


def test_a_lazy_memory_knows_no_other_attribute_and_names_a_decoder_failure() -> None:
    memory = make_memory(1)
    values = {name: memory.__dict__[name] for name in ("agent_id", "room_id")}
    lazy = lazy_memory(dict(values), lambda raw: dict(raw), memory.__dict__)
    with pytest.raises(AttributeError, match="no_such"):
        lazy.no_such  # type: ignore[attr-defined]  # noqa: B018
    assert _PENDING in _raw_dict(lazy)
    assert lazy == memory and _raw_dict(lazy) == memory.__dict__
    assert list(_raw_dict(lazy)) == list(Memory.model_fields)

    def broken(raw: Any) -> dict[str, Any]:
        raise AttributeError("'NoneType' object has no attribute 'x'")

    failing = lazy_memory(dict(values), broken, None)
    with pytest.raises(ValueError, match="could not be decoded"):
        failing.content  # noqa: B018
    alone = RowDecoder(broken, {"embedding": lambda raw: raw.x})
    failing = lazy_memory(dict(values), alone, None)  # a field decoded alone fails the same way
    with pytest.raises(ValueError, match="could not be decoded"):
        failing.embedding  # noqa: B018
    assert Memory.model_validate(memory.model_dump()) == memory  # validation sets __dict__
