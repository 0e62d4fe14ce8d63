"""The streaming memory manager: read any number of memories from any `DatabaseAdapter`.

Pages are keyset-paginated on ``(created_at, id)``: each page asks for rows strictly past the
last row of the previous one, never ``OFFSET``. So

- every page costs the same however deep the stream is (an index range scan, not a skip);
- rows inserted or deleted while streaming never shift a page boundary: each row that existed
  when the stream began (and still exists) is yielded exactly once; new rows may or may not be;
- the next page is fetched only when the consumer asks for it (async generators pull), and at
  most one page is held, so memory stays flat however many rows there are.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

from contracts.memory import MAX_JSON_DEPTH, MAX_JSON_LENGTH, Content, Memory, MemoryQuery
from contracts.storage import DatabaseAdapter, InvalidMemoryError, InvalidQueryError

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MemoryManager",
    "check_table_name",
    "content_json",
    "json_limit_problem",
    "metadata_json",
    "nesting_depth",
    "trusted_memory",
]

DEFAULT_PAGE_SIZE = 500


class MemoryManager:
    """Streams memories from `db`; optionally bound to one agent (its queries default to it)."""

    def __init__(
        self,
        db: DatabaseAdapter,
        *,
        agent_id: UUID | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        _check_size(page_size)
        self.db = db
        self.agent_id = agent_id
        self.page_size = page_size

    def for_agent(self, agent_id: UUID) -> MemoryManager:
        """A manager over the same store whose queries default to `agent_id`."""
        return MemoryManager(self.db, agent_id=agent_id, page_size=self.page_size)

    def _scoped(self, query: MemoryQuery) -> MemoryQuery:
        if self.agent_id is not None and query.agent_id is None:
            return query.model_copy(update={"agent_id": self.agent_id})
        return query

    async def get_memories_batch(
        self, query: MemoryQuery, batch_size: int | None = None
    ) -> AsyncIterator[list[Memory]]:
        """Pages of at most `batch_size` memories matching `query`, in its order.

        ``query.after`` is where the stream starts and ``query.limit`` caps the total."""
        size = self.page_size if batch_size is None else batch_size
        _check_size(size)
        query = self._scoped(query)
        remaining = query.limit
        cursor = query.after
        while remaining is None or remaining > 0:
            want = size if remaining is None else min(size, remaining)
            page = await self.db.get_memories(
                query.model_copy(update={"after": cursor, "limit": want})
            )
            if not page:
                return
            cursor = page[-1].cursor
            if remaining is not None:
                remaining -= len(page)
            yield page
            if len(page) < want:
                return

    async def get_memories_stream(
        self, query: MemoryQuery, batch_size: int | None = None
    ) -> AsyncIterator[Memory]:
        """Every memory matching `query`, one at a time, fetched a page at a time."""
        async for page in self.get_memories_batch(query, batch_size):
            for memory in page:
                yield memory


def _check_size(size: int) -> None:
    if size < 1:
        raise InvalidQueryError(f"page size must be >= 1, got {size}")


def check_table_name(name: str) -> None:
    """`InvalidQueryError` unless `name` is a valid memory table name (the adapters' check of
    a ``table_name`` argument, which bypasses `Memory`'s own validation)."""
    try:
        MemoryQuery(table_name=name)
    except ValueError as exc:
        raise InvalidQueryError(f"invalid table name {name!r}: {exc}") from exc


_MEMORY_FIELDS = frozenset(Memory.model_fields)
_new = object.__new__
_set = object.__setattr__
# `trusted_memory` sets what `Memory.model_construct` sets; that is all a Memory holds as long as
# it has no private attributes, extras or post-init hook (checked here, at import).
assert not Memory.__private_attributes__ and Memory.__pydantic_post_init__ is None
assert Memory.model_config.get("extra") in (None, "ignore")


def metadata_json(value: Any) -> str:
    """`value` (a memory's metadata) as strict JSON text, the same on every store.

    NaN and infinities, which Python's json writes but JSON (and PostgreSQL's ``json`` type)
    does not have, are a ValueError, like a value JSON cannot hold is a TypeError; metadata
    nested deeper than `MAX_JSON_DEPTH` or longer than `MAX_JSON_LENGTH` is an
    `InvalidMemoryError`: the row's error in a batch, before anything is written."""
    try:
        text = json.dumps(value, allow_nan=False)
    except RecursionError:  # ~1,000 levels: the encoder gave up
        raise InvalidMemoryError("metadata", _too_deep()) from None
    if len(text) > MAX_JSON_LENGTH:
        raise InvalidMemoryError("metadata", _too_long(len(text)))
    # fewer brackets than the limit cannot nest past it: no walk (the usual case)
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH and nesting_depth(value) > MAX_JSON_DEPTH:
        raise InvalidMemoryError("metadata", _too_deep())
    return text


def content_json(content: Content) -> str:
    """`content` as the JSON text every store keeps; `InvalidMemoryError` if it nests deeper
    than `MAX_JSON_DEPTH` or is longer than `MAX_JSON_LENGTH` (what a store accepts can always
    be read back: pydantic's JSON parser refuses 200 levels)."""
    try:
        text = content.model_dump_json()
    except (ValueError, RecursionError) as exc:  # past pydantic's own serialization depth
        if "depth" in str(exc) or isinstance(exc, RecursionError):
            raise InvalidMemoryError("content", _too_deep()) from None
        raise
    if len(text) > MAX_JSON_LENGTH:
        raise InvalidMemoryError("content", _too_long(len(text)))
    # a text with fewer brackets than the limit cannot nest past it: no walk (the usual case)
    if text.count("{") + text.count("[") > MAX_JSON_DEPTH:
        try:
            deep = nesting_depth(json.loads(text)) > MAX_JSON_DEPTH
        except RecursionError:
            deep = True
        if deep:
            raise InvalidMemoryError("content", _too_deep())
    return text


def nesting_depth(value: Any, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep `value`'s dicts and lists nest (a scalar 0, ``{}`` 1, ``{"a": []}`` 2), counted
    without recursion (any depth is safe) and only up to ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                return deepest
        stack.extend(
            (child, depth + 1) for child in children if isinstance(child, dict | list | tuple)
        )
    return deepest


def json_limit_problem(value: Any) -> str | None:
    """Why a memory could not hold `value` as its content or metadata (nested too deep, too
    long as JSON), None if it could: the API's check, before anything runs."""
    if nesting_depth(value) > MAX_JSON_DEPTH:
        return _too_deep()
    try:
        length = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    except (TypeError, ValueError):
        return None  # not JSON: the caller's own checks say so
    return _too_long(length) if length > MAX_JSON_LENGTH else None


def _too_deep() -> str:
    return f"is nested deeper than {MAX_JSON_DEPTH} levels (the limit)"


def _too_long(length: int) -> str:
    return f"is {length:,} characters as JSON, over the limit of {MAX_JSON_LENGTH:,}"


def trusted_memory(values: dict[str, Any]) -> Memory:
    """A `Memory` over `values` (every field, already valid: read back from a store), unvalidated.

    What ``Memory.model_construct(**values)`` builds, in a fifth of its time: stores return
    thousands of rows per page or search, and the field-by-field default handling of
    ``model_construct`` was a third of the cost of each row. `values` becomes the model's own
    ``__dict__``: the caller hands it over.
    """
    memory = _new(Memory)
    _set(memory, "__dict__", values)
    _set(memory, "__pydantic_fields_set__", set(_MEMORY_FIELDS))
    _set(memory, "__pydantic_extra__", None)
    _set(memory, "__pydantic_private__", None)
    return memory
