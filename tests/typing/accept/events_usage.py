"""Well-typed subscriptions and emits pass mypy."""

from __future__ import annotations

from uuid import uuid4

from contracts.events import AGENT_STARTED, AgentPayload, Event, EventHandler, EventPayload
from host.events import EventBus


class WeatherPayload(EventPayload):
    city: str


WEATHER = Event("typing-weather:fetched", WeatherPayload)
bus = EventBus()


async def on_weather(payload: WeatherPayload) -> None:
    print(payload.city.upper())


bus.on(WEATHER, on_weather)
bus.on(AGENT_STARTED, lambda payload: print(payload.name))
handlers: list[EventHandler[AgentPayload]] = [EventHandler(AGENT_STARTED, print)]


async def later() -> None:
    await bus.emit(WEATHER, WeatherPayload(city="Lyon"))
    await bus.emit(AGENT_STARTED, AgentPayload(agent_id=uuid4(), name="eliza"))
