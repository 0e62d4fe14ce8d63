"""Turning bus payloads into JSON event data that is safe to keep forever.

Payloads are pydantic models (or dataclasses, dicts...): `payload_data` dumps them the way
``model_dump(mode="json")`` does, so ``SecretStr`` fields come out masked, then `redact` masks
every value under a key that names a secret (``api_key``, ``password``, ``authorization``...),
wherever it is nested: a plugin passing its raw settings dict must not leak a key either.
`PayloadEncoder` gives the same data as JSON text, mostly in one pass of pydantic-core's
serializer (the audit trail's hot path).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from types import UnionType
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, JsonValue
from pydantic_core import to_json, to_jsonable_python

from host.secrets import MASK, SECRET_KEYS

from .keyscan import OPAQUE, SECRET, is_model, remember, scan

__all__ = [
    "MASK",
    "SECRET_KEYS",
    "PayloadEncoder",
    "payload_data",
    "redact",
    "schema_version_of",
]


_TOKEN = re.compile(r"(^|_)token$|token$")


def _normalise(key: str) -> str:
    return key.lower().replace("-", "_")


@functools.lru_cache(maxsize=4096)
def _is_secret(key: str, fragments: tuple[str, ...]) -> bool:
    norm = _normalise(key)
    if _TOKEN.search(norm):
        return True
    flat = norm.replace("_", "")
    return any(f in norm or f.replace("_", "") in flat for f in fragments)


def redact(
    value: Any, keys: Iterable[str] = SECRET_KEYS, drop: frozenset[str] = frozenset()
) -> Any:
    """`value` (JSON data) with every value under a secret-looking key replaced by `MASK`
    (and every key in `drop` left out)."""
    fragments = tuple(_normalise(k) for k in keys)
    return _redact(value, fragments, drop)


def _redact(value: Any, fragments: tuple[str, ...], drop: frozenset[str]) -> Any:
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if k in drop:
                continue
            if v is None:
                out[k] = None
            elif _is_secret(str(k), fragments):
                out[k] = MASK
            else:
                out[k] = _redact(v, fragments, drop)
        return out
    if isinstance(value, list):
        # Vectors and other scalar lists (the bulk of many payloads) need no walk.
        if not any(isinstance(v, dict | list) for v in value):
            return value
        return [_redact(v, fragments, drop) for v in value]
    return value


def payload_data(
    payload: object, keys: Iterable[str] = SECRET_KEYS, drop: frozenset[str] = frozenset()
) -> dict[str, JsonValue]:
    """JSON data of a bus payload, secrets masked and keys in `drop` left out; a non-mapping
    payload becomes ``{"value": ...}``. Values JSON cannot hold become their ``repr``."""
    raw = to_jsonable_python(payload, fallback=repr, serialize_unknown=True)
    data = redact(raw, keys, drop)
    if not isinstance(data, dict):
        return {"value": data}
    return data


def _model_classes(annotation: Any) -> tuple[type[BaseModel], ...] | None:
    """The model classes a field so annotated can hold itself (not inside a container): a
    tuple, empty if none, or None if it cannot be told from the annotation (``Any``, the
    ``BaseModel`` base, a type variable)."""
    if annotation is Any or annotation is object or annotation is BaseModel:
        return None
    if isinstance(annotation, TypeVar):
        return None
    if isinstance(annotation, type):
        return (annotation,) if issubclass(annotation, BaseModel) else ()
    if get_origin(annotation) in (Union, UnionType, Annotated):
        found: list[type[BaseModel]] = []
        for arg in get_args(annotation):
            inner = _model_classes(arg)
            if inner is None:
                return None
            found.extend(inner)
        return tuple(found)
    return ()


_Plan = tuple[dict[str, Any], tuple[str, ...]]

_PLANS: dict[tuple[int, frozenset[str]], _Plan] = {}
"""(id of a model class, drop) -> its plan (`keyscan.remember`: no class kept alive)."""


def _model_plan(cls: type[BaseModel], drop: frozenset[str]) -> _Plan:
    """What to leave out of a model of class `cls`: the part known from the class (its `drop`
    fields, and those of the one model class a field can hold), and the fields whose models
    must be looked at when serializing (``Any``, a ``BaseModel``-typed field, a union)."""
    key = (id(cls), drop)
    plan = _PLANS.get(key)
    if plan is None:
        plan = remember(_PLANS, cls, key, _plan_of(cls, drop))
    return plan


def _plan_of(cls: type[BaseModel], drop: frozenset[str]) -> _Plan:
    static: dict[str, Any] = {}
    dynamic: list[str] = []
    _PLANNING.add(cls)
    try:
        for name, info in cls.model_fields.items():
            _plan_field(name, info.annotation, drop, static, dynamic)
    finally:
        _PLANNING.discard(cls)
    return static, tuple(dynamic)


_PLANNING: set[type[BaseModel]] = set()
"""Classes whose plan is being made (a model that can hold itself is planned at run time)."""


def _plan_field(
    name: str, annotation: Any, drop: frozenset[str], static: dict[str, Any], dynamic: list[str]
) -> None:
    if name in drop:
        static[name] = True
        return
    classes = _model_classes(annotation)
    if classes is None or len(classes) > 1 or (classes and classes[0] in _PLANNING):
        dynamic.append(name)
    elif classes:
        inner, inner_dynamic = _model_plan(classes[0], drop)
        if inner_dynamic:
            dynamic.append(name)
        elif inner:
            static[name] = inner


def _exclusions(model: BaseModel, drop: frozenset[str]) -> dict[str, Any]:
    """pydantic's ``exclude`` spec leaving out every `drop` field of `model` and of the models
    its fields hold (models inside lists or dicts, or of a subclass with more fields than its
    field's class, are left to the text check)."""
    kind = type(model)
    static, dynamic = _PLANS.get((id(kind), drop)) or _model_plan(kind, drop)
    if not dynamic:
        return static  # shared: never modified
    spec = dict(static)
    values = model.__dict__
    for name in dynamic:
        value = values.get(name)
        if is_model(value):
            inner = _exclusions(value, drop)
            if inner:
                spec[name] = inner
    return spec


class PayloadEncoder:
    """Bus payloads to JSON text: `payload_data`'s result, serialized, at a fraction of its cost.

    `payload_data` walks the whole dumped payload in Python to find secret keys and embeddings;
    that walk, and serializing embeddings only to throw them away, cost more than everything
    else the audit trail does per event. Here pydantic-core (Rust) serializes the payload once,
    leaving out the `drop` fields of the models it holds (found from their classes, cached).
    Whether a key could name a secret is told by `keyscan.scan` from the model classes and the
    few dicts the payload holds, before serializing; where it cannot see (a dataclass, a custom
    serializer), the serialized text is searched instead: no key can name a secret unless one
    of the secret fragments (or ``token":``, a key ending in ``token``) occurs somewhere in the
    lower-cased text with ``-``/``_`` removed. A `drop` key left in the text (inside a dict)
    also sends the payload the slow way. Only payloads that may hold a secret key or a dropped
    key go through `payload_data`; every check over-approximates, so the data is the same either
    way (tests/eventstore/test_recording.py holds the two together).
    """

    def __init__(
        self, keys: Iterable[str] = SECRET_KEYS, drop: frozenset[str] = frozenset()
    ) -> None:
        self.keys = tuple(keys)
        self.drop = drop
        self._needles = (
            *sorted({_normalise(k).replace("_", "") for k in self.keys}),
            'token":',
            'token\\n":',  # `_TOKEN`'s ``$`` also matches before a key's final newline
        )
        self._drop_keys = tuple(json.dumps(k) + ":" for k in sorted(drop))
        fragments = tuple(_normalise(k) for k in self.keys)
        self._is_secret = functools.lru_cache(maxsize=4096)(lambda key: _is_secret(key, fragments))

    def __call__(self, payload: object) -> str:
        """`payload` as JSON object text, secrets masked and `drop` keys left out (strict JSON:
        infinities and NaN become null, as both databases want)."""
        verdict = scan(payload, self._is_secret, self.drop)
        if verdict == SECRET:
            return self.slow(payload)
        exclude = _exclusions(payload, self.drop) if self.drop and is_model(payload) else None
        try:
            text = to_json(
                payload,
                exclude=exclude or None,
                fallback=repr,
                serialize_unknown=True,
                inf_nan_mode="null",
            ).decode()
        except (ValueError, UnicodeDecodeError):  # e.g. a lone surrogate: let the slow path say
            return self.slow(payload)
        if verdict == OPAQUE:  # keys `scan` could not see: look for secrets in the text
            if "NaN" in text or "Infinity" in text:  # maybe a config's bare constants
                return self.slow(payload)
            flat = text.lower().replace("_", "").replace("-", "")
            for needle in self._needles:
                if needle in flat:
                    return self.slow(payload)
        for key in self._drop_keys:
            if key in text:
                return self.slow(payload)
        if not text.startswith("{"):
            text = f'{{"value":{text}}}'
        return text

    def slow(self, payload: object) -> str:
        """The same text through `payload_data` (the Python walk)."""
        data = payload_data(payload, self.keys, self.drop)
        return to_json(data, inf_nan_mode="null").decode()


def schema_version_of(payload: object) -> int:
    """The payload's schema version: its class's ``schema_version`` (an int >= 1), else 1."""
    kind = type(payload)
    found = _SCHEMA_VERSIONS.get(id(kind))
    if found is None:
        version = kind.__dict__.get("schema_version", 1)
        found = version if isinstance(version, int) and version >= 1 else 1
        found = remember(_SCHEMA_VERSIONS, kind, id(kind), found)
    return found


_SCHEMA_VERSIONS: dict[int, int] = {}
"""Id of a class -> its schema version (`keyscan.remember`: no class kept alive)."""
