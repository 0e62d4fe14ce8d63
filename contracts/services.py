"""What a plugin can contribute to the container, and what the container raises.

A `Service` binds a token to a factory. The factory's own parameters are injected like a plugin
constructor's (by annotation or ``Annotated[T, TOKEN]``). A factory may be a class, a function, an
``async def`` function, or a generator / async generator for services with a lifecycle: code
before ``yield`` sets the service up, code after it tears it down when its scope closes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable

from contracts.errors import AgentHostError
from contracts.tokens import Token

T = TypeVar("T")

Scope = Literal["app", "agent", "message"]
"""Where an instance lives: the host process, one agent runtime, one processed message."""

Lifetime = Literal["singleton", "scoped", "transient"]
"""How often the factory runs.

- ``singleton`` / ``scoped``: once per open scope of kind `Scope` (``singleton`` with the default
  ``app`` scope is one per process; ``scoped`` with ``message`` is one per processed message);
- ``transient``: on every resolve (a generator factory cannot be transient: its teardown needs a
  scope to own it).
"""

Factory = (
    Callable[..., T]
    | Callable[..., Awaitable[T]]
    | Callable[..., AsyncIterator[T]]
    | Callable[..., Iterator[T]]
)
"""What may build a `T`: a class or function returning it, an ``async def`` returning it, or a
generator / async generator yielding it once (set-up before ``yield``, tear-down after)."""

__all__ = [
    "AsyncServiceError",
    "DependencyCycleError",
    "DependencyError",
    "Factory",
    "InjectionError",
    "Lifetime",
    "MissingDependencyError",
    "Scope",
    "ScopeClosedError",
    "ScopeError",
    "Service",
    "ServiceConflictError",
    "ServicePinError",
    "ServiceReleaseError",
    "ServiceScope",
]


@dataclass(frozen=True, slots=True)
class Service(Generic[T]):
    """A binding of `token` to `factory`, contributed by a plugin (see `Plugin.services`).

    ``priority`` defaults to the plugin's manifest priority; when two plugins bind the same token,
    the higher priority wins unless config pins one (``services: {database: postgres}``).
    """

    token: Token[T]
    factory: Factory[T]
    lifetime: Lifetime = "singleton"
    scope: Scope = "app"
    priority: int | None = None


@runtime_checkable
class ServiceScope(Protocol):
    """An open container scope, as component code sees it: resolve the services visible there.

    The runtime opens one ``message`` scope per processed message and hands it to the message's
    providers (``state.services``), actions and evaluators (``ctx.services``): services bound
    with ``scope="message"`` are built once per message there and torn down when the message
    ends; agent and app services are visible through it too.
    """

    def resolve(self, token: Token[T]) -> T:
        """The service `token` names (`AsyncServiceError` for one that must be awaited)."""
        ...

    async def aresolve(self, token: Token[T]) -> T:
        """The service `token` names, awaiting an async factory or set-up."""
        ...

    def has(self, token: Token[Any]) -> bool:
        """Whether something visible from this scope provides `token`."""
        ...


class DependencyError(AgentHostError):
    """Base of every error the container raises while binding or resolving services."""


class MissingDependencyError(DependencyError, LookupError):
    """A service or constructor parameter that nothing provides."""


class DependencyCycleError(DependencyError):
    """Services that (indirectly) need each other; the message names the cycle."""

    def __init__(self, message: str, cycle: tuple[str, ...]) -> None:
        super().__init__(message)
        self.cycle = cycle


class ScopeError(DependencyError):
    """A service resolved outside its scope, or a long-lived service needing a shorter-lived one."""


class ScopeClosedError(ScopeError):
    """A scope used after it was closed."""


class AsyncServiceError(DependencyError):
    """An async service (or one depending on one) resolved with the synchronous `resolve`."""


class ServicePinError(DependencyError):
    """Config pins a token to a plugin that does not provide it."""


class ServiceConflictError(DependencyError):
    """Two bindings that cannot coexist (same token name, different types), or a bad binding."""


class InjectionError(DependencyError, TypeError):
    """A constructor or factory whose parameters cannot be injected (no annotation, ambiguous)."""


class ServiceReleaseError(DependencyError):
    """One or more services failed to tear down; every other one was still released."""

    def __init__(self, message: str, errors: list[BaseException]) -> None:
        super().__init__(message)
        self.errors = errors
