"""Subscriptions to the event bus: `HandlerSubscription` (one handler on one event, with how
an emit calls it) and the checks that refuse a subscription the bus could only fail on later.
Apart from `host.events` (the bus: subscribing and emitting) so that what a subscription is
reads alone."""

from __future__ import annotations

import asyncio
import inspect
import itertools
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from contracts.events import Event, EventError

if TYPE_CHECKING:
    from host.events import EventBus

__all__ = [
    "ALL_TIMED",
    "ANY",
    "DETACHED",
    "GONE",
    "OWN",
    "SOME_TIMED",
    "TIMED",
    "HandlerSubscription",
    "SubscribeOptions",
    "check_subscription",
    "gone",
    "is_async",
    "sort_key",
]

_order = itertools.count()
TIMED, OWN, ANY, DETACHED, GONE = 0, 1, 2, 3, 4
SOME_TIMED, ALL_TIMED = 1, 2
"""How a plan entry is called: `TIMED`, ``await call(payload)`` under the emit's deadline (a
coroutine function with a limit: the common case, kept to the fewest steps); `OWN`,
``call(payload)`` and await what it returns if it is awaitable (under the deadline if it has a
limit); `ANY`, the same with ``call(event, payload)``; `DETACHED`, in a task of its own;
`GONE`, not at all (unsubscribed while an emit that holds the plan runs)."""


class SubscribeOptions(TypedDict, total=False):
    """How a handler is subscribed, past its event and owner (`EventBus.on` says what each
    means and its default); what a wrapper of ``on`` / ``on_any`` passes through unchanged."""

    priority: int
    detached: bool
    timeout: float | None
    blocking: bool


@dataclass(eq=False, slots=True)
class HandlerSubscription:
    """One handler on one event (or on every event when `event` is None)."""

    bus: EventBus
    event: Event[Any] | None
    handler: Callable[..., Awaitable[None] | None]
    owner: str | None
    priority: int
    detached: bool
    timeout: float | None
    blocking: bool = False
    """A sync handler that may block: run in a worker thread (`asyncio.to_thread`)."""
    order: int = field(default_factory=lambda: next(_order))
    active: bool = True
    call: Callable[..., Awaitable[None] | None] = field(init=False)
    """What emit calls: `handler`, or for a blocking one a call of it in a worker thread."""
    limit: float | None = None
    """Seconds an await of it may take: `timeout`, else the bus default (set with the plan)."""
    kind: int = TIMED
    """How emit calls it (`TIMED`, ...; set with the plan, `GONE` once unsubscribed)."""

    def __post_init__(self) -> None:
        self.call = in_thread(self.handler) if self.blocking else self.handler

    def cancel(self) -> None:
        """Unsubscribe (idempotent)."""
        if self.active:
            self.bus._remove(self)

    @property
    def label(self) -> str:
        name = getattr(self.handler, "__qualname__", None) or repr(self.handler)
        return f"{self.owner}:{name}" if self.owner else str(name)


def sort_key(sub: HandlerSubscription) -> tuple[int, int]:
    return (-sub.priority, sub.order)


async def gone(*args: Any) -> None:
    """What an unsubscribed handler's subscription calls from then on: nothing."""


def in_thread(handler: Callable[..., Any]) -> Callable[..., Awaitable[None]]:
    """A blocking handler as a call in a worker thread (the loop stays free meanwhile)."""

    def call(*args: Any) -> Awaitable[None]:
        return asyncio.to_thread(handler, *args)

    return call


def check_subscription(
    what: str, handler: object, owner: str | None, timeout: float | None, blocking: bool = False
) -> None:
    """A subscription the bus could only fail on later is refused now, naming its target."""
    by = f" (plugin {owner})" if owner else ""
    if not callable(handler):
        raise EventError(f"handler for {what}{by} is not callable: {handler!r}")
    if blocking and is_async(handler):
        raise EventError(
            f"handler for {what}{by} is declared blocking but is async: blocking=True is for"
            " sync handlers, which then run in a worker thread"
        )
    if timeout is not None and not (isinstance(timeout, int | float) and 0 < timeout < math.inf):
        raise EventError(
            f"handler for {what}{by}: timeout must be seconds > 0 or None (the bus default), "
            f"got {timeout!r}"
        )


def is_async(function: object) -> bool:
    call = getattr(function, "__call__", None)  # noqa: B004  (instances with an async __call__)
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(call)
