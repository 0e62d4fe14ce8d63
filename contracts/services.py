"""What a plugin can contribute to the container: a `Service` binds a token to a factory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from contracts.tokens import Token

T = TypeVar("T")

Scope = Literal["app", "agent", "message"]
"""Where an instance lives: the host process, one agent runtime, one processed message."""

Lifetime = Literal["singleton", "scoped", "transient"]
"""singleton: one per app; scoped: one per open scope of `scope`; transient: new each resolve."""

__all__ = ["Lifetime", "Scope", "Service"]


@dataclass(frozen=True, slots=True)
class Service(Generic[T]):
    """A binding of `token` to `factory`, contributed by a plugin (see `Plugin.services`).

    The factory's own parameters are injected like a plugin constructor's. A factory may be an
    async generator (set-up before `yield`, tear-down after) for services with a lifecycle.
    """

    token: Token[T]
    factory: Callable[..., Any]
    lifetime: Lifetime = "singleton"
    scope: Scope = "app"
