"""Rows read back are built without validating them again (host.memory: `content_from_json`,
`trusted_memory`): what they give must be what validation gives, and a stored row that is not
what a store writes must fail as validation fails, not come back as an invalid model."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from builtin_plugins.sqlite import SqliteAdapter
from builtin_plugins.sqlite.rows import content_text, from_micros, to_micros
from contracts.memory import Content, Memory, MemoryQuery, MemoryUpdate
from contracts.storage import get_texts
from host.memory import content_from_json, content_json

from .storage_helpers import make_memory

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)


def _same(text: str) -> None:
    try:
        expected: Content | str = Content.model_validate_json(text)
    except ValidationError as exc:
        expected = str(exc)
    try:
        got: Content | str = content_from_json(text)
    except ValidationError as exc:
        got = str(exc)
    assert got == expected
    try:  # a history's line: the text alone, read as the whole content would be
        line: str = content_text(text)
    except ValidationError as exc:
        line = str(exc)
    assert line == (expected.text if isinstance(expected, Content) else expected)
    if isinstance(got, Content):
        assert isinstance(expected, Content)
        assert got.model_fields_set == expected.model_fields_set
        assert got.model_extra == expected.model_extra
        assert got.model_dump_json() == expected.model_dump_json()
        assert got.model_dump(exclude_unset=True) == expected.model_dump(exclude_unset=True)


@given(st.dictionaries(st.text(), json_values, max_size=4), st.text() | json_values)
def test_stored_content_reads_back_as_validation_reads_it(
    fields: dict[str, Any], text: Any
) -> None:
    _same(json.dumps({**fields, "text": text}))
    _same(json.dumps(fields))  # no text at all


@pytest.mark.parametrize(
    "text",
    ['{"text": 5}', '{"text": null}', "[1, 2]", '"text"', "not json", "", '{"text": "\\ud800"}'],
)
def test_content_no_store_writes_fails_as_validation_fails(text: str) -> None:
    _same(text)
    with pytest.raises(ValidationError):
        content_from_json(text)


def test_contents_of_one_shape_share_a_fields_set_that_copies_never_change() -> None:
    first = content_from_json(content_json(Content(text="a", source="x")))
    second = content_from_json(content_json(Content(text="b", source="y")))
    assert first.model_fields_set is second.model_fields_set == {"text", "source"}
    changed = first.model_copy(update={"actions": ["x"]})
    assert changed.model_fields_set == {"text", "source", "actions"}
    assert second.model_fields_set == {"text", "source"}
    with pytest.raises(ValidationError, match="frozen"):
        first.text = "c"  # type: ignore[misc]


async def test_a_row_with_content_no_store_writes_is_refused_not_returned(
    tmp_path: Path,
) -> None:
    path = tmp_path / "m.sqlite3"
    db = await SqliteAdapter.open(path)
    good, bad = make_memory(1), make_memory(2)
    await db.create_memories_batch([good, bad])
    raw = sqlite3.connect(path)
    raw.execute("UPDATE memories SET content = ? WHERE id = ?", ('{"text": 7}', bad.id.bytes))
    raw.commit()
    raw.close()
    memory = await db.get_memory(good.id)
    assert memory is not None
    copy = memory.model_copy(update={"unique": True})
    assert copy.unique and not memory.unique and "unique" in memory.model_fields_set
    with pytest.raises(ValidationError, match="text"):
        await db.get_memories(MemoryQuery())
    with pytest.raises(ValidationError, match="text"):
        await get_texts(db, MemoryQuery(limit=5))  # a history's lines: refused alike
    await db.close()


@given(st.integers(min_value=-62_135_596_800_000_000, max_value=253_402_300_799_999_999))
def test_stored_microseconds_read_back_as_the_epoch_plus_them(micros: int) -> None:
    got = from_micros(micros)
    assert got == datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    assert got.tzinfo is UTC and to_micros(got) == micros
    assert from_micros(micros) == got  # the second's fields kept, the same again


async def test_get_texts_reads_a_store_subclass_through_its_own_get_memories(
    tmp_path: Path,
) -> None:
    """A store plugin subclassing the SQLite store to change its reads (here: hiding one
    speaker) overrides `get_memories` only: the history's lines (`get_texts`) follow it rather
    than the inherited `get_memory_texts`; the store itself is still read by its own."""

    class Scoped(SqliteAdapter):
        async def get_memories(self, query: MemoryQuery) -> list[Memory]:
            return [m for m in await super().get_memories(query) if m.entity_id != hidden]

    hidden = uuid4()
    for cls, shown in ((Scoped, 2), (SqliteAdapter, 3)):
        db = await cls.open(tmp_path / f"{cls.__name__}.sqlite3")
        try:
            speakers = [hidden, uuid4(), uuid4()]
            await db.create_memories_batch(
                [make_memory(i, entity_id=e) for i, e in enumerate(speakers)]
            )
            texts = await get_texts(db, MemoryQuery(limit=11))
            assert len(texts) == shown and (hidden in {t.entity_id for t in texts}) == (shown == 3)
        finally:
            await db.close()


async def test_history_lines_decoded_once_follow_each_rows_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SQLite store keeps the lines it decoded by their rows (`reads._text_of`): a row read
    again is not decoded again, a row whose content changed (here, or by another connection)
    is read anew, and a long content or a full cache is decoded as before."""
    from builtin_plugins.sqlite import reads

    monkeypatch.setattr(reads, "_texts", {})
    db = await SqliteAdapter.open(tmp_path / "x.sqlite3")
    one, two = make_memory(0), make_memory(1)
    await db.create_memories_batch([one, two])
    query = MemoryQuery(room_id=one.room_id, limit=11, order="asc")
    first = await get_texts(db, query)
    assert [t.text for t in first] == [one.content.text, two.content.text]
    again = await get_texts(db, query)
    assert again == first and all(a is b for a, b in zip(again, first, strict=True))
    await db.update_memory(MemoryUpdate(id=one.id, content=Content(text="changed here")))
    other = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    other.execute(
        "UPDATE memories SET content = ? WHERE id = ?",
        (content_json(Content(text="changed there")), two.id.bytes),
    )
    other.close()
    assert [t.text for t in await get_texts(db, query)] == ["changed here", "changed there"]
    monkeypatch.setattr(reads, "_TEXTS_KEPT", 2)  # full: emptied, then kept again
    long = make_memory(2).model_copy(update={"content": Content(text="x" * 5000)})
    await db.create_memories_batch([long, make_memory(3)])
    texts = await get_texts(db, query)
    assert [t.text for t in texts] == ["changed here", "changed there", "x" * 5000, "m3"]
    assert len(reads._texts) <= 2 and all(len(t.text) < 5000 for t in reads._texts.values())
    await db.close()
