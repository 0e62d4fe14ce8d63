"""Typed events: every step of the host is an `Event[P]` whose payload type mypy knows.

An event is a named token carrying its payload model, so ``bus.on(MEMORY_CREATED, handler)``
is checked against ``MemoryPayload`` and ``bus.emit(MEMORY_CREATED, payload)`` rejects any other
payload type. Plugins declare their own events the same way::

    WEATHER_FETCHED = Event("weather:fetched", WeatherPayload)

Payloads are frozen pydantic models: handlers may keep them, and the event store can serialise
them (``model_dump(mode="json")``) and read them back. Message and memory payloads carry
``agent_id``, ``room_id`` and ``entity_id`` at the top level, which is what the provider cache
scopes its invalidations by.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, Literal, Protocol, TypeVar, runtime_checkable
from uuid import UUID

from pydantic import BaseModel, ConfigDict, SerializeAsAny

from contracts.errors import AgentHostError
from contracts.memory import Memory
from contracts.tokens import Token

__all__ = [
    "ACTION_COMPLETED",
    "ACTION_STARTED",
    "AGENT_STARTED",
    "AGENT_STOPPED",
    "EVENTS",
    "HANDLER_FAILED",
    "MEMORY_CREATED",
    "MEMORY_DELETED",
    "MEMORY_UPDATED",
    "MESSAGE_RECEIVED",
    "MESSAGE_SENT",
    "MODEL_USED",
    "PLUGIN_FAILED",
    "PLUGIN_LOADED",
    "PLUGIN_RELOADED",
    "PLUGIN_UNLOADED",
    "ActionCompletedPayload",
    "ActionStartedPayload",
    "AgentPayload",
    "AnyHandler",
    "Event",
    "EventBusProtocol",
    "EventError",
    "EventHandler",
    "EventPayload",
    "Handler",
    "HandlerFailedPayload",
    "MemoryPayload",
    "MessagePayload",
    "ModelUsedPayload",
    "PayloadTypeError",
    "PluginFailedPayload",
    "PluginPayload",
    "PluginReloadedPayload",
    "Subscription",
    "event_named",
    "registered_events",
    "same_payload_type",
]


class EventPayload(BaseModel):
    """Base of every payload: immutable, strict about unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)


P = TypeVar("P", bound=EventPayload)

_registry: dict[str, Event[Any]] = {}
_registry_lock = threading.Lock()


class EventError(AgentHostError):
    """Misuse of the event system (a duplicate event name, a bad subscription)."""


class PayloadTypeError(EventError, TypeError):
    """An emit whose payload is not the event's payload type (from untyped code)."""


@dataclass(frozen=True, slots=True, eq=False)
class Event(Generic[P]):
    """A named event and the type of its payload. Names are unique: ``area:what_happened``.

    Creating an event registers it by name (the event store and replay look events up by the
    name they stored); declaring the same name twice with another payload type is an error. A
    plugin module imported again (hot reload) re-creates its payload class: a payload class of
    the same module and qualified name counts as the same type, and the new declaration wins.
    The bus matches subscriptions by name, so handlers subscribed with the old token still run.
    """

    name: str
    payload: type[P]
    description: str = ""

    def __post_init__(self) -> None:
        with _registry_lock:
            known = _registry.get(self.name)
            if known is not None and not same_payload_type(known.payload, self.payload):
                raise EventError(
                    f"event {self.name!r} is already declared with payload "
                    f"{_type_name(known.payload)}, not {_type_name(self.payload)}"
                )
            _registry[self.name] = self

    def __repr__(self) -> str:
        return f"Event({self.name!r}, {self.payload.__name__})"


def _type_name(cls: type[Any]) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def same_payload_type(known: type[Any], new: type[Any]) -> bool:
    """The same class, or the same class re-created by re-importing its module (hot reload)."""
    return known is new or (
        known.__module__ == new.__module__ and known.__qualname__ == new.__qualname__
    )


def event_named(name: str) -> Event[Any] | None:
    """The declared event called `name`, if any module declared it."""
    return _registry.get(name)


def registered_events() -> dict[str, Event[Any]]:
    """Every declared event by name (the host's and the plugins' that are imported)."""
    return dict(_registry)


Handler = Callable[[P], Awaitable[None] | None]
"""A subscriber: called with the payload; may be sync or async. Its return value is ignored."""
AnyHandler = Callable[[Event[Any], EventPayload], Awaitable[None] | None]
"""A wildcard subscriber (`on_any`): called with the event and its payload."""


@dataclass(frozen=True, slots=True)
class EventHandler(Generic[P]):
    """A subscription a plugin declares in ``event_handlers()``; the host subscribes it for the
    plugin (tagged with the plugin's name, so unload removes it)."""

    event: Event[P]
    handler: Handler[P]
    priority: int = 0
    """Higher runs first; equal priorities run in registration order."""
    detached: bool = False
    """Run as a background task: the emitter does not wait for it."""
    timeout: float | None = None
    """Seconds before the handler is cancelled and reported (None: the bus default)."""
    blocking: bool = False
    """The handler is sync and may block (a sync client library, heavy CPU work): it runs in a
    worker thread, so the event loop (every agent, the HTTP API) is not held meanwhile."""


@runtime_checkable
class Subscription(Protocol):
    """What ``bus.on`` returns: cancel it to unsubscribe."""

    @property
    def active(self) -> bool: ...

    def cancel(self) -> None: ...


@runtime_checkable
class EventBusProtocol(Protocol):
    """The event bus as plugins see it (the EVENTS service)."""

    def on(
        self,
        event: Event[P],
        handler: Handler[P],
        *,
        owner: str | None = None,
        priority: int = 0,
        detached: bool = False,
        timeout: float | None = None,
        blocking: bool = False,
    ) -> Subscription: ...

    def off(self, event: Event[P], handler: Handler[P]) -> bool: ...

    def on_any(
        self,
        handler: AnyHandler,
        *,
        owner: str | None = None,
        detached: bool = False,
        priority: int = 0,
        timeout: float | None = None,
        blocking: bool = False,
    ) -> Subscription: ...

    async def emit(self, event: Event[P], payload: P) -> None: ...


EVENTS: Token[EventBusProtocol] = Token("events", EventBusProtocol)


# payloads -----------------------------------------------------------------------------------


class MessagePayload(EventPayload):
    """A message came in, or the agent's reply went out."""

    agent_id: UUID
    room_id: UUID
    entity_id: UUID
    """Who sent it (the agent itself for a reply)."""
    message: Memory
    in_reply_to: UUID | None = None
    """For a reply: the id of the message it answers."""
    timings: dict[str, float] = {}
    """For a reply: seconds spent per pipeline stage (memory, providers, model, actions,
    evaluators, total); metrics read them from here."""


class AgentPayload(EventPayload):
    """An agent runtime started or stopped."""

    agent_id: UUID
    name: str


class ActionStartedPayload(EventPayload):
    agent_id: UUID
    room_id: UUID
    entity_id: UUID
    message_id: UUID
    action: str
    plugin: str | None = None
    """The plugin that registered the action."""


class ActionCompletedPayload(ActionStartedPayload):
    success: bool
    duration: float
    """Seconds the handler ran."""
    error: str | None = None
    """The failure, when ``success`` is False."""
    text: str | None = None
    """The action's result text, if it produced one."""


class MemoryPayload(EventPayload):
    """A memory was created, updated or deleted. ``memory`` is None after a delete."""

    agent_id: UUID
    room_id: UUID
    entity_id: UUID
    memory_id: UUID
    table_name: str
    memory: Memory | None = None


class ModelUsedPayload(EventPayload):
    """A model call finished (successfully or not), named after OpenTelemetry's GenAI terms."""

    model_type: str
    provider: str
    """The plugin whose handler answered."""
    duration: float
    input_tokens: int | None = None
    output_tokens: int | None = None
    fallback: bool = False
    """True when the preferred provider failed and another one answered."""
    fallback_from: tuple[str, ...] = ()
    """The providers that failed, in order, before this attempt (the fallback path)."""
    fallback_reason: str | None = None
    """Why the first provider of the fallback path was passed over (``rate_limited``,
    ``timeout``, ``circuit_open``, ...)."""
    streamed: bool = False
    error: str | None = None
    agent_id: UUID | None = None
    room_id: UUID | None = None
    message_id: UUID | None = None
    """The incoming message the call served, when made while an agent processed one."""
    params: SerializeAsAny[BaseModel] | None = None
    """The call's params (a `ModelParams` model; the audit trail records them)."""
    output: SerializeAsAny[BaseModel] | None = None
    """The result (None on error); replay substitutes recorded outputs."""


class PluginPayload(EventPayload):
    """A plugin was loaded or unloaded."""

    name: str
    version: str | None = None
    distribution: str | None = None


class PluginFailedPayload(EventPayload):
    """A plugin failed to import, construct, set up, tear down or reload; the host kept going."""

    name: str
    stage: Literal["discover", "load", "setup", "teardown", "reload"]
    error: str
    file: str | None = None
    line: int | None = None
    distribution: str | None = None


class PluginReloadedPayload(EventPayload):
    name: str
    duration: float
    """Seconds from the file change being picked up to the new version serving."""
    version: str | None = None


class HandlerFailedPayload(EventPayload):
    """An event handler raised or timed out; the emit and the other handlers went on."""

    event: str
    handler: str
    plugin: str | None = None
    error: str
    timed_out: bool = False


MESSAGE_RECEIVED = Event("message:received", MessagePayload, "a message reached an agent")
MESSAGE_SENT = Event("message:sent", MessagePayload, "an agent's reply went out")
AGENT_STARTED = Event("agent:started", AgentPayload)
AGENT_STOPPED = Event("agent:stopped", AgentPayload)
ACTION_STARTED = Event("action:started", ActionStartedPayload)
ACTION_COMPLETED = Event("action:completed", ActionCompletedPayload)
MEMORY_CREATED = Event("memory:created", MemoryPayload)
MEMORY_UPDATED = Event("memory:updated", MemoryPayload)
MEMORY_DELETED = Event("memory:deleted", MemoryPayload)
MODEL_USED = Event("model:used", ModelUsedPayload)
PLUGIN_LOADED = Event("plugin:loaded", PluginPayload)
PLUGIN_UNLOADED = Event("plugin:unloaded", PluginPayload)
PLUGIN_FAILED = Event("plugin:failed", PluginFailedPayload)
PLUGIN_RELOADED = Event("plugin:reloaded", PluginReloadedPayload)
HANDLER_FAILED = Event("handler:failed", HandlerFailedPayload)
