"""The service container: tokens bound to dependency-injector providers, in nested scopes.

One `Container` is the app scope; `create_scope("agent")` / `create_scope("message")` open child
scopes that see their parent's bindings, may override them, and own the instances and resources
of services living in their scope.

This class is the facade; the work is done by the modules of `host.di`: `bindings` (registration,
choice by priority and pins, its log), `graph` (providers, pools, scope checks, validation),
`inject` (constructor injection), `teardown`, `errors`. The container adds to dependency-injector
what it has no notion of: tokens and owners, priorities and config pins, scopes nested per agent
and per message, constructor injection by annotation, and clear errors.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from contracts.services import DependencyError, Factory, Lifetime, Scope, ServiceReleaseError
from contracts.tokens import Token
from host.di import graph, inject, teardown
from host.di.bindings import (
    SCOPES,
    Binding,
    BindingInfo,
    LoadedPluginLike,
    check_factory,
    check_same_type,
    choose,
    log,
    plugin_services,
)
from host.di.errors import ScopeClosedError, ScopeError, owner_label
from host.di.plans import Plan
from host.di.scopes import Node, Shared

__all__ = ["BindingInfo", "Container", "LoadedPluginLike"]

T = TypeVar("T")


class Container(Node):
    """Tokens -> providers, in the app scope or a child scope (see the module docstring).

    ``pins`` maps token names to the plugin that must provide them (config ``services``).
    """

    __slots__ = ()

    def __init__(self, pins: Mapping[str, str] | None = None) -> None:
        self._setup(None, "app", Shared(pins or {}))
        for token in _contract_tokens():
            self._shared.tokens.declare(token)

    # ------------------------------------------------------------------ introspection

    @property
    def scope(self) -> Scope:
        """The kind of this scope: ``app``, ``agent`` or ``message``."""
        return self._kind

    @property
    def parent(self) -> Container | None:
        """The enclosing scope, None for the app container."""
        return self._parent  # type: ignore[return-value]  # scopes are Containers

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pins(self) -> Mapping[str, str]:
        """Token name -> plugin name pins (config ``services``)."""
        return dict(self._shared.pins)

    def has(self, token: Token[Any]) -> bool:
        """Whether something visible from this scope provides `token`."""
        return self._find(token.name) is not None

    def token_for(self, annotation: Any) -> Token[Any] | None:
        """The known token whose type is `annotation`, if exactly one is."""
        tokens = self._shared.tokens
        names = tokens.names_for_type(annotation)
        return tokens.tokens[names[0]] if len(names) == 1 else None

    def bindings(self) -> list[BindingInfo]:
        """Every binding visible from this scope, the innermost scope's first."""
        return [
            binding.info(binding is node._chosen.get(name))
            for node in self._chain()
            for name in sorted(node._bindings)
            for binding in node._bindings[name]
        ]

    # ------------------------------------------------------------------ registration

    def register(
        self,
        token: Token[T],
        factory: Factory[T],
        *,
        lifetime: Lifetime = "singleton",
        scope: Scope = "app",
        owner: str | None = None,
        priority: int = 0,
    ) -> None:
        """Bind `token` to `factory` (see `contracts.services.Lifetime` for lifetimes).

        A second binding of the same token by another owner competes by priority (ties: the later
        one wins); the same owner binding it again replaces its earlier binding.
        """
        self._check_open()
        traits = check_factory(token, factory, lifetime, scope, owner)
        self._add(
            token,
            factory,
            None,
            lifetime,
            scope,
            owner,
            priority,
            traits.plan,
            is_resource=traits.is_resource,
            is_async=traits.is_async,
        )

    def provide(
        self,
        token: Token[T],
        instance: T,
        *,
        owner: str | None = None,
        priority: int = 0,
        view: Callable[[str], T] | None = None,
    ) -> None:
        """Bind `token` to an existing object, owned by this scope (never torn down by it).

        With `view`, what another owner (a plugin) constructs is injected ``view(plugin name)``
        instead of `instance`: its handle on a shared service (`host.handles`), made once per
        plugin."""
        self._check_open()
        plan = Plan(target=f"instance of {type(instance).__qualname__}", params=())
        self._add(
            token,
            None,
            instance,
            "singleton",
            self._kind,
            owner,
            priority,
            plan,
            is_resource=False,
            is_async=False,
            view=view,
        )

    def _add(
        self,
        token: Token[Any],
        factory: Callable[..., Any] | None,
        instance: object,
        lifetime: Lifetime,
        scope: Scope,
        owner: str | None,
        priority: int,
        plan: Plan,
        *,
        is_resource: bool,
        is_async: bool,
        view: Callable[[str], Any] | None = None,
    ) -> None:
        shared = self._shared
        name = token.name
        candidates = self._bindings.get(name, [])
        check_same_type(candidates, token, owner)
        shared.tokens.declare(token)
        shared.seq += 1
        binding = Binding(
            token=token,
            factory=factory,
            instance=instance,
            lifetime=lifetime,
            scope=scope,
            owner=owner,
            priority=priority,
            seq=shared.seq,
            plan=plan,
            is_resource=is_resource,
            is_async=is_async,
            node=self,
            view=view,
        )
        kept = [other for other in candidates if other.owner != owner]
        if len(kept) < len(candidates):
            log.debug("service '{}': {} replaced its binding", name, owner or "the host")
        kept.append(binding)
        self._bindings[name] = kept
        _rechoose(self, {name})

    def unregister_owner(self, owner: str) -> None:
        """Remove every binding `owner` made, in this scope and all scopes below it.

        Services built from them (and services depending on those) are dropped and rebuilt on
        next use; their resources are torn down (async ones in the background, awaited by
        `aclose`; use `aunregister_owner` to wait for them).
        """
        for node in self._subtree():
            changed: set[str] = set()
            for name, candidates in list(node._bindings.items()):
                kept = [binding for binding in candidates if binding.owner != owner]
                if len(kept) == len(candidates):
                    continue
                changed.add(name)
                if kept:
                    node._bindings[name] = kept
                else:
                    del node._bindings[name]
            if changed:
                _rechoose(node, changed)

    async def aunregister_owner(self, owner: str) -> None:
        """`unregister_owner`, then wait until the resources it released are torn down."""
        self.unregister_owner(owner)
        await teardown.drain(self._shared)

    def set_pins(self, pins: Mapping[str, str]) -> None:
        """Replace the token-name -> plugin-name pins (config ``services``)."""
        old = self._shared.pins
        self._shared.pins = dict(pins)
        root = self._root()
        changed = {name for name in set(old) | set(pins) if old.get(name) != pins.get(name)}
        _rechoose(root, changed & set(root._bindings))

    def declare_tokens(self, tokens: Iterable[Token[Any]]) -> None:
        """Make tokens known for matching annotations by type before anything binds them.

        The container knows every token exported by `contracts`; the loader declares the tokens
        of all discovered manifests' ``provides`` so `requirements` sees plugin-defined ones.
        """
        for token in tokens:
            self._shared.tokens.declare(token)

    @contextlib.contextmanager
    def announcing_once(self) -> Iterator[None]:
        """Log each service's provider choice once, when the block ends: a start registers the
        providers one by one, and logging every step repeated the choice with one more loser."""
        choices = self._shared.choices
        choices.held += 1
        try:
            yield
        finally:
            choices.held -= 1
            if not choices.held:
                names, choices.pending = choices.pending, set()
                for name in sorted(names):
                    chosen = _choose(self, name)
                    if chosen is not None and len(self._bindings.get(name, ())) == 1:
                        # its only provider: choose() logs choices among several
                        log.info("service '{}': using {}", name, owner_label(chosen.owner))

    # ------------------------------------------------------------------ plugins (registrar role)

    def register_plugin(self, loaded: LoadedPluginLike) -> None:
        """Bind what a loaded plugin's `services()` returns, owned by the plugin's name.

        All or nothing: if one binding fails, the plugin's other bindings are removed again.
        """
        manifest = loaded.manifest
        self.declare_tokens(manifest.provides)
        services = plugin_services(loaded)
        try:
            for service in services:
                self.register(
                    service.token,
                    service.factory,
                    lifetime=service.lifetime,
                    scope=service.scope,
                    owner=manifest.name,
                    priority=manifest.priority if service.priority is None else service.priority,
                )
        except Exception:
            self.unregister_owner(manifest.name)
            raise

    def unregister_plugin(self, name: str) -> None:
        """Remove everything plugin `name` bound (hot reload, unload)."""
        self.unregister_owner(name)

    # ------------------------------------------------------------------ resolving

    def resolve(self, token: Token[T]) -> T:
        """The service bound to `token`, built on first use in the scope that owns it."""
        provider = self._cache.get(token)
        if provider is not None:
            return provider()  # type: ignore[no-any-return]
        return graph.resolve_sync(self, token)  # type: ignore[no-any-return]

    async def aresolve(self, token: Token[T]) -> T:
        """Like `resolve`, for services that are async or depend on async ones (also sync ones)."""
        provider = self._cache.get(token)
        if provider is not None:
            return provider()  # type: ignore[no-any-return]
        provider = self._acache.get(token)
        if provider is not None:
            return await provider()  # type: ignore[no-any-return]
        return await graph.resolve_async(self, token)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ constructor injection

    def requirements(self, cls: Callable[..., Any]) -> list[Token[Any]]:
        """The tokens `cls`'s constructor resolves from the container (optional ones included).

        Parameters whose type matches no known token (the plugin's settings model, values the
        host passes as extras) are not listed. Raises `InjectionError` for unreadable signatures.
        """
        return inject.requirements(self, cls)

    async def construct(
        self, cls: Callable[..., T], *, owner: str, extras: Mapping[Any, object] = {}
    ) -> T:
        """Build `cls` with its ``__init__`` parameters injected.

        Each parameter is taken from `extras` (keyed by its token or its annotation type, e.g.
        the plugin's bound logger and its settings object) or resolved from the container;
        ``X | None`` parameters get None and parameters with defaults their default when nothing
        provides them. `owner` (the plugin name) is used in error messages.
        """
        return await inject.construct(self, cls, owner, extras)

    # ------------------------------------------------------------------ validation

    def validate(self) -> list[DependencyError]:
        """Check every binding's dependencies (missing, cycles, scopes) without building any.

        Returns the problems found (empty when the graph is sound); meant to run once after all
        plugins are loaded, so a broken graph is reported at startup rather than at first use.
        """
        return graph.validate(self._root())

    # ------------------------------------------------------------------ scopes

    def create_scope(self, kind: Literal["agent", "message"]) -> Container:
        """Open a child scope (use as ``async with``, or ``await child.aclose()``)."""
        if self._closed:
            raise ScopeClosedError(scope=self._kind, opening=kind)
        depth = SCOPES.get(kind)
        if depth is None or depth == 0 or depth <= SCOPES[self._kind]:
            raise ScopeError(kind="nesting", requested=kind, current=self._kind)
        return self._child(kind)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            await self.aclose()
        except ServiceReleaseError:
            if exc is None:
                raise
            log.opt(exception=True).error(
                "releasing the {} scope after an error also failed", self._kind
            )

    async def aclose(self) -> None:
        """Close this scope: close open child scopes, then tear down this scope's resources in
        reverse order of creation. Every resource is released even if some teardowns fail
        (then `ServiceReleaseError` lists them). Idempotent."""
        await teardown.close(self)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Container {self._kind} scope{state}, {len(self._chosen)} bindings>"


def _choose(node: Node, name: str) -> Binding | None:
    candidates = node._bindings.get(name)
    if not candidates:
        return None
    shared = node._shared
    pin = shared.pins.get(name) if node._parent is None else None
    return choose(name, candidates, pin, shared.choices)


def _rechoose(node: Node, names: Iterable[str]) -> None:
    """Recompute which binding wins for `names` in `node`; drop what was built from a loser
    (and tear down its resources)."""
    changed: set[str] = set()
    for name in names:
        before = node._chosen.get(name)
        after = _choose(node, name)
        if after is None:
            node._chosen.pop(name, None)
        else:
            node._chosen[name] = after
        if after is not before:
            changed.add(name)
    if changed:
        teardown.retire(node._shared, graph.invalidate(node, changed))


def _contract_tokens() -> list[Token[Any]]:
    """The well-known tokens exported by `contracts` (DATABASE, LOGGER, SETTINGS, ...)."""
    import contracts

    return [value for value in vars(contracts).values() if isinstance(value, Token)]
