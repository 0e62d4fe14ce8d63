"""The container's errors as data: each carries its fields and renders its message from them.

Each class here subclasses the `contracts.services` class of the same name (what a plugin
author catches: ``except MissingDependencyError`` still works, and failure texts still read
``MissingDependencyError: ...``). The host and tests read the fields (``exc.token``,
``exc.plugin``, ``exc.parameter``, ``exc.scope``, ``exc.needed_by``, ``exc.candidates``) instead
of parsing the text; where one class covers several situations, ``exc.kind`` says which.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from contracts import services as families
from contracts.services import Scope

__all__ = [
    "AsyncServiceError",
    "Candidate",
    "DependencyCycleError",
    "InjectionError",
    "MissingDependencyError",
    "Rendered",
    "ScopeClosedError",
    "ScopeError",
    "ServiceConflictError",
    "ServicePinError",
    "ServiceRef",
    "ServiceReleaseError",
    "Via",
    "describe_type",
    "owner_label",
]


def owner_label(plugin: str | None) -> str:
    """``plugin sqlite`` or ``the host``."""
    return f"plugin {plugin}" if plugin else "the host"


def describe_type(annotation: Any) -> str:
    """A short human name for an annotation: `DatabaseAdapter`, `list[str]`."""
    if isinstance(annotation, type):
        return annotation.__qualname__
    return repr(annotation).replace("typing.", "")


@dataclass(frozen=True, slots=True)
class ServiceRef:
    """A bound service as errors name it: its token name and the plugin that bound it."""

    token: str
    plugin: str | None
    """None: the host bound it."""

    def label(self) -> str:
        return f"'{self.token}' ({owner_label(self.plugin)})"


@dataclass(frozen=True, slots=True)
class Candidate:
    """One provider of a token: who bound it, at which priority."""

    plugin: str | None
    priority: int

    def label(self) -> str:
        return f"{owner_label(self.plugin)} (priority {self.priority})"


def candidates_text(candidates: tuple[Candidate, ...]) -> str:
    return ", ".join(candidate.label() for candidate in candidates)


def installed_text(installed: Mapping[str, tuple[str, ...]]) -> str:
    if not installed:
        return "none"
    return ", ".join(f"{name} ({', '.join(installed[name])})" for name in sorted(installed))


@dataclass(frozen=True, slots=True)
class Via:
    """Where an error surfaced while constructing a plugin: the parameter being resolved."""

    plugin: str
    parameter: str
    target: str


@dataclass(eq=False, kw_only=True)
class Rendered(families.DependencyError):
    """Base of the classes below: the message is `render()` of the fields, set at construction
    (and again by `dataclasses.replace`). `via`: the plugin parameter being constructed when
    the error surfaced, rendered as a prefix."""

    via: Via | None = None

    def __post_init__(self) -> None:
        via = self.via
        prefix = (
            f"plugin {via.plugin} (parameter `{via.parameter}` of {via.target}): " if via else ""
        )
        Exception.__init__(self, prefix + self.render())

    def render(self) -> str:
        raise NotImplementedError

    def __reduce__(self) -> tuple[Any, ...]:
        # Exception's own pickles ``args`` (the message), which these constructors do not take.
        return (_rebuild, (type(self), {f.name: getattr(self, f.name) for f in fields(self)}))


def _rebuild(cls: type[Rendered], values: dict[str, Any]) -> Rendered:
    return cls(**values)


def _service(token: str | None, plugin: str | None) -> str:
    return f"service '{token}'" + (f" of plugin {plugin}" if plugin else "")


Installed = Mapping[str, tuple[str, ...]]
"""Every bound token name -> who binds it (``host`` for the host)."""


@dataclass(eq=False, kw_only=True)
class MissingDependencyError(Rendered, families.MissingDependencyError):
    """A token nothing binds (``parameter`` None: resolving it, for service `needed_by` if
    set), or a constructor/factory `parameter` nothing provides (no default, not optional)."""

    token: str | None
    """The token asked for (None: a parameter whose type matches no known token)."""
    plugin: str | None = None
    """The plugin constructing `target`, or owning `service` (None: the host)."""
    parameter: str | None = None
    target: str | None = None
    """The callable with the parameter: ``Journal.__init__``, ``make_client``."""
    wants: str | None = None
    """What the parameter asks for: a type name, or ``token 'x'`` for ``Annotated[T, X]``."""
    service: str | None = None
    """The service whose factory has the parameter; None for a plugin's constructor."""
    needed_by: str | None = None
    pin: str | None = None
    """The plugin config pins `token` to, if any (not loaded)."""
    installed: Installed = field(default_factory=dict)

    def render(self) -> str:
        installed = f"installed providers: {installed_text(self.installed)}"
        if self.parameter is None:
            needed = f" (needed by {self.needed_by!r})" if self.needed_by else ""
            pin = f"; config services.{self.token} pins plugin {self.pin}, not loaded"
            return (
                f"service '{self.token}'{needed} is provided by nothing"
                f"{pin if self.pin else ''}; {installed}"
            )
        who = (
            f"service '{self.service}' ({owner_label(self.plugin)})"
            if self.service is not None
            else f"plugin {self.plugin}"
        )
        return (
            f"{who} needs {self.wants} (parameter `{self.parameter}` of {self.target}),"
            f" provided by nothing; {installed}"
        )


@dataclass(eq=False, kw_only=True)
class ServicePinError(Rendered, families.ServicePinError):
    """Config pins `token` to `pin`, which does not provide it; `candidates` do."""

    token: str
    pin: str
    candidates: tuple[Candidate, ...]

    def render(self) -> str:
        return (
            f"config services.{self.token} pins plugin {self.pin}, which does not provide"
            f" '{self.token}'; it is provided by: {candidates_text(self.candidates)}"
        )


@dataclass(eq=False, kw_only=True)
class DependencyCycleError(Rendered, families.DependencyCycleError):
    """Services needing each other; `cycle` names them in order, the first one repeated last."""

    cycle: tuple[str, ...]
    services: tuple[ServiceRef | None, ...]
    """Each name of `cycle` with its owner (None: not visible where the cycle was found)."""

    def render(self) -> str:
        return "dependency cycle between services: " + " -> ".join(
            ref.label() if ref is not None else repr(name)
            for name, ref in zip(self.cycle, self.services, strict=True)
        )


@dataclass(eq=False, kw_only=True)
class ScopeError(Rendered, families.ScopeError):
    """`kind`: ``not_open``, service `token` of `scope` resolved from a `current` scope where no
    such scope is open; ``shorter_lived``, a cached service (`needed_by`) needing `token` of a
    shorter-lived `scope`; ``nesting``, `create_scope(requested)` inside a `current` scope it
    cannot nest in (or an unknown kind)."""

    kind: Literal["not_open", "shorter_lived", "nesting"]
    token: str | None = None
    plugin: str | None = None
    scope: Scope | None = None
    current: Scope | None = None
    needed_by: str | None = None
    needed_by_plugin: str | None = None
    needed_by_lifetime: str | None = None
    needed_by_scope: Scope | None = None
    requested: str | None = None

    def render(self) -> str:
        ref = ServiceRef(str(self.token), self.plugin).label()
        if self.kind == "nesting":
            if self.requested not in ("agent", "message"):
                return (
                    f"unknown scope kind {self.requested!r}: open an 'agent' or a 'message' scope"
                )
            return f"cannot open a {self.requested} scope inside a {self.current} scope"
        if self.kind == "shorter_lived":
            holder = ServiceRef(str(self.needed_by), self.needed_by_plugin).label()
            return (
                f"{holder} ({self.needed_by_lifetime}, {self.needed_by_scope} scope) needs"
                f" service {ref}, which lives in the {self.scope} scope: a longer-lived service"
                f" cannot hold a shorter-lived one; make '{self.needed_by}' {self.scope}-scoped"
                " or transient"
            )
        needed = f", needed by '{self.needed_by}'," if self.needed_by else ""
        return (
            f"service {ref}{needed} lives in the {self.scope} scope, but no {self.scope} scope"
            f" is open here (resolving from the {self.current} scope); resolve it inside"
            f" `async with container.create_scope({self.scope!r})`"
        )


@dataclass(eq=False, kw_only=True)
class ScopeClosedError(Rendered, families.ScopeClosedError):
    """Using a closed `scope`: to open a child scope (`opening`) or build `token` in it."""

    scope: Scope
    opening: Scope | None = None
    token: str | None = None

    def render(self) -> str:
        if self.opening is not None:
            return f"cannot open a {self.opening} scope: the {self.scope} scope is closed"
        if self.token is not None:
            return f"the {self.scope} scope owning service '{self.token}' is closed"
        return f"this {self.scope} scope is closed"


@dataclass(eq=False, kw_only=True)
class ServiceReleaseError(Rendered, families.ServiceReleaseError):
    """Tear-downs that failed when a `scope` closed; every other one still ran."""

    scope: Scope
    errors: list[BaseException]

    def render(self) -> str:
        return f"{len(self.errors)} service(s) of the {self.scope} scope failed to tear down: " + (
            "; ".join(f"{type(error).__name__}: {error}" for error in self.errors)
        )


@dataclass(eq=False, kw_only=True)
class AsyncServiceError(Rendered, families.AsyncServiceError):
    """`resolve` of an async service: its `factory` is async (a coroutine function, or an async
    generator when `resource`), or it depends on `async_dependency`."""

    token: str
    plugin: str | None
    factory: str | None = None
    resource: bool = False
    async_dependency: ServiceRef | None = None

    def render(self) -> str:
        if self.factory is not None:
            kind = "an async generator" if self.resource else "a coroutine function"
            reason = f"its factory {self.factory} is {kind}"
        elif self.async_dependency is not None:
            reason = f"it depends on async service {self.async_dependency.label()}"
        else:
            reason = "it depends on an async service"
        return (
            f"service {ServiceRef(self.token, self.plugin).label()} is async ({reason});"
            " use `await container.aresolve(...)`"
        )


@dataclass(eq=False, kw_only=True)
class ServiceConflictError(Rendered, families.ServiceConflictError):
    """A binding of `token` (by `plugin`) refused. `kind`: ``type_conflict``, its name is bound
    to `bound_type` by `bound_by` and here to `type`; ``unknown_choice``, `option` (lifetime or
    scope) is `value`, not one of `choices`; ``not_callable``, `factory` is not callable;
    ``transient_generator``, a generator `factory` (its tear-down needs a scope) as transient."""

    kind: Literal["type_conflict", "unknown_choice", "not_callable", "transient_generator"]
    token: str
    plugin: str | None
    type: Any = None
    bound_type: Any = None
    bound_by: str | None = None
    option: str | None = None
    value: object = None
    choices: tuple[str, ...] = ()
    factory: object = None

    def render(self) -> str:
        if self.kind == "type_conflict":
            return (
                f"token name '{self.token}' is bound to two different types:"
                f" {describe_type(self.bound_type)} by"
                f" {ServiceRef(self.token, self.bound_by).label()} and"
                f" {describe_type(self.type)} by {owner_label(self.plugin)}; token names must be"
                " unique (prefix a plugin's own tokens with its name)"
            )
        what = _service(self.token, self.plugin)
        if self.kind == "unknown_choice":
            choices = ", ".join(self.choices)
            return f"{what}: unknown {self.option} {self.value!r}; use one of {choices}"
        if self.kind == "not_callable":
            return f"{what}: factory {self.factory!r} is not callable"
        return (
            f"{what}: a generator factory ({self.factory}) cannot be transient: its teardown"
            " needs a scope to own it; use lifetime 'scoped' (or 'singleton')"
        )


@dataclass(eq=False, kw_only=True)
class InjectionError(Rendered, families.InjectionError):
    """Parameters of `target` that cannot be injected. `kind`: ``unreadable``, its signature
    cannot be read (`reason`; `unresolved`: an annotation does not evaluate, most often a type
    only imported under TYPE_CHECKING); ``unannotated``, `parameter` has no annotation;
    ``several_tokens``, `parameter` names several `candidates` in its ``Annotated``;
    ``ambiguous``, its `type` matches several known tokens (`candidates`), constructing for
    `plugin`. `token`/`plugin` with another kind: the service whose factory `target` is."""

    kind: Literal["unreadable", "unannotated", "several_tokens", "ambiguous"]
    target: str
    parameter: str | None = None
    token: str | None = None
    plugin: str | None = None
    type: Any = None
    candidates: tuple[str, ...] = ()
    reason: str = ""
    unresolved: bool = False

    def render(self) -> str:
        param = f"parameter `{self.parameter}` of {self.target}"
        if self.kind == "ambiguous":
            name = describe_type(self.type)
            plugin = f" (plugin {self.plugin})" if self.plugin else ""
            return (
                f"{param}{plugin}: type {name} matches several tokens"
                f" ({', '.join(self.candidates)}); say which with Annotated[{name}, TOKEN]"
            )
        prefix = f"{_service(self.token, self.plugin)}: " if self.token is not None else ""
        if self.kind == "unannotated":
            return (
                f"{prefix}{param} has no annotation: annotate it with the type to inject"
                " (`db: DatabaseAdapter`) or a token (`db: Annotated[DatabaseAdapter, DATABASE]`)"
            )
        if self.kind == "several_tokens":
            return (
                f"{prefix}{param} names {len(self.candidates)} tokens in its Annotated[...];"
                " give exactly one"
            )
        hint = (
            " (is a type only imported under TYPE_CHECKING? injected types must be importable"
            " at run time)"
        )
        return (
            f"{prefix}cannot read the parameters of {self.target}: {self.reason}"
            f"{hint if self.unresolved else ''}"
        )
