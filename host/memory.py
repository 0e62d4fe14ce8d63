"""Memory helpers of the stores: one JSON text and one set of limits for content and metadata
on every store, table name checks, fast rows read back (`trusted_memory`). Store plugins reach
them through `host.storekit`; `MemoryManager` (streaming reads) lives in `contracts.streaming`
and is re-exported here for the host's own modules."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import pydantic_core

from contracts.memory import (
    _DECODE,
    _PENDING,
    MAX_JSON_DEPTH,
    MAX_JSON_LENGTH,
    Content,
    Memory,
    MemoryQuery,
    PendingDecode,
)
from contracts.storage import InvalidMemoryError, InvalidQueryError
from contracts.streaming import DEFAULT_PAGE_SIZE, MemoryManager
from host.pydantic_slots import set_dict as _set_dict
from host.pydantic_slots import set_extra as _set_extra
from host.pydantic_slots import set_fields_set as _set_fields_set
from host.pydantic_slots import set_private as _set_private

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MemoryManager",
    "RowDecoder",
    "check_table_name",
    "content_from_json",
    "content_json",
    "json_limit_problem",
    "lazy_memory",
    "metadata_from_json",
    "metadata_json",
    "nesting_depth",
    "trusted_memory",
]


def check_table_name(name: str) -> None:
    """`InvalidQueryError` unless `name` is a valid memory table name (the adapters' check of
    a ``table_name`` argument, which bypasses `Memory`'s own validation)."""
    try:
        MemoryQuery(table_name=name)
    except ValueError as exc:
        raise InvalidQueryError(f"invalid table name {name!r}: {exc}") from exc


_new = object.__new__
# `trusted_memory` and `content_from_json` set what ``model_construct`` sets; that is all a
# Memory or a Content holds as long as neither has private attributes or a post-init hook and
# Memory takes no extras (checked here, at import). Both are frozen: pydantic never changes a
# frozen model's fields set in place (``model_copy`` copies it first), so rows share one.
for _model in (Memory, Content):
    assert not _model.__private_attributes__ and _model.__pydantic_post_init__ is None
    assert _model.model_config.get("frozen")
assert Memory.model_config.get("extra") in (None, "ignore")
assert Content.model_config.get("extra") == "allow" and set(Content.model_fields) == {"text"}
_MEMORY_FIELDS = set(Memory.model_fields)
_TEXT_ONLY = {"text"}
_content_sets: dict[tuple[str, ...], set[str]] = {}
"""Fields sets of stored contents by their extra keys (the shapes a host writes are few)."""
_CONTENT_SHAPES = 256


def metadata_json(value: Any) -> str:
    """`value` (a memory's metadata) as strict JSON text, the same on every store.

    NaN and infinities, which Python's json writes but JSON (and PostgreSQL's ``json`` type)
    does not have, are a ValueError, like a value JSON cannot hold is a TypeError; metadata
    nested deeper than `MAX_JSON_DEPTH` or longer than `MAX_JSON_LENGTH` is an
    `InvalidMemoryError`: the row's error in a batch, before anything is written."""
    if type(value) is dict and not value:  # most memories' (json.dumps: ~4 us)
        return "{}"
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


_from_json = pydantic_core.from_json


def metadata_from_json(text: str) -> Any:
    """Metadata read back from its JSON text (`metadata_json`'s inverse), by pydantic-core's
    parser: 10x faster than ``json.loads`` on the small objects metadata usually is, which
    counts when a page decodes a thousand rows. A lone surrogate (``"\\ud800"``, which Python's
    json writes and pydantic-core refuses) is read by ``json.loads``."""
    if text == "{}":
        return {}
    try:
        return _from_json(text)
    except ValueError:
        return json.loads(text)


def _validate_content(text: str) -> Content:
    content: Content = _content_validator(text)
    return content


_content_validator = Content.__pydantic_validator__.validate_json


def content_from_json(text: str) -> Content:
    """A stored `Content` from its JSON text: what ``Content.model_validate_json`` gives.

    A JSON object whose ``text`` is a string (what every store writes: `content_json`) is
    built without validating it again, with fewer objects than pydantic-core makes (the fields
    set is shared by contents of one shape): a page of a thousand rows makes a thousand, and the
    garbage collector walks each of them. Anything else (no ``text``, a ``text`` that is not a
    string, not an object, not JSON) goes to the validator, which answers, or fails, as it
    always did."""
    try:
        fields = _from_json(text)
    except ValueError:
        return _validate_content(text)
    if type(fields) is not dict:
        return _validate_content(text)
    value = fields.pop("text", None)
    if type(value) is not str:
        return _validate_content(text)
    if fields:  # extra fields: pydantic's fields set names them too
        shape = tuple(fields)
        given = _content_sets.get(shape)
        if given is None:
            given = {"text", *shape}
            if len(_content_sets) < _CONTENT_SHAPES:
                _content_sets[shape] = given
        extra = fields
    else:
        given, extra = _TEXT_ONLY, {}
    content = _new(Content)
    _set_dict(content, {"text": value})
    _set_fields_set(content, given)
    _set_extra(content, extra)
    _set_private(content, None)
    return content


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
    _set_dict(memory, values)
    _set_fields_set(memory, _MEMORY_FIELDS)  # shared: see above
    _set_extra(memory, None)
    _set_private(memory, None)
    return memory


@dataclass(frozen=True, slots=True)
class RowDecoder:
    """A `lazy_memory` decoder: `whole` gives every field from the stored values, `alone` the
    fields it can give one at a time (a page read for its vectors, or for its last cursor,
    then decodes no content, metadata or other field)."""

    whole: PendingDecode
    alone: Mapping[str, Callable[[Any], Any]]

    def __call__(self, raw: Any) -> dict[str, Any]:
        return self.whole(raw)


def lazy_memory(values: dict[str, Any], decode: PendingDecode, raw: Any) -> Memory:
    """A `Memory` holding only `values` (some of its fields: those cheap to read now) until
    one of the others is first read, or the memory is compared, dumped, copied...: then
    ``decode(raw)`` gives its whole dict, every field in field order (the dict `trusted_memory`
    takes, which `values` must agree with), and it becomes the memory's own. A page of a
    thousand rows read for their count, rooms or last cursor does not build a thousand
    contents, times and vectors (a `RowDecoder` also decodes a field by itself when only it is
    read). Unvalidated, like `trusted_memory`: `decode` must give valid fields, and raise on
    stored data it cannot read (it raises at that first use)."""
    values[_PENDING] = raw
    values[_DECODE] = decode
    memory = _new(Memory)
    _set_dict(memory, values)
    _set_fields_set(memory, _MEMORY_FIELDS)
    _set_extra(memory, None)
    _set_private(memory, None)
    return memory
