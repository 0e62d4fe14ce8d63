"""The service container: tokens bound to dependency-injector providers, in nested scopes.

One `Container` is the app scope; `create_scope("agent")` / `create_scope("message")` open child
scopes that see their parent's bindings, may override them, and own the instances and resources
of services living in their scope.

How a binding becomes a provider (lazily, on first resolve, then cached per scope):

- ``provide(token, obj)``                  -> ``providers.Object``
- singleton / scoped function or class      -> ``providers.Singleton`` in the scope that owns it
- generator / async generator factory       -> ``providers.Resource`` (torn down on scope close)
- transient                                 -> ``providers.Factory``

The factory's parameters become provider injections of the providers of the tokens they need, so
dependency-injector itself calls the graph (including its async support: an async dependency makes
its dependents awaitable). The container adds what dependency-injector has no notion of: tokens and
owners, priorities and config pins, scopes nested per agent and per message, constructor injection
by annotation, and clear errors (missing service, cycle, wrong scope).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final, Literal, Protocol, Self, TypeVar, cast

from dependency_injector import providers
from loguru import logger

from contracts.plugin import Manifest, Plugin
from contracts.services import (
    AsyncServiceError,
    DependencyCycleError,
    DependencyError,
    Factory,
    InjectionError,
    Lifetime,
    MissingDependencyError,
    Scope,
    ScopeClosedError,
    ScopeError,
    ServiceConflictError,
    ServicePinError,
    ServiceReleaseError,
)
from contracts.tokens import Token
from host.injection import Param, Plan, describe_type, plan_for

__all__ = ["BindingInfo", "Container", "LoadedPluginLike"]

T = TypeVar("T")

_log = logger.bind(component="container")

_SCOPES: Final[dict[str, int]] = {"app": 0, "agent": 1, "message": 2}
_LIFETIMES: Final = ("singleton", "scoped", "transient")
_MISSING: Final = object()
_POOL_SIZE: Final = 64
"""Reset providers kept per template: about the number of messages processed concurrently."""


class LoadedPluginLike(Protocol):
    """What `Container.register_plugin` needs from the loader's record of a loaded plugin."""

    @property
    def manifest(self) -> Manifest: ...

    @property
    def instance(self) -> Plugin: ...


@dataclass(frozen=True, slots=True)
class BindingInfo:
    """One registered binding, for introspection (CLI, logs, tests)."""

    token: str
    owner: str | None
    priority: int
    lifetime: Lifetime
    scope: Scope
    chosen: bool
    factory: str


@dataclass(slots=True, eq=False)
class _Binding:
    token: Token[Any]
    factory: Callable[..., Any] | None
    instance: object
    lifetime: Lifetime
    scope: Scope
    owner: str | None
    priority: int
    seq: int
    plan: Plan
    is_resource: bool
    is_async: bool
    node: Container
    view: Callable[[str], Any] | None = None
    """For a service the host shares with plugins: makes plugin `name`'s handle on it."""
    handles: dict[str, providers.Provider[Any]] = field(default_factory=dict)

    def handle_for(self, owner: str | None) -> providers.Provider[Any] | None:
        """The provider of `owner`'s handle on this service; None when `owner` gets the
        service itself (no view, the host, or the binding's own owner)."""
        if self.view is None or owner is None or owner == self.owner:
            return None
        handle = self.handles.get(owner)
        if handle is None:
            handle = self.handles[owner] = providers.Object(self.view(owner))
        return handle

    def label(self) -> str:
        owner = f"plugin {self.owner}" if self.owner else "the host"
        return f"'{self.token.name}' ({owner})"

    def factory_name(self) -> str:
        if self.factory is None:
            return f"instance of {type(self.instance).__qualname__}"
        return self.plan.target


@dataclass(slots=True, eq=False)
class _Entry:
    """A binding made concrete in one scope: its provider and the names it depends on."""

    binding: _Binding
    provider: providers.Provider[Any]
    deps: frozenset[str]
    is_async: bool
    home: Container
    value: providers.Provider[Any] | None = None
    """For an async cached service once awaited: its instance, so sync `resolve` can return it."""
    template: _Template | None = None
    """Where this entry's provider goes back for reuse when its scope closes."""


@dataclass(slots=True, eq=False)
class _Template:
    """How to build a per-scope service in any child scope of one parent.

    Creating a dependency-injector provider costs microseconds, far more than calling one. A
    service cached per message whose dependencies all live above the message scope has the same
    injections in every message of the same agent, so the parent scope keeps them here once, with
    a pool of reset providers handed back by closed scopes.
    """

    binding: _Binding
    args: list[Any]
    kwargs: dict[str, Any]
    deps: frozenset[str]
    is_async: bool
    pool: list[providers.Provider[Any]]


class _Shared:
    """State shared by a container and all its scopes: known tokens, pins, pending teardowns."""

    __slots__ = (
        "announced",
        "held",
        "pending",
        "pins",
        "retired",
        "seq",
        "tasks",
        "tokens",
        "types",
    )

    def __init__(self, pins: Mapping[str, str]) -> None:
        self.announced: dict[str, tuple[str | None, frozenset[str | None]]] = {}
        """Last provider choice logged per service (winner, losers); see `should_announce`."""
        self.held = 0
        """Open `Container.announcing_once` blocks: choices made meanwhile wait in `pending`."""
        self.pending: set[str] = set()
        self.pins: dict[str, str] = dict(pins)
        self.tokens: dict[str, Token[Any]] = {}
        self.types: dict[Any, list[str]] = {}
        self.seq = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self.retired: list[tuple[providers.Provider[Any], str]] = []

    def declare(self, token: Token[Any]) -> None:
        known = self.tokens.get(token.name)
        if known is token:
            return
        if known is not None:
            self._unindex(known)
        self.tokens[token.name] = token
        type_ = token.type
        if type_ is not None:
            try:
                names = self.types.setdefault(type_, [])
            except TypeError:  # unhashable annotation: injectable only via Annotated
                return
            if token.name not in names:
                names.append(token.name)

    def should_announce(self, name: str, chosen: _Binding, candidates: list[_Binding]) -> bool:
        """Whether to log the choice of `chosen` among `candidates` for service `name`: when
        the winner changed or a new competitor arrived since the last logged choice, not when a
        loser merely left (plugins unloading at shutdown would repeat every choice)."""
        if self.held:
            self.pending.add(name)
            return False
        losers = frozenset(b.owner for b in candidates if b is not chosen)
        if not losers:
            return False
        last = self.announced.get(name)
        if last is not None and last[0] == chosen.owner and losers <= last[1]:
            return False
        self.announced[name] = (chosen.owner, losers)
        return True

    def _unindex(self, token: Token[Any]) -> None:
        try:
            names = self.types.get(token.type)
        except TypeError:
            return
        if names and token.name in names:
            names.remove(token.name)


class Container:
    """Tokens -> providers, in the app scope or a child scope (see the module docstring).

    ``pins`` maps token names to the plugin that must provide them (config ``services``).
    """

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

    def __init__(self, pins: Mapping[str, str] | None = None) -> None:
        self._setup(None, "app", _Shared(pins or {}))
        for token in _contract_tokens():
            self._shared.declare(token)

    def _setup(self, parent: Container | None, kind: Scope, shared: _Shared) -> None:
        self._parent = parent
        self._kind: Scope = kind
        self._level: int = 0 if parent is None else parent._level + 1
        self._shared = shared
        self._bindings: dict[str, list[_Binding]] = {}
        self._chosen: dict[str, _Binding] = {}
        self._entries: dict[str, _Entry] = {}
        self._order: list[_Entry] = []
        # Fast paths: token object -> provider to call. `_cache` holds providers whose call
        # returns the instance; `_acache` holds async transients whose call returns an awaitable.
        self._cache: dict[Token[Any], providers.Provider[Any]] = {}
        self._acache: dict[Token[Any], providers.Provider[Any]] = {}
        self._children: dict[Container, None] = {}
        self._templates: dict[str, _Template] = {}
        self._closed = False

    # ------------------------------------------------------------------ introspection

    @property
    def scope(self) -> Scope:
        """The kind of this scope: ``app``, ``agent`` or ``message``."""
        return self._kind

    @property
    def parent(self) -> Container | None:
        """The enclosing scope, None for the app container."""
        return self._parent

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
        names = self._names_for_type(annotation)
        if len(names) == 1:
            return self._shared.tokens[names[0]]
        return None

    def bindings(self) -> list[BindingInfo]:
        """Every binding visible from this scope, the innermost scope's first."""
        infos: list[BindingInfo] = []
        for node in self._chain():
            for name in sorted(node._bindings):
                chosen = node._chosen.get(name)
                for binding in node._bindings[name]:
                    infos.append(
                        BindingInfo(
                            token=name,
                            owner=binding.owner,
                            priority=binding.priority,
                            lifetime=binding.lifetime,
                            scope=binding.scope,
                            chosen=binding is chosen,
                            factory=binding.factory_name(),
                        )
                    )
        return infos

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
        what = f"service '{token.name}'" + (f" of plugin {owner}" if owner else "")
        if lifetime not in _LIFETIMES:
            raise ServiceConflictError(
                f"{what}: unknown lifetime {lifetime!r}; use one of {', '.join(_LIFETIMES)}"
            )
        if scope not in _SCOPES:
            raise ServiceConflictError(
                f"{what}: unknown scope {scope!r}; use one of {', '.join(_SCOPES)}"
            )
        if not callable(factory):
            raise ServiceConflictError(f"{what}: factory {factory!r} is not callable")
        is_resource = inspect.isgeneratorfunction(factory) or inspect.isasyncgenfunction(factory)
        if is_resource and lifetime == "transient":
            raise ServiceConflictError(
                f"{what}: a generator factory ({_callable_name(factory)}) cannot be transient:"
                " its teardown needs a scope to own it; use lifetime 'scoped' (or 'singleton')"
            )
        try:
            plan = plan_for(factory)
        except InjectionError as exc:
            raise InjectionError(f"{what}: {exc}") from exc
        is_async = (
            inspect.iscoroutinefunction(factory)
            or inspect.isasyncgenfunction(factory)
            or (
                not isinstance(factory, type)
                and inspect.iscoroutinefunction(type(factory).__call__)
            )
        )
        self._add(
            token,
            factory,
            None,
            lifetime=lifetime,
            scope=scope,
            owner=owner,
            priority=priority,
            plan=plan,
            is_resource=is_resource,
            is_async=is_async,
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
        self._add(
            token,
            None,
            instance,
            lifetime="singleton",
            scope=self._kind,
            owner=owner,
            priority=priority,
            plan=Plan(target=f"instance of {type(instance).__qualname__}", params=()),
            is_resource=False,
            is_async=False,
            view=view,
        )

    def _add(
        self,
        token: Token[Any],
        factory: Callable[..., Any] | None,
        instance: object,
        *,
        lifetime: Lifetime,
        scope: Scope,
        owner: str | None,
        priority: int,
        plan: Plan,
        is_resource: bool,
        is_async: bool,
        view: Callable[[str], Any] | None = None,
    ) -> None:
        shared = self._shared
        name = token.name
        candidates = self._bindings.get(name, [])
        for other in candidates:
            if other.owner != owner and not _same_type(other.token, token):
                raise ServiceConflictError(
                    f"token name '{name}' is bound to two different types:"
                    f" {describe_type(other.token.type)} by {other.label()} and"
                    f" {describe_type(token.type)} by"
                    f" {'plugin ' + owner if owner else 'the host'}; token names must be unique"
                    " (prefix a plugin's own tokens with its name)"
                )
        shared.declare(token)
        shared.seq += 1
        binding = _Binding(
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
            _log.debug("service '{}': {} replaced its binding", name, owner or "the host")
        kept.append(binding)
        self._bindings[name] = kept
        self._rechoose({name})

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
                node._rechoose(changed)

    async def aunregister_owner(self, owner: str) -> None:
        """`unregister_owner`, then wait until the resources it released are torn down."""
        self.unregister_owner(owner)
        await self._drain()

    def set_pins(self, pins: Mapping[str, str]) -> None:
        """Replace the token-name -> plugin-name pins (config ``services``)."""
        old = self._shared.pins
        self._shared.pins = dict(pins)
        root = self._root()
        changed = {name for name in set(old) | set(pins) if old.get(name) != pins.get(name)}
        root._rechoose(changed & set(root._bindings))

    def declare_tokens(self, tokens: Iterable[Token[Any]]) -> None:
        """Make tokens known for matching annotations by type before anything binds them.

        The container knows every token exported by `contracts`; the loader declares the tokens
        of all discovered manifests' ``provides`` so `requirements` sees plugin-defined ones.
        """
        for token in tokens:
            self._shared.declare(token)

    def _rechoose(self, names: Iterable[str]) -> None:
        """Recompute which binding wins for `names` here; drop what was built from a loser."""
        changed: set[str] = set()
        for name in names:
            before = self._chosen.get(name)
            after = self._choose(name)
            if after is None:
                self._chosen.pop(name, None)
            else:
                self._chosen[name] = after
            if after is not before:
                changed.add(name)
        if changed:
            self._invalidate(changed)

    @contextlib.contextmanager
    def announcing_once(self) -> Iterator[None]:
        """Log each service's provider choice once, when the block ends: a start registers the
        providers one by one, and logging every step repeated the choice with one more loser."""
        shared = self._shared
        shared.held += 1
        try:
            yield
        finally:
            shared.held -= 1
            if not shared.held:
                names, shared.pending = shared.pending, set()
                for name in sorted(names):
                    chosen = self._choose(name)
                    if chosen is not None and len(self._bindings.get(name, ())) == 1:
                        # its only provider: _choose logs choices among several
                        _log.info("service '{}': using {}", name, _owner_label(chosen.owner))

    def _choose(self, name: str) -> _Binding | None:
        candidates = self._bindings.get(name)
        if not candidates:
            return None
        pin = self._shared.pins.get(name) if self._parent is None else None
        if pin is not None:
            pinned = [binding for binding in candidates if binding.owner == pin]
            if not pinned:
                return None  # resolving reports the pin error
            chosen = pinned[-1]
            if self._shared.should_announce(name, chosen, candidates):
                _log.info(
                    "service '{}': using plugin {} (pinned by config services.{}) over {}",
                    name,
                    pin,
                    name,
                    _others(candidates, chosen),
                )
            return chosen
        chosen = max(candidates, key=lambda binding: (binding.priority, binding.seq))
        if self._shared.should_announce(name, chosen, candidates):
            tie = [b for b in candidates if b.priority == chosen.priority and b is not chosen]
            _log.log(
                "WARNING" if tie else "INFO",
                "service '{}': using {} (priority {}) over {}{}",
                name,
                _owner_label(chosen.owner),
                chosen.priority,
                _others(candidates, chosen),
                f"; equal priorities, pin one with config services.{name}" if tie else "",
            )
        return chosen

    def _invalidate(self, names: set[str]) -> None:
        """Drop built providers for `names` and everything depending on them, here and below."""
        dropped: list[_Entry] = []
        names = set(names)
        for node in self._subtree():
            node._cache.clear()
            node._acache.clear()
            kept: list[_Entry] = []
            for entry in node._order:
                name = entry.binding.token.name
                if name in names or entry.deps & names:
                    names.add(name)
                    dropped.append(entry)
                    if node._entries.get(name) is entry:
                        del node._entries[name]
                else:
                    kept.append(entry)
            node._order = kept
            # Templates here build services of the scopes below from what lives here and above.
            for name, template in list(node._templates.items()):
                if name in names or template.deps & names:
                    del node._templates[name]
        self._retire(reversed(dropped))

    def _retire(self, entries: Iterable[_Entry]) -> None:
        """Tear down initialized resources of dropped entries (async ones in the background)."""
        shared = self._shared
        for entry in entries:
            provider = entry.provider
            if not entry.binding.is_resource or not _initialized(provider):
                continue
            label = entry.binding.label()
            if not entry.is_async:
                _shutdown_sync(provider, label)
                continue
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                shared.retired.append((provider, label))
                continue
            task = loop.create_task(_shutdown_logged(provider, label))
            shared.tasks.add(task)
            task.add_done_callback(shared.tasks.discard)

    # ------------------------------------------------------------------ plugins (registrar role)

    def register_plugin(self, loaded: LoadedPluginLike) -> None:
        """Bind what a loaded plugin's `services()` returns, owned by the plugin's name.

        All or nothing: if one binding fails, the plugin's other bindings are removed again.
        """
        manifest = loaded.manifest
        name = manifest.name
        self.declare_tokens(manifest.provides)
        services = list(loaded.instance.services())
        declared = {token.name for token in manifest.provides}
        bound = {service.token.name for service in services}
        for service in services:
            if service.token.name not in declared:
                _log.warning(
                    "plugin {} binds service '{}' without listing it in manifest.provides;"
                    " plugins needing it may load before it",
                    name,
                    service.token.name,
                )
        for missing in sorted(declared - bound):
            _log.warning(
                "plugin {} lists '{}' in manifest.provides but its services() does not bind it",
                name,
                missing,
            )
        try:
            for service in services:
                self.register(
                    service.token,
                    service.factory,
                    lifetime=service.lifetime,
                    scope=service.scope,
                    owner=name,
                    priority=manifest.priority if service.priority is None else service.priority,
                )
        except Exception:
            self.unregister_owner(name)
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
        return self._resolve_slow(token)  # type: ignore[no-any-return]

    async def aresolve(self, token: Token[T]) -> T:
        """Like `resolve`, for services that are async or depend on async ones (also sync ones)."""
        provider = self._cache.get(token)
        if provider is not None:
            return provider()  # type: ignore[no-any-return]
        provider = self._acache.get(token)
        if provider is not None:
            return await provider()  # type: ignore[no-any-return]
        return await self._aresolve_slow(token)  # type: ignore[no-any-return]

    def _resolve_slow(self, token: Token[Any]) -> Any:
        self._check_open()
        entry = self._materialize(token.name, ())
        if entry.is_async:
            if entry.value is not None:
                self._cache[token] = entry.value
                return entry.value()
            raise AsyncServiceError(
                f"service {entry.binding.label()} is async"
                f" ({_async_reason(entry, self)}); use `await container.aresolve(...)`"
            )
        self._cache[token] = entry.provider
        return entry.provider()

    async def _aresolve_slow(self, token: Token[Any]) -> Any:
        self._check_open()
        entry = self._materialize(token.name, ())
        if not entry.is_async:
            self._cache[token] = entry.provider
            return entry.provider()
        if entry.value is not None:
            self._cache[token] = entry.value
            return entry.value()
        result = entry.provider()
        if inspect.isawaitable(result):
            result = await result
        if self._closed or entry.home._entries.get(entry.binding.token.name) is not entry:
            return result  # rebound or closed while awaiting: cache nothing
        if entry.binding.lifetime == "transient":
            self._acache[token] = entry.provider
        else:
            entry.value = providers.Object(result)
            self._cache[token] = entry.value
        return result

    def _find(self, name: str) -> _Binding | None:
        node: Container | None = self
        while node is not None:
            binding = node._chosen.get(name)
            if binding is not None:
                return binding
            node = node._parent
        return None

    def _pinned_away(self, name: str) -> bool:
        """Whether config pins `name` to a plugin that is not among its providers."""
        return name in self._shared.pins and bool(self._root()._bindings.get(name))

    def _find_or_raise(self, name: str, stack: tuple[str, ...]) -> _Binding:
        binding = self._find(name)
        if binding is not None:
            return binding
        pin = self._shared.pins.get(name)
        root = self._root()
        if pin is not None and root._bindings.get(name):
            raise ServicePinError(
                f"config services.{name} pins plugin {pin}, which does not provide '{name}';"
                f" it is provided by: {_others(root._bindings[name], None)}"
            )
        needed = f" (needed by {stack[-1]!r})" if stack else ""
        pin_note = f"; config services.{name} pins plugin {pin}, not loaded" if pin else ""
        raise MissingDependencyError(
            f"service '{name}'{needed} is provided by nothing{pin_note};"
            f" installed providers: {self._installed()}"
        )

    def _materialize(self, name: str, stack: tuple[str, ...]) -> _Entry:
        """The entry for `name` as seen from this scope, building providers as needed."""
        binding = self._find_or_raise(name, stack)
        if name in stack:
            cycle = (*stack[stack.index(name) :], name)
            raise DependencyCycleError(
                "dependency cycle between services: "
                + " -> ".join(self._cycle_label(item) for item in cycle),
                cycle,
            )
        template: _Template | None = None
        if binding.lifetime == "transient":
            kind_node = self._scope_node(binding, stack)
            deps, args, kwargs, is_async, deepest = self._injections(binding, stack)
            # Built once where all its inputs are visible, not in every scope resolving it.
            home = max(binding.node, deepest, kind_node, key=_level)
        else:
            home = self._home(binding, stack)
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
                    return home._add_entry(
                        binding, provider, template.deps, template.is_async, template
                    )
                deps, args, kwargs, is_async, deepest = home._injections(binding, stack)
                if deepest._level < home._level:  # same injections in every sibling scope
                    template = _Template(binding, args, kwargs, deps, is_async, [])
                    parent._templates[name] = template
            else:
                deps, args, kwargs, is_async, _ = home._injections(binding, stack)
        existing = home._entries.get(name)
        if existing is not None and existing.binding is binding:
            return existing
        return home._add_entry(
            binding, _make_provider(binding, args, kwargs), deps, is_async, template
        )

    def _add_entry(
        self,
        binding: _Binding,
        provider: providers.Provider[Any],
        deps: frozenset[str],
        is_async: bool,
        template: _Template | None,
    ) -> _Entry:
        if self._closed:
            raise ScopeClosedError(
                f"the {self._kind} scope owning service '{binding.token.name}' is closed"
            )
        entry = _Entry(
            binding=binding,
            provider=provider,
            deps=deps,
            is_async=is_async or binding.is_async,
            home=self,
            template=template,
        )
        self._entries[binding.token.name] = entry
        self._order.append(entry)
        return entry

    def _home(self, binding: _Binding, stack: tuple[str, ...]) -> Container:
        """The scope whose instance of a cached `binding` this scope uses."""
        self._scope_node(binding, stack)
        node: Container = self
        while node._kind != binding.scope and node is not binding.node:
            parent = node._parent
            assert parent is not None  # the root is the app scope, and is binding.node's ancestor
            node = parent
        return node

    def _scope_node(self, binding: _Binding, stack: tuple[str, ...]) -> Container:
        """The nearest enclosing scope of the binding's kind; a clear error if none is open."""
        node: Container | None = self
        while node is not None:
            if node._kind == binding.scope:
                return node
            node = node._parent
        requester = self._find(stack[-1]) if stack else None
        if requester is not None and requester.lifetime != "transient":
            holder = f"{requester.label()} ({requester.lifetime}, {requester.scope} scope)"
            raise ScopeError(
                f"{holder} needs service {binding.label()}, which lives in the {binding.scope}"
                f" scope: a longer-lived service cannot hold a shorter-lived one; make"
                f" '{stack[-1]}' {binding.scope}-scoped or transient"
            )
        needed_by = f", needed by '{stack[-1]}'," if stack else ""
        raise ScopeError(
            f"service {binding.label()}{needed_by} lives in the {binding.scope} scope, but no"
            f" {binding.scope} scope is open here (resolving from the {self._kind} scope);"
            f" resolve it inside `async with container.create_scope({binding.scope!r})`"
        )

    def _injections(
        self, binding: _Binding, stack: tuple[str, ...]
    ) -> tuple[frozenset[str], list[Any], dict[str, Any], bool, Container]:
        """Providers for the binding's factory parameters, materialized relative to this scope."""
        deps: set[str] = set()
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        is_async = False
        deepest = self._root()
        inner = (*stack, binding.token.name)
        for param in binding.plan.params:
            token = param.token or self._token_for_param(param, binding.plan, binding.owner)
            dep = self._find(token.name) if token is not None else None
            if dep is None and token is not None and self._pinned_away(token.name):
                self._find_or_raise(token.name, inner)
            if dep is None:
                value = _fallback(param)
                if value is _MISSING and not param.has_default:
                    raise MissingDependencyError(
                        f"service {binding.label()} needs {param.describe()} (parameter"
                        f" `{param.name}` of {binding.plan.target}), provided by nothing;"
                        f" installed providers: {self._installed()}"
                    )
                if param.positional:
                    args.append(providers.Object(value))
                elif not param.has_default:
                    kwargs[param.name] = providers.Object(value)
                continue
            assert token is not None
            handle = dep.handle_for(binding.owner)
            if handle is not None:  # a plugin's handle on a shared host service
                deps.add(token.name)
                if param.positional:
                    args.append(handle)
                else:
                    kwargs[param.name] = handle
                continue
            entry = self._materialize(token.name, inner)
            deps.add(token.name)
            deps.update(entry.deps)
            is_async = is_async or entry.is_async
            if entry.home._level > deepest._level:
                deepest = entry.home
            if param.positional:
                args.append(entry.provider)
            else:
                kwargs[param.name] = entry.provider
        return frozenset(deps), args, kwargs, is_async, deepest

    def _token_for_param(self, param: Param, plan: Plan, owner: str | None) -> Token[Any] | None:
        names = self._names_for_type(param.annotation)
        if len(names) > 1:
            raise InjectionError(
                f"parameter `{param.name}` of {plan.target}"
                + (f" (plugin {owner})" if owner else "")
                + f": type {describe_type(param.annotation)} matches several tokens"
                f" ({', '.join(sorted(names))}); say which with"
                f" Annotated[{describe_type(param.annotation)}, TOKEN]"
            )
        return self._shared.tokens[names[0]] if names else None

    def _names_for_type(self, annotation: Any) -> list[str]:
        try:
            return self._shared.types.get(annotation) or []
        except TypeError:
            return []

    # ------------------------------------------------------------------ constructor injection

    def requirements(self, cls: Callable[..., Any]) -> list[Token[Any]]:
        """The tokens `cls`'s constructor resolves from the container (optional ones included).

        Parameters whose type matches no known token (the plugin's settings model, values the
        host passes as extras) are not listed. Raises `InjectionError` for unreadable signatures.
        """
        found: list[Token[Any]] = []
        for param in plan_for(cls).params:
            token = param.token
            if token is None:
                names = self._names_for_type(param.annotation)
                if len(names) != 1:
                    continue
                token = self._shared.tokens[names[0]]
            if all(token.name != other.name for other in found):
                found.append(token)
        return found

    async def construct(
        self, cls: Callable[..., T], *, owner: str, extras: Mapping[Any, object] = {}
    ) -> T:
        """Build `cls` with its ``__init__`` parameters injected.

        Each parameter is taken from `extras` (keyed by its token or its annotation type, e.g.
        the plugin's bound logger and its settings object) or resolved from the container;
        ``X | None`` parameters get None and parameters with defaults their default when nothing
        provides them. `owner` (the plugin name) is used in error messages.
        """
        self._check_open()
        plan = plan_for(cls)
        args: list[Any] = []
        kwargs: dict[str, Any] = {}
        for param in plan.params:
            value = _from_extras(param, extras) if extras else _MISSING
            if value is _MISSING:
                token = param.token or self._token_for_param(param, plan, owner)
                if token is not None and extras:
                    value = extras.get(token, _MISSING)
                if value is _MISSING and token is not None:
                    binding = self._find(token.name)
                    handle = binding.handle_for(owner) if binding is not None else None
                    if handle is not None:
                        value = handle()
                if value is _MISSING:
                    provider = self._cache.get(token) if token is not None else None
                    if provider is not None:
                        value = provider()
                    else:
                        value = await self._construct_param(token, param, plan, owner)
                if value is _MISSING:
                    continue  # keyword parameter with a default: let Python apply it
            if param.positional:
                args.append(value)
            else:
                kwargs[param.name] = value
        return cls(*args, **kwargs)

    async def _construct_param(
        self, token: Token[Any] | None, param: Param, plan: Plan, owner: str
    ) -> Any:
        if token is not None:
            provider = self._cache.get(token)
            if provider is not None:
                return provider()
            binding = self._find(token.name)
            if binding is not None or self._pinned_away(token.name):
                try:
                    return await self._aresolve_slow(token)
                except ScopeError as exc:
                    raise type(exc)(
                        f"plugin {owner} (parameter `{param.name}` of {plan.target}): {exc}"
                    ) from exc
        value = _fallback(param)
        if value is not _MISSING or param.has_default:
            return value
        raise MissingDependencyError(
            f"plugin {owner} needs {param.describe()} (parameter `{param.name}` of"
            f" {plan.target}), provided by nothing;"
            f" installed providers: {self._installed()}"
        )

    # ------------------------------------------------------------------ validation

    def validate(self) -> list[DependencyError]:
        """Check every binding's dependencies (missing, cycles, scopes) without building any.

        Returns the problems found (empty when the graph is sound); meant to run once after all
        plugins are loaded, so a broken graph is reported at startup rather than at first use.
        """
        problems: list[DependencyError] = []
        root = self._root()
        for name in sorted(set(root._bindings) - set(root._chosen)):
            try:
                root._find_or_raise(name, ())
            except ServicePinError as exc:  # bound, but not by the plugin config pins
                problems.append(exc)
        probes: list[Container] = [root]
        probe_agent = _bare_child(root, "agent")
        probes += [probe_agent, _bare_child(probe_agent, "message")]
        try:
            seen: set[str] = set()
            cycles: set[frozenset[str]] = set()
            for probe in probes:
                for node in probe._chain():
                    for name, binding in node._chosen.items():
                        if name in seen or binding.scope != probe._kind:
                            continue
                        seen.add(name)
                        try:
                            probe._materialize(name, ())
                        except DependencyCycleError as exc:
                            if frozenset(exc.cycle) not in cycles:  # once per cycle
                                cycles.add(frozenset(exc.cycle))
                                problems.append(exc)
                        except DependencyError as exc:
                            problems.append(exc)
        finally:
            for probe in reversed(probes[1:]):
                probe._closed = True
                if probe._parent is not None:
                    probe._parent._children.pop(probe, None)
        return problems

    # ------------------------------------------------------------------ scopes

    def create_scope(self, kind: Literal["agent", "message"]) -> Container:
        """Open a child scope (use as ``async with``, or ``await child.aclose()``)."""
        if self._closed:
            raise ScopeClosedError(f"cannot open a {kind} scope: the {self._kind} scope is closed")
        depth = _SCOPES.get(kind)
        if depth is None or depth == 0:
            raise ScopeError(f"unknown scope kind {kind!r}: open an 'agent' or a 'message' scope")
        if depth <= _SCOPES[self._kind]:
            raise ScopeError(f"cannot open a {kind} scope inside a {self._kind} scope")
        return _bare_child(self, kind)

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
            _log.opt(exception=True).error(
                "releasing the {} scope after an error also failed", self._kind
            )

    async def aclose(self) -> None:
        """Close this scope: close open child scopes, then tear down this scope's resources in
        reverse order of creation. Every resource is released even if some teardowns fail
        (then `ServiceReleaseError` lists them). Idempotent."""
        if self._closed:
            return
        errors: list[BaseException] = []
        for child in reversed(list(self._children)):
            try:
                await child.aclose()
            except ServiceReleaseError as exc:
                errors.extend(exc.errors)
        self._closed = True
        order = self._order
        if order:
            for entry in reversed(order):
                if entry.binding.is_resource and _initialized(entry.provider):
                    try:
                        result = _resource(entry.provider).shutdown()
                        if inspect.isawaitable(result):
                            await result
                    except Exception as exc:
                        _log.opt(exception=exc).error(
                            "service {}: teardown failed", entry.binding.label()
                        )
                        errors.append(exc)
                        continue
                if entry.template is not None:
                    self._recycle(entry, entry.template)
            self._order = []
            self._entries.clear()
        self._templates.clear()
        self._cache.clear()
        self._acache.clear()
        if self._parent is not None:
            self._parent._children.pop(self, None)
        else:
            await self._drain()
        if errors:
            raise ServiceReleaseError(
                f"{len(errors)} service(s) of the {self._kind} scope failed to tear down: "
                + "; ".join(f"{type(error).__name__}: {error}" for error in errors),
                errors,
            )

    def _recycle(self, entry: _Entry, template: _Template) -> None:
        """Hand a closed scope's provider back to its template's pool, reset."""
        parent = self._parent
        if parent is None or len(template.pool) >= _POOL_SIZE:
            return
        if parent._templates.get(entry.binding.token.name) is not template:
            return  # the binding changed meanwhile
        if not entry.binding.is_resource:
            cast("providers.Singleton[Any]", entry.provider).reset()
        template.pool.append(entry.provider)

    async def _drain(self) -> None:
        """Wait for background teardowns started by `unregister_owner`."""
        shared = self._shared
        while shared.tasks:
            await asyncio.gather(*list(shared.tasks), return_exceptions=True)
        retired, shared.retired = shared.retired, []
        for provider, label in retired:
            await _shutdown_logged(provider, label)

    # ------------------------------------------------------------------ helpers

    def _check_open(self) -> None:
        if self._closed:
            raise ScopeClosedError(f"this {self._kind} scope is closed")

    def _root(self) -> Container:
        node = self
        while node._parent is not None:
            node = node._parent
        return node

    def _chain(self) -> Iterator[Container]:
        node: Container | None = self
        while node is not None:
            yield node
            node = node._parent

    def _subtree(self) -> list[Container]:
        """This scope and all open scopes below it, parents before children."""
        nodes = [self]
        for node in nodes:
            nodes.extend(node._children)
        return nodes

    def _installed(self) -> str:
        owners: dict[str, list[str]] = {}
        for node in self._chain():
            for name, candidates in node._bindings.items():
                names = owners.setdefault(name, [])
                for binding in candidates:
                    label = binding.owner or "host"
                    if label not in names:
                        names.append(label)
        if not owners:
            return "none"
        return ", ".join(f"{name} ({', '.join(owners[name])})" for name in sorted(owners))

    def _cycle_label(self, name: str) -> str:
        binding = self._find(name)
        return binding.label() if binding is not None else repr(name)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return f"<Container {self._kind} scope{state}, {len(self._chosen)} bindings>"


def _level(node: Container) -> int:
    return node._level


def _bare_child(parent: Container, kind: Scope) -> Container:
    child = object.__new__(Container)
    child._setup(parent, kind, parent._shared)
    parent._children[child] = None
    return child


def _make_provider(
    binding: _Binding, args: Sequence[Any], kwargs: Mapping[str, Any]
) -> providers.Provider[Any]:
    if binding.factory is None:
        return providers.Object(binding.instance)
    if binding.is_resource:
        return providers.Resource(binding.factory, *args, **kwargs)
    if binding.lifetime == "transient":
        return providers.Factory(binding.factory, *args, **kwargs)
    return providers.Singleton(binding.factory, *args, **kwargs)


def _resource(provider: providers.Provider[Any]) -> providers.Resource[Any]:
    return cast("providers.Resource[Any]", provider)


def _initialized(provider: providers.Provider[Any]) -> bool:
    return bool(getattr(provider, "initialized", False))


async def _shutdown_logged(provider: providers.Provider[Any], label: str) -> None:
    try:
        if _initialized(provider):
            result = _resource(provider).shutdown()
            if inspect.isawaitable(result):
                await result
    except Exception:
        _log.exception("service {}: teardown failed", label)


def _shutdown_sync(provider: providers.Provider[Any], label: str) -> None:
    try:
        result = _resource(provider).shutdown()
        if inspect.iscoroutine(result):  # defensive: a sync resource never returns one
            result.close()
    except Exception:
        _log.exception("service {}: teardown failed", label)


def _fallback(param: Param) -> Any:
    """What a parameter gets when nothing provides it: its default, None if optional, or
    `_MISSING` (for a keyword parameter with a default, `_MISSING` too: Python applies it)."""
    if param.has_default:
        return param.default if param.positional else _MISSING
    if param.optional:
        return None
    return _MISSING


def _from_extras(param: Param, extras: Mapping[Any, object]) -> Any:
    if param.token is not None:
        value = extras.get(param.token, _MISSING)
        if value is not _MISSING:
            return value
    try:
        return extras.get(param.annotation, _MISSING)
    except TypeError:
        return _MISSING


def _same_type(a: Token[Any], b: Token[Any]) -> bool:
    return a is b or a.type is None or b.type is None or a.type == b.type


def _owner_label(owner: str | None) -> str:
    return f"plugin {owner}" if owner else "the host"


def _others(candidates: Iterable[_Binding], chosen: _Binding | None) -> str:
    return ", ".join(
        f"{_owner_label(binding.owner)} (priority {binding.priority})"
        for binding in candidates
        if binding is not chosen
    )


def _callable_name(factory: Callable[..., Any]) -> str:
    return cast(str, getattr(factory, "__qualname__", None) or repr(factory))


def _async_reason(entry: _Entry, node: Container) -> str:
    binding = entry.binding
    if binding.is_async:
        kind = "an async generator" if binding.is_resource else "a coroutine function"
        return f"its factory {binding.plan.target} is {kind}"
    for name in sorted(entry.deps):
        dep = node._find(name)
        if dep is not None and dep.is_async:
            return f"it depends on async service {dep.label()}"
    return "it depends on an async service"


def _contract_tokens() -> list[Token[Any]]:
    """The well-known tokens exported by `contracts` (DATABASE, LOGGER, SETTINGS, ...)."""
    import contracts

    return [value for value in vars(contracts).values() if isinstance(value, Token)]
