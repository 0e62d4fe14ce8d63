"""Turning bus payloads into JSON event data that is safe to keep forever.

Payloads are pydantic models (or dataclasses, dicts...): `payload_data` dumps them the way
``model_dump(mode="json")`` does, so ``SecretStr`` fields come out masked, then `redact` masks
every value under a key that names a secret (``api_key``, ``password``, ``authorization``...),
wherever it is nested: a plugin passing its raw settings dict must not leak a key either.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from typing import Any

from pydantic import JsonValue
from pydantic_core import to_jsonable_python

__all__ = ["MASK", "SECRET_KEYS", "payload_data", "redact", "schema_version_of"]

MASK = "**********"
"""What a secret is replaced with (the same mask pydantic uses for ``SecretStr``)."""

SECRET_KEYS: tuple[str, ...] = (
    "api_key",
    "apikey",
    "password",
    "passwd",
    "secret",
    "authorization",
    "credential",
    "private_key",
    "cookie",
)
"""Fragments of key names whose values are never recorded (matched case-insensitively,
ignoring ``-``/``_``). Keys ending in ``token`` (``token``, ``access_token``, ``hf_token``) are
secret too; token counts (``max_tokens``, ``token_count``) are not."""

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
    (and every value under a key in `drop` replaced by None)."""
    fragments = tuple(_normalise(k) for k in keys)
    return _redact(value, fragments, drop)


def _redact(value: Any, fragments: tuple[str, ...], drop: frozenset[str]) -> Any:
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if v is None or k in drop:
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
    """JSON data of a bus payload, secrets masked and keys in `drop` emptied; a non-mapping
    payload becomes ``{"value": ...}``. Values JSON cannot hold become their ``repr``."""
    raw = to_jsonable_python(payload, fallback=repr, serialize_unknown=True)
    data = redact(raw, keys, drop)
    if not isinstance(data, dict):
        return {"value": data}
    return data


def schema_version_of(payload: object) -> int:
    """The payload's schema version: its class's ``schema_version`` (an int >= 1), else 1."""
    version = type(payload).__dict__.get("schema_version", 1)
    return version if isinstance(version, int) and version >= 1 else 1
