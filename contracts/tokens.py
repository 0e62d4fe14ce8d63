"""Typed service keys.

A `Token[T]` names a service and carries its type, so `container.resolve(DATABASE)` is typed
`DatabaseAdapter` for mypy and the container can match constructor annotations to tokens at run time.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, final

T = TypeVar("T")

__all__ = ["Token"]


@final
class Token(Generic[T]):
    """A named, typed key for a service.

    Two tokens are the same key only if they are the same object: the name is for humans (errors,
    config pins, logs) and must be unique per host, which the container checks.
    """

    __slots__ = ("name", "type")

    def __init__(self, name: str, type_: type[T] | Any = None) -> None:
        if not name:
            raise ValueError("a Token needs a non-empty name")
        self.name = name
        # The annotation type that constructor injection maps to this token (None: token only).
        self.type: Any = type_

    def __repr__(self) -> str:
        return f"Token({self.name!r})"
