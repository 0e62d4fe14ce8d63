"""Plugins see the bus through the EVENTS token's protocol; their handlers stay typed."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from contracts.events import (
    AGENT_STARTED,
    EVENTS,
    MEMORY_CREATED,
    AgentPayload,
    Event,
    EventBusProtocol,
    EventHandler,
    EventPayload,
    MemoryPayload,
    Subscription,
)
from contracts.plugin import Manifest, Plugin
from host.di import Container
from host.events import EventBus


class WeatherPayload(EventPayload):
    city: str
    celsius: float


WEATHER_FETCHED = Event("typing-accept-weather:fetched", WeatherPayload)


class WeatherPlugin(Plugin):
    manifest = Manifest(name="weather")

    def __init__(self, events: EventBusProtocol) -> None:
        self.events = events

    async def fetched(self, city: str) -> None:
        await self.events.emit(WEATHER_FETCHED, WeatherPayload(city=city, celsius=21.5))

    async def on_memory(self, payload: MemoryPayload) -> None:
        print(payload.room_id, payload.memory_id)

    def event_handlers(self) -> Sequence[EventHandler[Any]]:
        return [
            EventHandler(MEMORY_CREATED, self.on_memory, detached=True, timeout=2.0),
            EventHandler(AGENT_STARTED, lambda p: print(p.name), priority=5),
        ]


def audit(event: Event[Any], payload: EventPayload) -> None:
    print(event.name, payload.model_dump(mode="json"))


def wire(container: Container) -> None:
    bus: EventBusProtocol = container.resolve(EVENTS)
    sub: Subscription = bus.on(WEATHER_FETCHED, lambda p: print(p.celsius + 1))
    bus.on_any(audit, owner="audit", detached=True)
    sub.cancel()
    assert not sub.active
    concrete: EventBusProtocol = EventBus()  # the host's bus satisfies the protocol
    concrete.on(AGENT_STARTED, lambda p: None)


def started(payload: AgentPayload) -> str:
    return payload.name.upper()
