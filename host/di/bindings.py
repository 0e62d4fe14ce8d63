"""Bindings and the choice among them: what `register`/`provide` record, the index of known
tokens by name and type, and which of several providers of one token wins (priority, config
pins), logged once per change of winner."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final

from dependency_injector import providers
from loguru import logger

from contracts.plugin import LoadedPluginLike
from contracts.services import Lifetime, Scope, Service
from contracts.tokens import Token
from host.di.errors import (
    Candidate,
    InjectionError,
    ServiceConflictError,
    ServiceRef,
    candidates_text,
    owner_label,
)
from host.di.plans import Param, Plan, plan_for

if TYPE_CHECKING:
    from host.di.scopes import Node

__all__ = ["SCOPES", "Binding", "BindingInfo", "ChoiceLog", "LoadedPluginLike", "TokenIndex"]

log = logger.bind(component="container")

SCOPES: Final[dict[str, int]] = {"app": 0, "agent": 1, "message": 2}
"""Scope kinds, outermost first: a scope opens only inside a shallower one."""
LIFETIMES: Final = ("singleton", "scoped", "transient")


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
class Binding:
    """One `register`/`provide` call: a token, what builds it, and who bound it where."""

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
    node: Node
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

    def ref(self) -> ServiceRef:
        return ServiceRef(self.token.name, self.owner)

    def label(self) -> str:
        return self.ref().label()

    def candidate(self) -> Candidate:
        return Candidate(self.owner, self.priority)

    def info(self, chosen: bool) -> BindingInfo:
        factory = (
            f"instance of {type(self.instance).__qualname__}"
            if self.factory is None
            else self.plan.target
        )
        return BindingInfo(
            self.token.name, self.owner, self.priority, self.lifetime, self.scope, chosen, factory
        )


@dataclass(frozen=True, slots=True)
class FactoryTraits:
    """What `register` learns from a factory before binding it."""

    plan: Plan
    is_resource: bool
    is_async: bool


def check_factory(
    token: Token[Any], factory: Any, lifetime: str, scope: str, owner: str | None
) -> FactoryTraits:
    """Validate a `register` call's arguments; the factory's plan and kind."""
    name = token.name
    for option, value, choices in (("lifetime", lifetime, LIFETIMES), ("scope", scope, SCOPES)):
        if value not in choices:
            raise ServiceConflictError(
                kind="unknown_choice",
                token=name,
                plugin=owner,
                option=option,
                value=value,
                choices=tuple(choices),
            )
    if not callable(factory):
        raise ServiceConflictError(kind="not_callable", token=name, plugin=owner, factory=factory)
    is_resource = inspect.isgeneratorfunction(factory) or inspect.isasyncgenfunction(factory)
    if is_resource and lifetime == "transient":
        label = getattr(factory, "__qualname__", None) or repr(factory)
        raise ServiceConflictError(
            kind="transient_generator", token=name, plugin=owner, factory=label
        )
    try:
        plan = plan_for(factory)
    except InjectionError as exc:
        raise replace(exc, token=name, plugin=owner) from exc
    is_async = (
        inspect.iscoroutinefunction(factory)
        or inspect.isasyncgenfunction(factory)
        or (not isinstance(factory, type) and inspect.iscoroutinefunction(type(factory).__call__))
    )
    return FactoryTraits(plan, is_resource, is_async)


def check_same_type(candidates: Sequence[Binding], token: Token[Any], owner: str | None) -> None:
    """One token name means one type: refuse a binding of `token` that contradicts another
    owner's binding of the same name."""
    for other in candidates:
        if other.owner == owner:
            continue
        known = other.token
        if known is token or known.type is None or token.type is None or known.type == token.type:
            continue
        raise ServiceConflictError(
            kind="type_conflict",
            token=token.name,
            type=token.type,
            plugin=owner,
            bound_type=known.type,
            bound_by=other.owner,
        )


class TokenIndex:
    """Known tokens by name and by type (for matching constructor annotations)."""

    __slots__ = ("tokens", "types")

    def __init__(self) -> None:
        self.tokens: dict[str, Token[Any]] = {}
        self.types: dict[Any, list[str]] = {}

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

    def names_for_type(self, annotation: Any) -> list[str]:
        try:
            return self.types.get(annotation) or []
        except TypeError:
            return []

    def for_param(self, param: Param, plan: Plan, owner: str | None) -> Token[Any] | None:
        """The token a parameter without an explicit one is injected from, if any."""
        names = self.names_for_type(param.annotation)
        if len(names) > 1:
            raise InjectionError(
                kind="ambiguous",
                parameter=param.name,
                target=plan.target,
                plugin=owner,
                type=param.annotation,
                candidates=tuple(sorted(names)),
            )
        return self.tokens[names[0]] if names else None

    def _unindex(self, token: Token[Any]) -> None:
        try:
            names = self.types.get(token.type)
        except TypeError:
            return
        if names and token.name in names:
            names.remove(token.name)


class ChoiceLog:
    """Which provider choices were logged, so each is logged once per change of winner."""

    __slots__ = ("announced", "held", "pending")

    def __init__(self) -> None:
        self.announced: dict[str, tuple[str | None, frozenset[str | None]]] = {}
        """Last provider choice logged per service (winner, losers); see `should_announce`."""
        self.held = 0
        """Open `Container.announcing_once` blocks: choices made meanwhile wait in `pending`."""
        self.pending: set[str] = set()

    def should_announce(self, name: str, chosen: Binding, candidates: list[Binding]) -> bool:
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


def _others(candidates: Sequence[Binding], chosen: Binding) -> str:
    return candidates_text(tuple(b.candidate() for b in candidates if b is not chosen))


def choose(
    name: str, candidates: list[Binding], pin: str | None, choices: ChoiceLog
) -> Binding | None:
    """The winner among `candidates` for service `name`: the `pin`ned plugin's binding, else
    the highest priority (on a tie the later one, with a warning); logged through `choices`.
    None when `pin` names a plugin that binds nothing here (resolving reports it)."""
    if pin is not None:
        pinned = [binding for binding in candidates if binding.owner == pin]
        if not pinned:
            return None
        chosen = pinned[-1]
        if choices.should_announce(name, chosen, candidates):
            log.info(
                "service '{}': using plugin {} (pinned by config services.{}) over {}",
                name,
                pin,
                name,
                _others(candidates, chosen),
            )
        return chosen
    chosen = max(candidates, key=lambda binding: (binding.priority, binding.seq))
    if choices.should_announce(name, chosen, candidates):
        tie = [b for b in candidates if b.priority == chosen.priority and b is not chosen]
        log.log(
            "WARNING" if tie else "INFO",
            "service '{}': using {} (priority {}) over {}{}",
            name,
            owner_label(chosen.owner),
            chosen.priority,
            _others(candidates, chosen),
            f"; equal priorities, pin one with config services.{name}" if tie else "",
        )
    return chosen


def plugin_services(loaded: LoadedPluginLike) -> list[Service[Any]]:
    """What a loaded plugin's `services()` binds; warns about tokens bound but not listed in
    ``manifest.provides`` (or listed but not bound): the loader orders plugins by it."""
    manifest = loaded.manifest
    name = manifest.name
    services = list(loaded.instance.services())
    declared = {token.name for token in manifest.provides}
    bound = {service.token.name for service in services}
    for service in services:
        if service.token.name not in declared:
            log.warning(
                "plugin {} binds service '{}' without listing it in manifest.provides;"
                " plugins needing it may load before it",
                name,
                service.token.name,
            )
    for missing in sorted(declared - bound):
        log.warning(
            "plugin {} lists '{}' in manifest.provides but its services() does not bind it",
            name,
            missing,
        )
    return services
