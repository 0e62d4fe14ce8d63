"""Secrets in one place: the mask, finding secrets in settings, and scrubbing them from text.

Secret *values* (the ``SecretStr`` fields of the host config and of every plugin's validated
settings, secret-named keys of raw plugin sections, characters' ``settings.secrets``) are
registered once, where they are read (`register`); every text that leaves the process or is
kept goes through `scrub` (or `scrub_json` for JSON text) at its exit: log lines (host.logs),
plugin failure texts (host.loader), stored events (host.eventstore.common), HTTP error bodies
and streamed errors (host.http), metric tag values (host.metrics.guard) and the CLI's error
line. A model server or proxy that echoes the API key in its error text is the common case.

Scrubbing returns the very text it was given when no secret is registered or none occurs, so
the hot paths (the audit trail writes about 7 events a message) pay a substring test per
secret (``in``: several times faster than a regex alternation of the same literals, which
CPython's engine tries position by position); the precompiled pattern only replaces, in the
rare text that holds a secret (bench/scrubbing.py).

Secret *names* are found two ways: typed (``SecretStr`` fields, `secret_paths`) and, for raw
plugin sections that no model has validated yet, by name (`is_secret_name`). `masked` renders
a config for display with both hidden. `SECRET_KEYS` names the payload keys the audit trail
never records the values of.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, SecretStr
from pydantic_core import to_json

__all__ = [
    "MASK",
    "MIN_SECRET_LENGTH",
    "SECRETS",
    "SECRET_KEYS",
    "SecretRegistry",
    "is_secret_name",
    "masked",
    "register",
    "scrub",
    "scrub_data",
    "scrub_json",
    "secret_paths",
    "secret_values",
]

MASK = "**********"
"""What a secret is replaced with everywhere (the mask pydantic shows for ``SecretStr``)."""

MIN_SECRET_LENGTH = 4
"""Shorter values are not registered: masking them would garble ordinary text."""


class SecretRegistry:
    """The secret values to mask, with the patterns that find them (rebuilt on each addition,
    which happens at start and on a plugin's (re)load, never per message)."""

    def __init__(self) -> None:
        self._values: frozenset[str] = frozenset()
        # (the forms to look for, the pattern replacing them): swapped as one, so a scrub on
        # another thread never pairs new forms with an old pattern
        self._text: tuple[tuple[str, ...], re.Pattern[str] | None] = ((), None)
        self._json: tuple[tuple[str, ...], re.Pattern[str] | None] = ((), None)
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def add(self, values: Iterable[str]) -> None:
        """Mask these values from now on (values under `MIN_SECRET_LENGTH` are ignored)."""
        new = {v for v in values if isinstance(v, str) and len(v) >= MIN_SECRET_LENGTH}
        with self._lock:
            if new <= self._values:
                return
            self._values = self._values | new
            self._text = (tuple(sorted(self._values)), _pattern(self._values))
            # in JSON text a secret may appear escaped (quotes, backslashes, control
            # characters; non-ASCII as \\u escapes when the writer escapes it)
            forms = {
                form
                for value in self._values
                for form in (
                    value,
                    json.dumps(value, ensure_ascii=False)[1:-1],
                    json.dumps(value)[1:-1],
                )
            }
            self._json = (tuple(sorted(forms)), _pattern(forms))

    def clear(self) -> None:
        """Forget every secret (tests)."""
        with self._lock:
            self._values = frozenset()
            self._text = self._json = ((), None)

    def scrub(self, text: str) -> str:
        """`text` with every registered secret replaced by `MASK` (`text` itself if none
        occurs)."""
        forms, pattern = self._text
        for form in forms:
            if form in text:
                assert pattern is not None
                return pattern.sub(MASK, text)
        return text

    def scrub_json(self, text: str) -> str:
        """JSON `text` with every registered secret masked in its strings (keys included),
        still valid JSON; `text` itself if none occurs. Only a text that holds a secret is
        decoded (a mask put straight into the text could land after a backslash)."""
        forms, pattern = self._json
        for form in forms:
            if form in text:
                break
        else:
            return text
        assert pattern is not None
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):  # not JSON after all: mask what can be seen
            return pattern.sub(MASK, text)
        return to_json(self.scrub_data(data), inf_nan_mode="null").decode()

    def scrub_data(self, value: Any) -> Any:
        """JSON-like `value` (dicts, lists, strings) with every secret in its strings masked."""
        if not self._values:
            return value
        return self._data(value)

    def _data(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, Mapping):
            return {self._data(k): self._data(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._data(v) for v in value]
        return value


def _pattern(values: Iterable[str]) -> re.Pattern[str] | None:
    ordered = sorted(set(values), key=lambda v: (-len(v), v))  # the longest wins at a position
    return re.compile("|".join(map(re.escape, ordered))) if ordered else None


SECRETS = SecretRegistry()
"""The process's registry: what the host's exits mask."""

register = SECRETS.add
scrub = SECRETS.scrub
scrub_json = SECRETS.scrub_json
scrub_data = SECRETS.scrub_data


# finding secrets by name --------------------------------------------------------------------

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
"""Fragments of payload key names whose values are never recorded in the audit trail (matched
case-insensitively, ignoring ``-``/``_``, by `host.eventstore.recording`). Keys ending in
``token`` (``token``, ``access_token``, ``hf_token``) are secret too; token counts
(``max_tokens``, ``token_count``) are not. Narrower than `is_secret_name`'s words, which hide a
raw config value on display: an event's ``key`` or ``tokens`` field is data."""

_SECRET_WORDS = ("key", "secret", "password", "passwd", "token", "credential", "dsn")


def is_secret_name(name: str) -> bool:
    """Whether a raw (untyped) setting called `name` must be masked: plugin sections are
    plain data until the plugin's model validates them, so their secrets are found by name."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_WORDS)


def secret_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    """Dotted paths of `model`'s `SecretStr` fields (nested models included), e.g. a plugin
    settings model's, so ``config show`` masks its raw section by type, not only by name."""
    paths: list[str] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{info.alias or name}"
        members = (info.annotation, *get_args(info.annotation))
        if SecretStr in members:
            paths.append(path)
        for member in members:
            if isinstance(member, type) and issubclass(member, BaseModel):
                paths.extend(secret_paths(member, f"{path}."))
    return paths


def masked(value: Any, name: str = "") -> Any:
    """`value` as JSON-ready data with every secret replaced by a mask."""
    if isinstance(value, SecretStr):
        return MASK if value.get_secret_value() else ""
    if isinstance(value, BaseModel):
        data = {
            info.alias or key: masked(getattr(value, key), key)
            for key, info in type(value).model_fields.items()
        }
        data.update({k: masked(v, k) for k, v in (value.model_extra or {}).items()})
        return data
    if isinstance(value, Mapping):
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v, name) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str) and value and is_secret_name(name):
        return MASK
    return value


def secret_values(value: Any, name: str = "", *, typed: bool = False) -> list[str]:
    """Every secret in `value` (SecretStr values and secret-named settings): the values
    `masked` hides, for `register`.

    A list under a secret-looking name is a list of secrets in a raw section (``api_keys: [...]``)
    but data in a declared field (the audit plugin's ``redact_keys`` holds key *names*, which
    must not be masked out of every log line)."""
    if isinstance(value, SecretStr):
        return [value.get_secret_value()]
    if isinstance(value, BaseModel):
        fields = [(k, getattr(value, k), True) for k in type(value).model_fields]
        extra = [(k, v, False) for k, v in (value.model_extra or {}).items()]
        return [s for k, v, t in fields + extra for s in secret_values(v, k, typed=t)]
    if isinstance(value, Mapping):
        return [s for k, v in value.items() for s in secret_values(v, str(k))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in secret_values(v, "" if typed else name)]
    if isinstance(value, str) and value and is_secret_name(name):
        return [value]
    return []
