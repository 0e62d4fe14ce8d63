"""What an agent remembers: `Memory` rows, the `MemoryQuery` that selects them, and `Cursor`.

Memories are ordered by ``(created_at, id)``; that pair is the keyset a `Cursor` points at, so
paging never uses OFFSET and a page boundary stays put while rows are inserted.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID, uuid4

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from contracts.errors import AgentHostError
from contracts.vector import Vector

__all__ = [
    "DEFAULT_TABLE",
    "MAX_JSON_DEPTH",
    "MAX_JSON_LENGTH",
    "Content",
    "Cursor",
    "InvalidCursorError",
    "Memory",
    "MemoryQuery",
    "MemoryUpdate",
    "Order",
    "utc_now",
]

DEFAULT_TABLE = "messages"
"""The table a memory goes to when none is named."""

MAX_JSON_DEPTH = 64
"""How deep a memory's content and metadata may nest (the object itself is level 1), on every
store. Far below what reading back allows (pydantic's JSON parser stops at 200 levels, its
serializer near 255): whatever a store accepts can always be read back and served."""

MAX_JSON_LENGTH = 1_048_576
"""The most characters a memory's content, or its metadata, may take as JSON text."""

Order = Literal["asc", "desc"]
"""Sort direction on ``(created_at, id)``."""

_TABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"


def utc_now() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def _as_utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{field} must be timezone-aware (got naive {value.isoformat()})")
    return value.astimezone(UTC)


class Content(BaseModel):
    """The payload of a memory: ``text`` plus any free-form JSON fields (source, actions, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    text: str = ""


class Memory(BaseModel):
    """One remembered item, stored in the table `table_name` of a `DatabaseAdapter`.

    ``created_at`` is always timezone-aware UTC (stored with microsecond precision);
    ``embedding`` has one fixed dimension per table, set by the first write that carries one;
    it is a `Vector` (read-only float32; a list of numbers or an array is converted), and a
    memory read with ``MemoryQuery(with_embeddings=False)`` has None there.
    ``unique`` marks a memory the runtime judged not to duplicate an existing one.

    A memory read back from a store in a page of many may decode some fields (its content,
    metadata, embedding and time) when one of them is first read, rather than when the page is
    read: this is invisible (attribute reads, equality, ``model_dump``, serialization, copies and
    pickling all see every field), except that stored data that cannot be decoded raises there,
    at first use, instead of from the read (docs/storage.md, "Lazily decoded fields").
    """

    model_config = ConfigDict(frozen=True)

    id: UUID = Field(default_factory=uuid4)
    agent_id: UUID
    entity_id: UUID
    room_id: UUID
    table_name: str = Field(default=DEFAULT_TABLE, pattern=_TABLE_NAME)
    content: Content = Field(default_factory=Content)
    embedding: Vector | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utc_now)
    unique: bool = False

    @field_validator("created_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return _as_utc(value, "created_at")

    @property
    def cursor(self) -> Cursor:
        """The keyset position of this memory (resume a query right after it)."""
        return Cursor(self.created_at, self.id)

    if not TYPE_CHECKING:  # seen by the type checker, any attribute would be allowed

        def __getattr__(self, name: str) -> Any:
            # reached only for a name missing from the instance dict: a lazily decoded field
            values = _dict_of(self)
            decode = values.get(_DECODE)
            if decode is not None and name in _FIELD_NAMES:
                alone = getattr(decode, "alone", None)
                field = None if alone is None else alone.get(name)
                if field is not None:  # this field by itself
                    value = values[name] = _decoded(field, values[_PENDING])
                    return value
                values = _settle(self)
                if name in values:
                    return values[name]
            return super().__getattr__(name)

        @property
        def __dict__(self) -> dict[str, Any]:
            # what pydantic (serialization, equality, copies, pickling) and vars() read: complete
            values = _dict_of(self)
            return _settle(self) if _PENDING in values else values

        @__dict__.setter
        def __dict__(self, values: dict[str, Any]) -> None:
            _set_dict_of(self, values)


_FIELD_NAMES = frozenset(Memory.model_fields)
_dict_of = BaseModel.__dict__["__dict__"].__get__
_set_dict_of = BaseModel.__dict__["__dict__"].__set__
_PENDING = "\x00pending"
_DECODE = "\x00decode"
"""The keys, in a lazily decoded memory's instance dict, of the stored values and of the
function that decodes them into its whole dict (`host.memory.lazy_memory` puts both there;
two entries rather than a pair: one object less per row). Never field names, never seen:
every reader of the dict gets it through `Memory.__dict__`, which decodes first."""

PendingDecode = Callable[[Any], dict[str, Any]]
"""Stored values -> a memory's whole dict. A decoder may also carry ``alone``, a mapping of
field names to functions of the stored values giving that field by itself
(`host.storekit.RowDecoder`): such a field's first read decodes it alone and keeps it (a page
read for its vectors decodes no content, metadata or time); the others, or a dump, still
decode the whole dict, which keeps the field decoded alone."""


def _decoded(field: Callable[[Any], Any], raw: Any) -> Any:
    try:
        return field(raw)
    except AttributeError as exc:  # raised out of __getattr__ it would read as "no such field"
        raise ValueError(f"a stored memory could not be decoded: {exc}") from exc


def _settle(memory: Memory) -> dict[str, Any]:
    """Decode a lazily read `memory`: its instance dict becomes the whole one its decoder
    gives (every field, in field order: what serialization follows), returned. The dict it had
    only ever gains the fields decoded alone, so threads may race here: each finds it as it
    was and decodes the same stored values into a dict of its own (at worst a row is decoded
    twice)."""
    values: dict[str, Any] = _dict_of(memory)
    decode: PendingDecode | None = values.get(_DECODE)
    if decode is None:
        return values
    whole: dict[str, Any] = _decoded(decode, values[_PENDING])
    alone = getattr(decode, "alone", None)
    if alone is not None:
        # decoded alone before: the same object stays the field's value (two threads' first
        # reads at once may each keep their own: equal values, not always the same object)
        for name in alone:
            if name in values:
                whole[name] = values[name]
    _set_dict_of(memory, whole)
    return whole


class MemoryUpdate(BaseModel):
    """A partial update of memory `id`: only the fields explicitly set are changed.

    ``MemoryUpdate(id=x, embedding=None)`` clears the embedding;
    ``MemoryUpdate(id=x, metadata={...})`` replaces metadata and leaves the rest as it was.
    Identity and ordering fields (agent, entity, room, table, created_at) never change.
    """

    model_config = ConfigDict(frozen=True)

    id: UUID
    content: Content | None = None
    embedding: Vector | None = None
    metadata: dict[str, Any] | None = None
    unique: bool | None = None

    @model_validator(mode="after")
    def _no_null_content(self) -> MemoryUpdate:
        for name in ("content", "metadata", "unique"):
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be set to None (only embedding can be cleared)")
        return self

    @property
    def changes(self) -> frozenset[str]:
        """Names of the fields this update sets (besides ``id``)."""
        return frozenset(self.model_fields_set - {"id"})

    def apply(self, memory: Memory) -> Memory:
        """`memory` with this update's fields applied (the model the backends must match)."""
        return memory.model_copy(update={name: getattr(self, name) for name in self.changes})


class InvalidCursorError(AgentHostError, ValueError):
    """A cursor string that was not produced by `Cursor.encode` (or was altered)."""


_CURSOR = struct.Struct(">q16s")


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in ``(created_at, id)`` order; a query with ``after=cursor`` resumes past it."""

    created_at: datetime
    id: UUID

    def __post_init__(self) -> None:
        object.__setattr__(self, "created_at", _as_utc(self.created_at, "cursor created_at"))

    def encode(self) -> str:
        """An opaque URL-safe string (for HTTP ``?cursor=``); `decode` reverses it."""
        micros = _micros(self.created_at)
        return base64.urlsafe_b64encode(_CURSOR.pack(micros, self.id.bytes)).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Parse a string made by `encode`; raises `InvalidCursorError` on anything else."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            micros, id_bytes = _CURSOR.unpack(raw)
            return cls(_from_micros(micros), UUID(bytes=id_bytes))
        except (binascii.Error, struct.error, ValueError, OverflowError, TypeError) as exc:
            raise InvalidCursorError(f"invalid memory cursor {token!r}: {exc}") from exc


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(value: datetime) -> int:
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


class MemoryQuery(BaseModel):
    """Which memories to read: every filter set must match (None = any).

    ``start`` is inclusive and ``end`` exclusive on ``created_at``. Results are ordered by
    ``(created_at, id)`` in `order`; ``after`` keeps only rows strictly past that cursor in that
    order (keyset paging); ``limit`` caps the count (None = all).
    """

    model_config = ConfigDict(frozen=True)

    agent_id: UUID | None = None
    entity_id: UUID | None = None
    room_id: UUID | None = None
    table_name: str | None = Field(default=None, pattern=_TABLE_NAME)
    start: datetime | None = None
    end: datetime | None = None
    unique: bool | None = None
    order: Order = "desc"
    limit: int | None = Field(default=None, ge=0)
    after: Cursor | None = None
    with_embeddings: bool = True
    """False: the memories come back with ``embedding`` None, the vectors neither read nor
    decoded (a prompt's history, a listing: what does not use them should not pay for them)."""

    @field_validator("start", "end")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else _as_utc(value, "start/end")

    @property
    def filters_rows(self) -> bool:
        """Whether a filter besides ``table_name`` is set (agent, entity, room, time, unique)."""
        return not (
            self.agent_id is None
            and self.entity_id is None
            and self.room_id is None
            and self.start is None
            and self.end is None
            and self.unique is None
        )

    def matches(self, memory: Memory) -> bool:
        """Whether `memory` passes every filter (not ``limit``): the reference semantics."""
        if self.agent_id is not None and memory.agent_id != self.agent_id:
            return False
        if self.entity_id is not None and memory.entity_id != self.entity_id:
            return False
        if self.room_id is not None and memory.room_id != self.room_id:
            return False
        if self.table_name is not None and memory.table_name != self.table_name:
            return False
        if self.start is not None and memory.created_at < self.start:
            return False
        if self.end is not None and memory.created_at >= self.end:
            return False
        if self.unique is not None and memory.unique != self.unique:
            return False
        if self.after is not None:
            key = memory.cursor
            if self.order == "asc" and not key > self.after:
                return False
            if self.order == "desc" and not key < self.after:
                return False
        return True

    def sort_key(self, memory: Memory) -> tuple[datetime, UUID]:
        """The ordering key; sort with ``reverse=(order == "desc")``."""
        return (memory.created_at, memory.id)
