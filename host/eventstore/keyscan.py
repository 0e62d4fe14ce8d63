"""Whether a payload's JSON could hold a key that names a secret, told without serializing it.

The keys of a model's JSON are its field names (known from its class, checked once and cached)
plus whatever keys the dicts, extras and untyped fields it holds have at run time: `scan` checks
the class-level ones from the cache and walks only those run-time parts (usually a few small
dicts), skipping fields that can only hold scalars and the fields left out of the record. It
answers `CLEAN` (no key can name a secret), `SECRET` (one does: mask it the slow way) or
`OPAQUE` (something it cannot see through: a dataclass, a custom serializer, a computed field,
a non-string key), for which the caller falls back to scanning the serialized text. A model
whose config writes NaN and infinities as bare ``NaN``/``Infinity`` (not JSON) is `SECRET`
too: the slow way is the one that writes them as null.
"""

from __future__ import annotations

import enum
import weakref
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import PurePath
from types import UnionType
from typing import (
    Annotated,
    Any,
    Literal,
    NamedTuple,
    TypeGuard,
    TypeVar,
    Union,
    get_args,
    get_origin,
)
from uuid import UUID

from pydantic import BaseModel, SecretBytes, SecretStr

from contracts.vector import Vector

__all__ = ["CLEAN", "OPAQUE", "SECRET", "is_model", "remember", "scan"]

CLEAN, SECRET, OPAQUE = 0, 1, 2

_LEAF_TYPES: frozenset[type] = frozenset(
    {str, int, float, bool, bytes, UUID, datetime, date, time, timedelta, Decimal, Vector}
    | {type(None)}
)
"""Exact types whose JSON holds no key (checked with ``type(x) in``: fast)."""
_LEAF_CLASSES = (
    str,
    int,
    float,
    bytes,
    UUID,
    date,
    time,
    timedelta,
    Decimal,
    enum.Enum,
    PurePath,
    SecretStr,
    SecretBytes,
    Vector,  # a list of numbers
)
"""Classes (and their subclasses) whose JSON holds no key."""


def _leaf_annotation(annotation: Any) -> bool:
    """Whether a field so annotated can only hold values whose JSON has no keys."""
    if annotation is None or annotation is type(None):
        return True
    if isinstance(annotation, type):
        return issubclass(annotation, _LEAF_CLASSES)
    origin = get_origin(annotation)
    if origin is Literal:
        return True
    if origin is Annotated:
        return _leaf_annotation(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        return all(_leaf_annotation(arg) for arg in get_args(annotation))
    return False


def _secret_typed(annotation: Any) -> bool:
    """Whether a field so annotated holds a pydantic secret (serialized masked, as `MASK`)."""
    if isinstance(annotation, type):
        return issubclass(annotation, SecretStr | SecretBytes)
    origin = get_origin(annotation)
    if origin is Annotated:
        return _secret_typed(get_args(annotation)[0])
    if origin is Union or origin is UnionType:
        args = [a for a in get_args(annotation) if a is not type(None)]
        return bool(args) and all(_secret_typed(a) for a in args)
    return False


class _ClassKeys(NamedTuple):
    verdict: int
    """`SECRET` or `OPAQUE` when the class alone decides, else `CLEAN`."""
    walk: tuple[str, ...]
    """Fields whose values can hold keys of their own (looked at at run time)."""
    extra: bool
    """Whether extra fields are allowed (their keys are looked at at run time)."""


def _serializes_with_functions(schema: Any) -> bool:
    """Whether a core schema serializes some value with a function of its own (a
    ``PlainSerializer``/``WrapSerializer`` in an ``Annotated`` field, at any depth, or a
    type's custom serializer): keys it outputs cannot be told from the annotation. pydantic's
    own (``SecretStr``, ``Path``) output no keys."""
    if isinstance(schema, dict):
        serialization = schema.get("serialization")
        if isinstance(serialization, dict) and serialization.get("type") in _FUNCTION_SER:
            function = serialization.get("function")
            module = getattr(function, "__module__", None) or ""
            keyless = function in _KEYLESS_SERIALIZERS
            if not keyless and module != "pydantic" and not module.startswith("pydantic."):
                return True
        return any(_serializes_with_functions(item) for item in schema.values())
    if isinstance(schema, list | tuple):
        return any(_serializes_with_functions(item) for item in schema)
    return False


_FUNCTION_SER = frozenset({"function-plain", "function-wrap"})
_KEYLESS_SERIALIZERS: tuple[Any, ...] = (Vector.tolist,)
"""Serializer functions known to output no keys: a `Vector`'s (a list of numbers). Without
this, every model holding a `Memory` (its ``embedding``) would be searched as text."""


K = TypeVar("K")
V = TypeVar("V")


def remember(cache: dict[K, V], kind: type, key: K, value: V) -> V:
    """``cache[key] = value`` (a key naming class `kind` by its id) until `kind` is collected:
    then the entry goes, before the id can be reused. A cache per class that keeps no class
    alive, so the classes of a plugin reloaded in dev mode are freed. A
    `weakref.WeakKeyDictionary` would do the same at over twice the cost of a lookup (its
    ``get`` is Python code); these are asked for every model of every recorded event."""
    if key not in cache:
        weakref.finalize(kind, cache.pop, key, None).atexit = False
    cache[key] = value
    return value


_CLASS_KEYS: dict[tuple[int, Any, frozenset[str]], _ClassKeys] = {}
"""(id of a model class, is_secret, drop) -> its `_ClassKeys` (see `remember`)."""


def _class_keys(cls: type[BaseModel], is_secret: Any, drop: frozenset[str]) -> _ClassKeys:
    key = (id(cls), is_secret, drop)
    found = _CLASS_KEYS.get(key)
    if found is None:
        found = remember(_CLASS_KEYS, cls, key, _keys_of(cls, is_secret, drop))
    return found


def _keys_of(cls: type[BaseModel], is_secret: Any, drop: frozenset[str]) -> _ClassKeys:
    if cls.model_config.get("ser_json_inf_nan") == "constants":
        # its JSON writes NaN and Infinity bare (not JSON: the stores refuse or keep them
        # as is), whatever the encoder asks: the slow way turns them into null
        return _ClassKeys(SECRET, (), False)
    decorators = cls.__pydantic_decorators__
    if (
        decorators.model_serializers
        or decorators.field_serializers
        or cls.model_computed_fields
        or _serializes_with_functions(cls.__pydantic_core_schema__)
    ):
        return _ClassKeys(OPAQUE, (), False)
    walk = []
    for name, info in cls.model_fields.items():
        if name in drop:
            continue  # left out of the record (or, if not, found by the caller's text check)
        names = {name, info.alias, info.serialization_alias} - {None}
        if any(is_secret(n) for n in names) and not _secret_typed(info.annotation):
            return _ClassKeys(SECRET, (), False)
        if not _leaf_annotation(info.annotation):
            walk.append(name)
    return _ClassKeys(CLEAN, tuple(walk), cls.model_config.get("extra") == "allow")


_CONTAINERS: frozenset[type] = frozenset({dict, list, tuple, set, frozenset})
"""Exact container types: an empty one holds no key (skipped without a call)."""

_MODEL_META = type(BaseModel)
"""pydantic's model metaclass: every model class is an instance of it (or of a subclass)."""


def is_model(value: object) -> TypeGuard[BaseModel]:
    """``isinstance(value, BaseModel)``, told from the class's metaclass where it can be
    (the isinstance goes through ``ABCMeta.__instancecheck__``: slow, and asked for every
    model a payload holds). Nothing is remembered per class, so no class is kept alive."""
    meta = type(type(value))
    if meta is _MODEL_META:
        return True
    if meta is type:  # a model class's metaclass is pydantic's: a plain class is no model
        return False
    return issubclass(type(value), BaseModel)  # another metaclass (ABCMeta, an enum's...)


def scan(value: Any, is_secret: Any, drop: frozenset[str]) -> int:
    """`CLEAN`, `SECRET` or `OPAQUE` for the keys of `value`'s JSON; `is_secret(key)` says
    which key names a secret (a cached function of the key)."""
    kind = type(value)
    if kind in _LEAF_TYPES:
        return CLEAN
    if kind is dict:
        for key, item in value.items():
            if type(key) is str:
                if is_secret(key):
                    return SECRET
            elif type(key) not in _LEAF_TYPES:
                return OPAQUE  # a key whose JSON text we would have to guess
            inner = type(item)
            if inner not in _LEAF_TYPES and (inner not in _CONTAINERS or item):
                found = scan(item, is_secret, drop)
                if found:
                    return found
        return CLEAN
    if kind in _CONTAINERS:  # a list, tuple or set
        for item in value:
            inner = type(item)
            if inner not in _LEAF_TYPES and (inner not in _CONTAINERS or item):
                found = scan(item, is_secret, drop)
                if found:
                    return found
        return CLEAN
    if is_model(value):
        plan = _CLASS_KEYS.get((id(kind), is_secret, drop)) or _class_keys(kind, is_secret, drop)
        if plan.verdict:
            return plan.verdict
        values = value.__dict__
        for name in plan.walk:
            item = values.get(name)
            inner = type(item)
            if inner not in _LEAF_TYPES and (inner not in _CONTAINERS or item):
                found = scan(item, is_secret, drop)
                if found:
                    return found
        if plan.extra and value.__pydantic_extra__:
            return scan(value.__pydantic_extra__, is_secret, drop)
        return CLEAN
    if isinstance(value, _LEAF_CLASSES):
        return CLEAN
    return OPAQUE
