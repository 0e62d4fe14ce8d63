"""A handler for the wrong payload and an emit with the wrong payload are type errors."""

from __future__ import annotations

from uuid import uuid4

from contracts.events import (
    AGENT_STARTED,
    MEMORY_CREATED,
    AgentPayload,
    EventHandler,
    MemoryPayload,
)
from host.events import EventBus

bus = EventBus()


def on_memory(payload: MemoryPayload) -> None: ...


def on_agent(payload: AgentPayload) -> None: ...


bus.on(AGENT_STARTED, on_memory)  # E: Argument 2 to "on" of "EventBus" has incompatible type
bus.on(MEMORY_CREATED, on_agent)  # E: incompatible type
EventHandler(AGENT_STARTED, on_memory)  # E: Argument 2 to "EventHandler" has incompatible type


async def later() -> None:
    payload = AgentPayload(agent_id=uuid4(), name="eliza")
    await bus.emit(MEMORY_CREATED, payload)  # E: Cannot infer value of type parameter "P" of "emit"
    await bus.emit(AGENT_STARTED, {"name": "eliza"})  # E: Cannot infer value of type parameter "P"
