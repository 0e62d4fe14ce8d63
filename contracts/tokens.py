"""Typed service keys.

A `Token[T]` names a service and carries its type, so `container.resolve(DATABASE)` is typed
`DatabaseAdapter` for mypy and the container can match constructor annotations to tokens at run
time (``db: DatabaseAdapter`` resolves the token whose type is `DatabaseAdapter`).

Each area declares its well-known token in its own contracts module, e.g.
``DATABASE: Token[DatabaseAdapter] = Token("database", DatabaseAdapter)`` in contracts/storage.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar, final, overload

T = TypeVar("T")

__all__ = ["Token"]


@final
class Token(Generic[T]):
    """A named, typed key for a service.

    The name is the key: the container treats tokens with the same name as the same service
    (so a token re-created by a reloaded plugin module still finds its service) and config pins
    refer to it (``services: {database: postgres}``). Names are lowercase identifiers such as
    ``database`` or ``event_store``; plugin-defined tokens should be prefixed with the plugin
    name (``weather.client``).

    ``Token("database", DatabaseAdapter)`` is typed for mypy *and* matched by annotation: a
    parameter ``db: DatabaseAdapter`` gets it. ``Token[DatabaseAdapter]("replica")`` (or an
    annotated ``REPLICA: Token[DatabaseAdapter] = Token("replica")``) is typed for mypy only and
    injected only where asked for explicitly, ``db: Annotated[DatabaseAdapter, REPLICA]``; use
    that form for a second token of a type that already has one.
    """

    __slots__ = ("name", "type")

    # `Callable[..., T]` rather than `type[T]`: mypy rejects protocols and ABCs for `type[T]`,
    # and the token types of the contracts are mostly protocols.
    @overload
    def __init__(self, name: str, type_: Callable[..., T]) -> None: ...
    @overload
    def __init__(self, name: str, type_: None = None) -> None: ...
    def __init__(self, name: str, type_: Any = None) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"a Token needs a non-empty name, got {name!r}")
        self.name = name
        self.type: Any = type_
        """The annotation type constructor injection maps to this token, or None."""

    def __repr__(self) -> str:
        return f"Token({self.name!r})"
