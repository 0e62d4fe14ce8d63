"""Event misuse mypy catches: plugin events, the EVENTS protocol, wildcard handlers, payloads."""

from __future__ import annotations

from uuid import uuid4

from contracts.events import (
    AGENT_STARTED,
    MEMORY_CREATED,
    AgentPayload,
    Event,
    EventBusProtocol,
    EventHandler,
    EventPayload,
    MemoryPayload,
)


class WeatherPayload(EventPayload):
    city: str


WEATHER = Event("typing-reject-weather:fetched", WeatherPayload)
NO_PAYLOAD = Event("typing-reject:int", int)  # E: type variable "P" of "Event" cannot be "int"


def on_agent(payload: AgentPayload) -> None: ...


async def on_weather(payload: WeatherPayload) -> None: ...


def use(bus: EventBusProtocol) -> None:
    bus.on(WEATHER, on_agent)  # E: Argument 2 to "on" of "EventBusProtocol" has incompatible type
    bus.on(AGENT_STARTED, on_weather)  # E: incompatible type
    bus.on(AGENT_STARTED, lambda p: p.room_id)  # E: "AgentPayload" has no attribute "room_id"
    bus.on_any(on_agent)  # E: Argument 1 to "on_any" of "EventBusProtocol" has incompatible type
    bus.off(MEMORY_CREATED, on_agent)  # E: incompatible type


def handlers() -> list[EventHandler[AgentPayload]]:
    wrong = EventHandler(MEMORY_CREATED, lambda p: None)
    return [wrong]  # E: List item 0 has incompatible type "EventHandler[MemoryPayload]"


async def emit(bus: EventBusProtocol) -> None:
    await bus.emit(WEATHER, WeatherPayload(town="Lyon"))  # E: Unexpected keyword argument "town"
    payload = MemoryPayload(
        agent_id=uuid4(), room_id=uuid4(), entity_id=uuid4(), memory_id=uuid4(), table_name="m"
    )
    payload.table_name = "facts"  # E: Property "table_name" defined in "MemoryPayload" is read-only
