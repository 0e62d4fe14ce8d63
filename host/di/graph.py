"""The provider graph: bindings made into dependency-injector providers, scope by scope.

How a binding becomes a provider (lazily, on first resolve, then kept per scope):

- ``provide(token, obj)``                  -> ``providers.Object``
- singleton / scoped function or class      -> ``providers.Singleton`` in the scope that owns it
- generator / async generator factory       -> ``providers.Resource`` (torn down on scope close)
- transient                                 -> ``providers.Factory``

The factory's parameters become provider injections of the providers of the tokens they need, so
dependency-injector itself calls the graph (including its async support: an async dependency makes
its dependents awaitable). Here too: the scope checks (a service resolved where its scope is not
open, a long-lived service holding a shorter-lived one), cycles, and `validate`.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from dependency_injector import providers

from contracts.services import DependencyError
from contracts.tokens import Token
from host.di.bindings import Binding
from host.di.errors import (
    AsyncServiceError,
    DependencyCycleError,
    MissingDependencyError,
    ScopeClosedError,
    ScopeError,
    ServicePinError,
)
from host.di.plans import MISSING
from host.di.scopes import Node

__all__ = [
    "POOL_SIZE",
    "Entry",
    "Template",
    "find_or_raise",
    "invalidate",
    "materialize",
    "pinned_away",
    "recycle",
    "resolve_async",
    "resolve_sync",
    "validate",
]

POOL_SIZE: Final = 64
"""Reset providers kept per template: about the number of messages processed concurrently."""


@dataclass(slots=True, eq=False)
class Entry:
    """A binding made concrete in one scope: its provider and the names it depends on."""

    binding: Binding
    provider: providers.Provider[Any]
    deps: frozenset[str]
    is_async: bool
    home: Node
    value: providers.Provider[Any] | None = None
    """For an async cached service once awaited: its instance, so sync `resolve` can return it."""
    template: Template | None = None
    """Where this entry's provider goes back for reuse when its scope closes."""


@dataclass(slots=True, eq=False)
class Template:
    """How to build a per-scope service in any child scope of one parent.

    Creating a dependency-injector provider costs microseconds, far more than calling one. A
    service cached per message whose dependencies all live above the message scope has the same
    injections in every message of the same agent, so the parent scope keeps them here once, with
    a pool of reset providers handed back by closed scopes.
    """

    binding: Binding
    args: list[Any]
    kwargs: dict[str, Any]
    deps: frozenset[str]
    is_async: bool
    pool: list[providers.Provider[Any]]


@dataclass(slots=True)
class _Injections:
    """Providers for one factory's parameters, materialized relative to one scope."""

    deps: frozenset[str]
    args: list[Any]
    kwargs: dict[str, Any]
    is_async: bool
    deepest: Node
    """The innermost scope any of them lives in."""


def pinned_away(node: Node, name: str) -> bool:
    """Whether config pins `name` to a plugin that is not among its providers."""
    return name in node._shared.pins and bool(node._root()._bindings.get(name))


def find_or_raise(node: Node, name: str, stack: tuple[str, ...]) -> Binding:
    """The winning binding of `name` seen from `node`, or why there is none."""
    binding = node._find(name)
    if binding is not None:
        return binding
    pin = node._shared.pins.get(name)
    candidates = node._root()._bindings.get(name)
    if pin is not None and candidates:
        raise ServicePinError(
            token=name, pin=pin, candidates=tuple(b.candidate() for b in candidates)
        )
    raise MissingDependencyError(
        token=name,
        needed_by=stack[-1] if stack else None,
        pin=pin,
        installed=node._installed(),
    )


def materialize(node: Node, name: str, stack: tuple[str, ...]) -> Entry:
    """The entry for `name` as seen from `node`, building providers as needed.

    `stack` holds the services being built that led here (for cycles and error messages).
    """
    binding = find_or_raise(node, name, stack)
    if name in stack:
        cycle = (*stack[stack.index(name) :], name)
        refs = tuple((b.ref() if (b := node._find(item)) else None) for item in cycle)
        raise DependencyCycleError(cycle=cycle, services=refs)
    template: Template | None = None
    if binding.lifetime == "transient":
        kind_node = _scope_node(node, binding, stack)
        made = _injections(node, binding, stack)
        # Built once where all its inputs are visible, not in every scope resolving it.
        home = max(binding.node, made.deepest, kind_node, key=_level)
    else:
        home = _home(node, binding, stack)
        existing = home._entries.get(name)
        if existing is not None and existing.binding is binding:
            return existing
        parent = home._parent
        if parent is not None and not home._bindings and binding.factory is not None:
            template = parent._templates.get(name)
            if template is not None and template.binding is binding:
                provider = (
                    template.pool.pop()
                    if template.pool
                    else _make_provider(binding, template.args, template.kwargs)
                )
                return _add_entry(
                    home, binding, provider, template.deps, template.is_async, template
                )
            made = _injections(home, binding, stack)
            if made.deepest._level < home._level:  # same injections in every sibling scope
                template = Template(binding, made.args, made.kwargs, made.deps, made.is_async, [])
                parent._templates[name] = template
        else:
            made = _injections(home, binding, stack)
    existing = home._entries.get(name)
    if existing is not None and existing.binding is binding:
        return existing
    provider = _make_provider(binding, made.args, made.kwargs)
    return _add_entry(home, binding, provider, made.deps, made.is_async, template)


def _level(node: Node) -> int:
    return node._level


def _add_entry(
    home: Node,
    binding: Binding,
    provider: providers.Provider[Any],
    deps: frozenset[str],
    is_async: bool,
    template: Template | None,
) -> Entry:
    if home._closed:
        raise ScopeClosedError(scope=home._kind, token=binding.token.name)
    entry = Entry(
        binding=binding,
        provider=provider,
        deps=deps,
        is_async=is_async or binding.is_async,
        home=home,
        template=template,
    )
    home._entries[binding.token.name] = entry
    home._order.append(entry)
    return entry


def _home(node: Node, binding: Binding, stack: tuple[str, ...]) -> Node:
    """The scope whose instance of a cached `binding` `node` uses."""
    _scope_node(node, binding, stack)
    while node._kind != binding.scope and node is not binding.node:
        parent = node._parent
        assert parent is not None  # the root is the app scope, and is binding.node's ancestor
        node = parent
    return node


def _scope_node(node: Node, binding: Binding, stack: tuple[str, ...]) -> Node:
    """The nearest enclosing scope of the binding's kind; a clear error if none is open."""
    for scope in node._chain():
        if scope._kind == binding.scope:
            return scope
    requester = node._find(stack[-1]) if stack else None
    if requester is not None and requester.lifetime != "transient":
        raise ScopeError(
            kind="shorter_lived",
            token=binding.token.name,
            plugin=binding.owner,
            scope=binding.scope,
            needed_by=stack[-1],
            needed_by_plugin=requester.owner,
            needed_by_lifetime=requester.lifetime,
            needed_by_scope=requester.scope,
        )
    raise ScopeError(
        kind="not_open",
        token=binding.token.name,
        plugin=binding.owner,
        scope=binding.scope,
        current=node._kind,
        needed_by=stack[-1] if stack else None,
    )


def _injections(node: Node, binding: Binding, stack: tuple[str, ...]) -> _Injections:
    """Providers for the binding's factory parameters, materialized relative to `node`."""
    deps: set[str] = set()
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    is_async = False
    deepest = node._root()
    inner = (*stack, binding.token.name)
    tokens = node._shared.tokens
    for param in binding.plan.params:
        token = param.token or tokens.for_param(param, binding.plan, binding.owner)
        dep = node._find(token.name) if token is not None else None
        if dep is None and token is not None and pinned_away(node, token.name):
            find_or_raise(node, token.name, inner)
        provider: providers.Provider[Any] | None
        if dep is None:
            value = param.fallback()
            if value is MISSING and not param.has_default:
                raise MissingDependencyError(
                    parameter=param.name,
                    target=binding.plan.target,
                    wants=param.describe(),
                    token=token.name if token is not None else None,
                    plugin=binding.owner,
                    service=binding.token.name,
                    installed=node._installed(),
                )
            if not param.positional and param.has_default:
                continue  # Python applies the default
            provider = providers.Object(value)
        else:
            assert token is not None
            deps.add(token.name)
            provider = dep.handle_for(binding.owner)  # a plugin's handle on a host service
            if provider is None:
                entry = materialize(node, token.name, inner)
                deps.update(entry.deps)
                is_async = is_async or entry.is_async
                if entry.home._level > deepest._level:
                    deepest = entry.home
                provider = entry.provider
        if param.positional:
            args.append(provider)
        else:
            kwargs[param.name] = provider
    return _Injections(frozenset(deps), args, kwargs, is_async, deepest)


def _make_provider(
    binding: Binding, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> providers.Provider[Any]:
    if binding.factory is None:
        return providers.Object(binding.instance)
    if binding.is_resource:
        return providers.Resource(binding.factory, *args, **kwargs)
    if binding.lifetime == "transient":
        return providers.Factory(binding.factory, *args, **kwargs)
    return providers.Singleton(binding.factory, *args, **kwargs)


def recycle(node: Node, entry: Entry, template: Template) -> None:
    """Hand a closed scope's provider back to its template's pool, reset."""
    parent = node._parent
    if parent is None or len(template.pool) >= POOL_SIZE:
        return
    if parent._templates.get(entry.binding.token.name) is not template:
        return  # the binding changed meanwhile
    if not entry.binding.is_resource:
        cast("providers.Singleton[Any]", entry.provider).reset()
    template.pool.append(entry.provider)


def invalidate(node: Node, names: set[str]) -> list[Entry]:
    """Drop built providers for `names` and everything depending on them, in `node` and below;
    returns the dropped entries, last built first (their resources need tearing down)."""
    dropped: list[Entry] = []
    names = set(names)
    for scope in node._subtree():
        scope._cache.clear()
        scope._acache.clear()
        kept: list[Entry] = []
        for entry in scope._order:
            name = entry.binding.token.name
            if name in names or entry.deps & names:
                names.add(name)
                dropped.append(entry)
                if scope._entries.get(name) is entry:
                    del scope._entries[name]
            else:
                kept.append(entry)
        scope._order = kept
        # Templates here build services of the scopes below from what lives here and above.
        for name, template in list(scope._templates.items()):
            if name in names or template.deps & names:
                del scope._templates[name]
    dropped.reverse()
    return dropped


def async_error(entry: Entry, node: Node) -> AsyncServiceError:
    """Why `entry` cannot be resolved synchronously from `node`."""
    binding = entry.binding
    name, owner = binding.token.name, binding.owner
    if binding.is_async:
        return AsyncServiceError(
            token=name, plugin=owner, factory=binding.plan.target, resource=binding.is_resource
        )
    for dep_name in sorted(entry.deps):
        dep = node._find(dep_name)
        if dep is not None and dep.is_async:
            return AsyncServiceError(token=name, plugin=owner, async_dependency=dep.ref())
    return AsyncServiceError(token=name, plugin=owner)


def validate(root: Node) -> list[DependencyError]:
    """Materialize every chosen binding from a scope of its kind (the app scope, or probe agent
    and message scopes opened below it and closed again); the problems found, each cycle once."""
    problems: list[DependencyError] = []
    for name in sorted(set(root._bindings) - set(root._chosen)):
        try:
            find_or_raise(root, name, ())
        except ServicePinError as exc:  # bound, but not by the plugin config pins
            problems.append(exc)
    agent = root._child("agent")
    message = agent._child("message")
    try:
        problems += _probe((root, agent, message))
    finally:
        for probe, parent in ((message, agent), (agent, root)):
            probe._closed = True
            parent._children.pop(probe, None)
    return problems


def _probe(probes: Iterable[Node]) -> list[DependencyError]:
    problems: list[DependencyError] = []
    seen: set[str] = set()
    cycles: set[frozenset[str]] = set()
    for probe in probes:
        for node in probe._chain():
            for name, binding in node._chosen.items():
                if name in seen or binding.scope != probe._kind:
                    continue
                seen.add(name)
                try:
                    materialize(probe, name, ())
                except DependencyCycleError as exc:
                    if frozenset(exc.cycle) not in cycles:  # once per cycle
                        cycles.add(frozenset(exc.cycle))
                        problems.append(exc)
                except DependencyError as exc:
                    problems.append(exc)
    return problems


def resolve_sync(node: Node, token: Token[Any]) -> Any:
    """`Container.resolve` past its cache: build the provider, cache it, call it."""
    node._check_open()
    entry = materialize(node, token.name, ())
    if entry.is_async:
        if entry.value is None:
            raise async_error(entry, node)
        node._cache[token] = entry.value
        return entry.value()
    node._cache[token] = entry.provider
    return entry.provider()


async def resolve_async(node: Node, token: Token[Any]) -> Any:
    """`Container.aresolve` past its caches; concurrent first calls share one set-up (the
    provider's own), and an async cached service's instance is kept for sync `resolve`."""
    node._check_open()
    entry = materialize(node, token.name, ())
    if not entry.is_async:
        node._cache[token] = entry.provider
        return entry.provider()
    if entry.value is not None:
        node._cache[token] = entry.value
        return entry.value()
    result = entry.provider()
    if inspect.isawaitable(result):
        result = await result
    if node._closed or entry.home._entries.get(entry.binding.token.name) is not entry:
        return result  # rebound or closed while awaiting: cache nothing
    if entry.binding.lifetime == "transient":
        node._acache[token] = entry.provider
    else:
        entry.value = providers.Object(result)
        node._cache[token] = entry.value
    return result
