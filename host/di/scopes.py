"""The tree of scopes: the state each scope holds and how lookups walk up to its parents.

A `Node` is one scope (the app container, an agent scope or a message scope). It holds the
bindings made in it, which of them won, the providers built in it (`host.di.graph`) and the
open scopes below it. `Container` (the public facade) is a `Node`; the functions of the other
modules of this package work on nodes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Self

from dependency_injector import providers

from contracts.services import Scope
from contracts.tokens import Token
from host.di.bindings import Binding, ChoiceLog, TokenIndex
from host.di.errors import ScopeClosedError

if TYPE_CHECKING:
    from host.di.graph import Entry, Template

__all__ = ["Node", "Shared"]


class Shared:
    """State shared by a container and all its scopes: known tokens, pins, logged choices,
    pending tear-downs."""

    __slots__ = ("choices", "pins", "retired", "seq", "tasks", "tokens")

    def __init__(self, pins: Mapping[str, str]) -> None:
        self.tokens = TokenIndex()
        self.choices = ChoiceLog()
        self.pins: dict[str, str] = dict(pins)
        self.seq = 0
        """Registration counter: on equal priorities the later binding wins."""
        self.tasks: set[asyncio.Task[None]] = set()
        """Background tear-downs of resources dropped by `unregister_owner`."""
        self.retired: list[tuple[providers.Provider[Any], str]] = []
        """Resources dropped outside an event loop, torn down by the app scope's `aclose`."""


class Node:
    """One scope's state. Attributes are private to the `host.di` package."""

    __slots__ = (
        "_acache",
        "_bindings",
        "_cache",
        "_children",
        "_chosen",
        "_closed",
        "_entries",
        "_kind",
        "_level",
        "_order",
        "_parent",
        "_shared",
        "_templates",
    )

    def _setup(self, parent: Node | None, kind: Scope, shared: Shared) -> None:
        self._parent = parent
        self._kind: Scope = kind
        self._level: int = 0 if parent is None else parent._level + 1
        self._shared = shared
        self._bindings: dict[str, list[Binding]] = {}
        self._chosen: dict[str, Binding] = {}
        self._entries: dict[str, Entry] = {}
        self._order: list[Entry] = []
        # Fast paths: token object -> provider to call. `_cache` holds providers whose call
        # returns the instance; `_acache` holds async transients whose call returns an awaitable.
        self._cache: dict[Token[Any], providers.Provider[Any]] = {}
        self._acache: dict[Token[Any], providers.Provider[Any]] = {}
        self._children: dict[Node, None] = {}
        self._templates: dict[str, Template] = {}
        self._closed = False

    def _child(self, kind: Scope) -> Self:
        """A new scope of `kind` below this one (no checks: see `Container.create_scope`)."""
        child = object.__new__(type(self))
        child._setup(self, kind, self._shared)
        self._children[child] = None
        return child

    def _check_open(self) -> None:
        if self._closed:
            raise ScopeClosedError(scope=self._kind)

    def _root(self) -> Node:
        node = self
        while node._parent is not None:
            node = node._parent
        return node

    def _chain(self) -> Iterator[Node]:
        """This scope and its enclosing ones, innermost first."""
        node: Node | None = self
        while node is not None:
            yield node
            node = node._parent

    def _subtree(self) -> list[Node]:
        """This scope and all open scopes below it, parents before children."""
        nodes = [self]
        for node in nodes:
            nodes.extend(node._children)
        return nodes

    def _find(self, name: str) -> Binding | None:
        """The binding of `name` that wins as seen from this scope."""
        node: Node | None = self
        while node is not None:
            binding = node._chosen.get(name)
            if binding is not None:
                return binding
            node = node._parent
        return None

    def _installed(self) -> dict[str, tuple[str, ...]]:
        """Every token name bound as seen from here -> who binds it (``host``: the host)."""
        owners: dict[str, list[str]] = {}
        for node in self._chain():
            for name, candidates in node._bindings.items():
                names = owners.setdefault(name, [])
                for binding in candidates:
                    label = binding.owner or "host"
                    if label not in names:
                        names.append(label)
        return {name: tuple(labels) for name, labels in owners.items()}
